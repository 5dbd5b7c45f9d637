//! Parse-don't-validate types for what clients send. Each `parse` returns the
//! problem as a sentence for the `validation_failed` details.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A username: 3 to 32 of `[A-Za-z0-9_.-]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Username(String);

impl Username {
    pub fn parse(s: &str) -> Result<Username, String> {
        let len = s.chars().count();
        if !(3..=32).contains(&len) {
            return Err("must be 3 to 32 characters".into());
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err("may contain only letters, digits, '_', '.' and '-'".into());
        }
        Ok(Username(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address: one `@` with something on both sides and a dot in the
/// domain, no spaces, at most 254 characters. Stored as given; compared
/// case-insensitively.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Email, String> {
        let s = s.trim();
        if s.is_empty() || s.len() > 254 {
            return Err("must be an email address of at most 254 characters".into());
        }
        let valid = match s.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            }
            None => false,
        };
        if !valid {
            return Err("is not an email address".into());
        }
        Ok(Email(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The longest password, in bytes of UTF-8: bcrypt reads no further, so a
/// longer one would be cut silently.
pub const MAX_PASSWORD_BYTES: usize = 72;

/// A new password: 8 to [`MAX_PASSWORD_BYTES`] bytes of UTF-8 (so 72 ASCII
/// characters, fewer accented ones), no NUL.
pub struct Password(String);

impl Password {
    pub fn parse(s: &str) -> Result<Password, String> {
        if !(8..=MAX_PASSWORD_BYTES).contains(&s.len()) {
            return Err(format!(
                "must be 8 to {MAX_PASSWORD_BYTES} bytes (72 plain letters or digits)"
            ));
        }
        if s.contains('\0') {
            return Err("must not contain a NUL character".into());
        }
        Ok(Password(s.to_string()))
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// The most units one order may carry (and so the highest `per_user_limit`).
pub const MAX_QUANTITY: i64 = 1000;

/// How many units one purchase asks for: 1 to [`MAX_QUANTITY`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quantity(i32);

impl Quantity {
    pub fn parse(n: i64) -> Result<Quantity, String> {
        if !(1..=MAX_QUANTITY).contains(&n) {
            return Err(format!("must be between 1 and {MAX_QUANTITY}"));
        }
        Ok(Quantity(n as i32))
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

/// The highest price accepted, in cents (one hundred million in any currency).
pub const MAX_PRICE_CENTS: i64 = 10_000_000_000;

/// A price in integer cents.
pub fn price_cents(n: i64) -> Result<i64, String> {
    if !(0..=MAX_PRICE_CENTS).contains(&n) {
        return Err(format!("must be between 0 and {MAX_PRICE_CENTS} cents"));
    }
    Ok(n)
}

/// A product's catalog stock: 0 (sold only in sales) to [`MAX_STOCK`].
pub fn catalog_stock(n: i64) -> Result<i64, String> {
    if !(0..=MAX_STOCK).contains(&n) {
        return Err(format!("must be between 0 and {MAX_STOCK}"));
    }
    Ok(n)
}

/// The largest stock one sale may have.
pub const MAX_STOCK: i64 = 100_000_000;

/// A sale's stock: 1 to [`MAX_STOCK`].
pub fn stock(n: i64) -> Result<i64, String> {
    if !(1..=MAX_STOCK).contains(&n) {
        return Err(format!("must be between 1 and {MAX_STOCK}"));
    }
    Ok(n)
}

/// An ISO 4217-shaped currency code (three capital letters).
pub fn currency(s: &str) -> Result<String, String> {
    if s.len() == 3 && s.chars().all(|c| c.is_ascii_uppercase()) {
        Ok(s.to_string())
    } else {
        Err("must be three capital letters, e.g. EUR".into())
    }
}

/// A non-empty single-line text of at most `max` characters, trimmed.
pub fn name(s: &str, max: usize) -> Result<String, String> {
    let t = s.trim();
    if t.is_empty() || t.chars().count() > max {
        return Err(format!("must be 1 to {max} characters"));
    }
    if t.chars().any(|c| c.is_control()) {
        return Err("must not contain control characters".into());
    }
    Ok(t.to_string())
}

/// A free text of at most `max` characters; line breaks and tabs are kept,
/// other control characters (NUL among them) refused.
pub fn text(s: &str, max: usize) -> Result<String, String> {
    if s.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if s.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err("must not contain control characters other than line breaks and tabs".into());
    }
    Ok(s.to_string())
}

/// The earliest instant accepted in a request.
pub const MIN_INSTANT: &str = "1970-01-01T00:00:00Z";
/// The latest instant accepted in a request.
pub const MAX_INSTANT: &str = "9999-12-31T23:59:59Z";

/// An instant within [`MIN_INSTANT`] and [`MAX_INSTANT`]: times far outside
/// would overflow the arithmetic done on them (a window's margins, a
/// countdown) and mean nothing to a shop anyway.
pub fn instant(t: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let (min, max) = (instant_bound(MIN_INSTANT), instant_bound(MAX_INSTANT));
    if t < min || t > max {
        return Err(format!("must be between {MIN_INSTANT} and {MAX_INSTANT}"));
    }
    Ok(t)
}

fn instant_bound(s: &str) -> DateTime<Utc> {
    s.parse().unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// Collects field problems while parsing a request.
#[derive(Default)]
pub struct Problems(Vec<(&'static str, String)>);

impl Problems {
    /// Keeps `Ok` values and records `Err` problems under `field`.
    pub fn check<T>(&mut self, field: &'static str, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(p) => {
                self.0.push((field, p));
                None
            }
        }
    }

    /// Records a problem that is not the result of a parse.
    pub fn add(&mut self, field: &'static str, problem: impl Into<String>) {
        self.0.push((field, problem.into()));
    }

    /// `Err(validation_failed)` naming every field, or `Ok` when none failed.
    pub fn finish(self) -> Result<(), crate::error::ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(crate::error::ApiError::fields(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_keeps_line_breaks_and_refuses_other_control_characters() {
        assert!(text("two\nlines\r\n\tindented", 100).is_ok());
        for bad in ["nul\0byte", "bell\u{7}", "escape\u{1b}[0m", "del\u{7f}"] {
            assert!(text(bad, 100).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_are_counted_in_bytes_up_to_what_bcrypt_reads() {
        assert!(Password::parse(&"a".repeat(72)).is_ok());
        assert!(Password::parse(&"a".repeat(73)).is_err());
        // 36 two-byte letters are 72 bytes; 37 are too many.
        assert!(Password::parse(&"é".repeat(36)).is_ok());
        assert!(Password::parse(&"é".repeat(37)).is_err());
        assert!(Password::parse("with\0nul").is_err());
    }

    #[test]
    fn instants_far_outside_the_calendar_are_refused() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert!(instant(at("2026-12-01T10:00:00Z")).is_ok());
        assert!(instant(at("9999-12-31T23:59:59Z")).is_ok());
        assert!(instant(at("+10000-01-01T00:00:00Z")).is_err());
        assert!(instant(at("1969-12-31T23:59:59Z")).is_err());
        assert!(instant(DateTime::<Utc>::MAX_UTC).is_err());
        assert!(instant(DateTime::<Utc>::MIN_UTC).is_err());
    }

    use super::*;

    #[test]
    fn usernames() {
        for ok in ["abc", "user_1", "a.b-c", &"x".repeat(32)] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "", "has space", "ünï", "semi;colon", &"x".repeat(33)] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails() {
        assert!(Email::parse("a@b.co").is_ok());
        for bad in [
            "", "plain", "@b.co", "a@b", "a@@b.co", "a b@c.de", "a@.com", "a@com.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_and_quantities() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"p".repeat(129)).is_err());
        assert!(Quantity::parse(0).is_err());
        assert!(Quantity::parse(-1).is_err());
        assert!(Quantity::parse(1_000_000_000_000).is_err());
        assert_eq!(Quantity::parse(3).unwrap().get(), 3);
    }
}
