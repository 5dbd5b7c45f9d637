//! Webhook signatures, Stripe's scheme: the header
//! `Flashsale-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`
//! with the shared `PAYMENT_WEBHOOK_SECRET`. The timestamp is signed with the
//! body, so a captured delivery cannot be replayed after the tolerance.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const HEADER: &str = "Flashsale-Signature";

/// How far a signature's timestamp may be from the receiver's clock.
pub const TOLERANCE_SECS: i64 = 300;

type HmacSha256 = Hmac<Sha256>;

/// The header value for `body` signed at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={timestamp},v1={hex}")
}

/// Why a signature was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no Flashsale-Signature header")]
    Missing,
    #[error("the Flashsale-Signature header is not t=<seconds>,v1=<hex>")]
    Malformed,
    #[error("the signature's timestamp is more than {TOLERANCE_SECS} s from now")]
    Stale,
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Checks `header` (the value of [`HEADER`]) for `body` at `now` (unix
/// seconds). Several `v1=` entries are allowed (a secret being rolled over);
/// one matching is enough. The comparison takes constant time.
pub fn verify(secret: &[u8], header: Option<&[u8]>, body: &[u8], now: i64) -> Result<(), Refused> {
    let header =
        std::str::from_utf8(header.ok_or(Refused::Missing)?).map_err(|_| Refused::Malformed)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t.parse::<i64>().map_err(|_| Refused::Malformed)?),
            Some(("v1", hex)) => candidates.push(decode_hex(hex).ok_or(Refused::Malformed)?),
            // Other schemes are ignored, as Stripe's clients do.
            Some(_) => {}
            None => return Err(Refused::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(Refused::Malformed)?;
    if candidates.is_empty() {
        return Err(Refused::Malformed);
    }
    if (now - timestamp).abs() > TOLERANCE_SECS {
        return Err(Refused::Stale);
    }
    let matches = candidates.iter().any(|sig| {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(sig).is_ok()
    });
    if matches {
        Ok(())
    } else {
        Err(Refused::Mismatch)
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 256 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let body = br#"{"id":"evt_1"}"#;
        let h = sign(SECRET, 1_700_000_000, body);
        assert!(h.starts_with("t=1700000000,v1="));
        assert_eq!(
            verify(SECRET, Some(h.as_bytes()), body, 1_700_000_100),
            Ok(())
        );
        // Another body, another secret, another timestamp in the header.
        assert_eq!(
            verify(
                SECRET,
                Some(h.as_bytes()),
                br#"{"id":"evt_2"}"#,
                1_700_000_000
            ),
            Err(Refused::Mismatch)
        );
        assert_eq!(
            verify(b"other", Some(h.as_bytes()), body, 1_700_000_000),
            Err(Refused::Mismatch)
        );
        let moved = h.replace("t=1700000000", "t=1700000001");
        assert_eq!(
            verify(SECRET, Some(moved.as_bytes()), body, 1_700_000_000),
            Err(Refused::Mismatch)
        );
    }

    #[test]
    fn stale_missing_and_malformed_headers_are_refused() {
        let body = b"{}";
        let h = sign(SECRET, 1_000, body);
        assert_eq!(
            verify(SECRET, Some(h.as_bytes()), body, 1_000 + TOLERANCE_SECS + 1),
            Err(Refused::Stale)
        );
        assert_eq!(
            verify(SECRET, Some(h.as_bytes()), body, 1_000 - TOLERANCE_SECS - 1),
            Err(Refused::Stale)
        );
        assert_eq!(verify(SECRET, None, body, 1_000), Err(Refused::Missing));
        for bad in [
            "",
            "t=1000",
            "v1=00",
            "t=x,v1=00",
            "t=1000,v1=zz",
            "garbage",
        ] {
            assert_eq!(
                verify(SECRET, Some(bad.as_bytes()), body, 1_000),
                Err(Refused::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn one_matching_entry_of_several_is_enough() {
        let body = b"{}";
        let good = sign(SECRET, 5, body);
        let v1 = good.split_once(",v1=").unwrap().1;
        let header = format!("t=5,v1={},v1={v1},v0=abc", "00".repeat(32));
        assert_eq!(verify(SECRET, Some(header.as_bytes()), body, 5), Ok(()));
    }
}
