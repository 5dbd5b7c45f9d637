//! `AuthUser`: the signed-in user behind a bearer token.
//!
//! The token's signature and expiry are checked first; then the user must
//! still exist and not be disabled, and the token must not have been logged
//! out. The role comes from the database (through the process's
//! [`AuthCache`](super::cache::AuthCache), which every instance keeps in step
//! by `NOTIFY`), so a role change, a disable or a logout takes effect on the
//! next request.

use std::future::Future;
use std::pin::Pin;

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use uuid::Uuid;

use super::{AuthContext, Role};
use crate::error::ApiError;

/// An authenticated request's user.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub id: i64,
    pub role: Role,
    /// The id of the access token used, for logout.
    pub jti: Uuid,
    /// When that token expires (unix seconds).
    pub exp: i64,
}

impl AuthUser {
    /// `forbidden` unless the user has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden("your role may not do this"))
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer(req);
        let ctx = req.app_data::<web::Data<AuthContext>>().cloned();
        Box::pin(async move {
            let ctx = ctx.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no auth context")))?;
            let token = token?;
            let claims = ctx.jwt.verify(&token)?;
            let id: i64 = claims
                .sub
                .parse()
                .map_err(|_| ApiError::Unauthorized("the access token is not valid"))?;
            if ctx.cache.is_revoked(&claims.jti) {
                return Err(ApiError::TokenRevoked);
            }
            let (role, disabled) = match ctx.cache.user(id) {
                Some(known) => known,
                None => {
                    let row: Option<(String, bool, bool)> = sqlx::query_as(
                        "select u.role, u.disabled_at is not null,
                                exists (select 1 from revoked_token r where r.jti = $2)
                           from app_user u where u.id = $1",
                    )
                    .bind(id)
                    .bind(claims.jti)
                    .fetch_optional(&ctx.pool)
                    .await?;
                    let Some((role, disabled, revoked)) = row else {
                        return Err(ApiError::Unauthorized(
                            "the account of this token no longer exists",
                        ));
                    };
                    if revoked {
                        ctx.cache.revoke(claims.jti, claims.exp);
                        return Err(ApiError::TokenRevoked);
                    }
                    let role = Role::parse(&role).ok_or_else(|| {
                        ApiError::Internal(anyhow::anyhow!("unknown role {role:?}"))
                    })?;
                    ctx.cache.put_user(id, role, disabled);
                    (role, disabled)
                }
            };
            if disabled {
                return Err(ApiError::Forbidden("this account is disabled"));
            }
            Ok(AuthUser {
                id,
                role,
                jti: claims.jti,
                exp: claims.exp,
            })
        })
    }
}

fn bearer(req: &HttpRequest) -> Result<String, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized("sign in first: no bearer token"))?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is not readable"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(ApiError::Unauthorized(
            "the Authorization header must be `Bearer <token>`",
        ))?;
    Ok(token.trim().to_string())
}

/// The signed-in shopper of a purchase: the token's signature, expiry and
/// revocation are checked here, in memory; that the account exists and is not
/// disabled is checked by the purchase transaction itself, for every buyer of
/// a batch in one query, so the hot path carries no query of its own.
#[derive(Clone, Copy, Debug)]
pub struct Shopper {
    pub id: i64,
}

impl FromRequest for Shopper {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready((|| {
            let ctx = req
                .app_data::<web::Data<AuthContext>>()
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no auth context")))?;
            let claims = ctx.jwt.verify(&bearer(req)?)?;
            if ctx.cache.is_revoked(&claims.jti) {
                return Err(ApiError::TokenRevoked);
            }
            let id = claims
                .sub
                .parse()
                .map_err(|_| ApiError::Unauthorized("the access token is not valid"))?;
            Ok(Shopper { id })
        })())
    }
}
