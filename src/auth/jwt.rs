//! HS256 access tokens. Only HS256 is accepted: tokens signed with any other
//! algorithm, or with `alg: none`, fail verification.

use std::time::Duration;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Role;
use crate::error::ApiError;

/// The claims of an access token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id, as a decimal string.
    pub sub: String,
    pub role: Role,
    /// The token's own id, used to revoke it on logout.
    pub jti: Uuid,
    pub iat: i64,
    pub exp: i64,
}

/// Clock difference tolerated between servers, in seconds.
const LEEWAY_SECS: u64 = 5;

/// Signing and verification keys for access tokens.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl JwtKeys {
    /// Keys from a shared secret; tokens live for `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        // A token that says it is not valid yet is refused (`nbf` is checked
        // when present; `iat` is checked below, the library does not).
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iat", "sub"]);
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// How long an access token lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues an access token for a user.
    pub fn issue(&self, user_id: i64, role: Role) -> Result<(String, Claims), ApiError> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            role,
            jti: Uuid::new_v4(),
            iat: now,
            exp: now + self.ttl.as_secs() as i64,
        };
        self.sign(&claims).map(|t| (t, claims))
    }

    /// Signs arbitrary claims (also used by tests to forge expired tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String, ApiError> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| ApiError::Internal(e.into()))
    }

    /// Checks signature, algorithm and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        use jsonwebtoken::errors::ErrorKind;
        let claims = decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => {
                    ApiError::Unauthorized("the access token has expired")
                }
                ErrorKind::InvalidAlgorithm => {
                    ApiError::Unauthorized("only HS256 tokens are accepted")
                }
                ErrorKind::ImmatureSignature => {
                    ApiError::Unauthorized("the access token is not valid yet")
                }
                _ => ApiError::Unauthorized("the access token is not valid"),
            })?;
        // Issued in the future: no server of ours made it.
        if claims.iat > chrono::Utc::now().timestamp() + LEEWAY_SECS as i64 {
            return Err(ApiError::Unauthorized("the access token is not valid yet"));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60))
    }

    #[test]
    fn a_token_round_trips() {
        let k = keys();
        let (t, c) = k.issue(42, Role::Seller).unwrap();
        let back = k.verify(&t).unwrap();
        assert_eq!(back.sub, "42");
        assert_eq!(back.jti, c.jti);
        assert_eq!(back.role, Role::Seller);
    }

    /// A token signed with the right key whose claims say it starts later.
    fn signed(k: &JwtKeys, iat: i64, nbf: Option<i64>) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = serde_json::json!({
            "sub": "1", "role": "admin", "jti": Uuid::new_v4(), "iat": iat, "exp": now + 60
        });
        if let Some(nbf) = nbf {
            claims["nbf"] = nbf.into();
        }
        encode(&Header::new(Algorithm::HS256), &claims, &k.encoding).unwrap()
    }

    #[test]
    fn a_token_issued_or_valid_only_in_the_future_is_rejected() {
        let k = keys();
        let now = chrono::Utc::now().timestamp();
        assert!(k.verify(&signed(&k, now, None)).is_ok());
        assert!(
            k.verify(&signed(&k, now + 2, None)).is_ok(),
            "within the leeway"
        );
        assert!(
            k.verify(&signed(&k, now + 3600, None)).is_err(),
            "iat an hour ahead"
        );
        assert!(
            k.verify(&signed(&k, now, Some(now + 3600))).is_err(),
            "nbf an hour ahead"
        );
        assert!(k.verify(&signed(&k, now, Some(now))).is_ok());
    }

    #[test]
    fn a_token_signed_with_another_key_is_rejected() {
        let other = JwtKeys::new(b"another-secret-another-secret-xx", Duration::from_secs(60));
        let (t, _) = other.issue(1, Role::Admin).unwrap();
        assert!(keys().verify(&t).is_err());
    }

    #[test]
    fn alg_none_and_hs512_are_rejected() {
        let k = keys();
        let (t, c) = k.issue(1, Role::Admin).unwrap();
        let body = t.split('.').nth(1).unwrap();
        // {"alg":"none","typ":"JWT"}
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{body}.");
        assert!(k.verify(&none).is_err());
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &c,
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap();
        assert!(k.verify(&hs512).is_err());
    }
}
