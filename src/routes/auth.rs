//! `/auth/*` and `/me`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::at;
use crate::auth::account;
use crate::auth::service::{self, Session, User};
use crate::auth::{AuthContext, AuthUser};
use crate::domain::{Email, Password, Problems, Username, MAX_PASSWORD_BYTES};
use crate::error::{ApiError, ApiResult};
use crate::extract::{client_ip, Json};

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(at("/auth/register").post(register))
        .service(at("/auth/login").post(login))
        .service(at("/auth/refresh").post(refresh))
        .service(at("/auth/logout").post(logout))
        .service(at("/me").get(me))
        .service(at("/me/password").post(change_password));
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RegisterRequest {
    /// 3 to 32 of `[A-Za-z0-9_.-]`.
    pub username: String,
    pub email: String,
    /// 8 to 72 bytes of UTF-8 (bcrypt reads no further).
    pub password: String,
}

#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = Session), (status = 409, description = "username_taken, email_taken"),
              (status = 422, description = "validation_failed"), (status = 429, description = "rate_limited")))]
pub async fn register(
    auth: web::Data<AuthContext>,
    req: HttpRequest,
    body: Json<RegisterRequest>,
) -> ApiResult<HttpResponse> {
    auth.check_ip(client_ip(&req))?;
    let b = body.0;
    let mut p = Problems::default();
    let username = p.check("username", Username::parse(&b.username));
    let email = p.check("email", Email::parse(&b.email));
    let password = p.check("password", Password::parse(&b.password));
    p.finish()?;
    let (Some(u), Some(e), Some(pw)) = (username, email, password) else {
        unreachable!("finish() returned Ok, so every field parsed");
    };
    let session = service::register(&auth, u, e, pw).await?;
    Ok(HttpResponse::Created().json(session))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    /// Username or email.
    pub username: String,
    pub password: String,
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = Session), (status = 401, description = "invalid_credentials"),
              (status = 429, description = "rate_limited")))]
pub async fn login(
    auth: web::Data<AuthContext>,
    req: HttpRequest,
    body: Json<LoginRequest>,
) -> ApiResult<HttpResponse> {
    auth.check_ip(client_ip(&req))?;
    let b = body.0;
    if b.username.chars().any(char::is_control) {
        return Err(ApiError::field(
            "username",
            "must not contain control characters",
        ));
    }
    // No account has a longer name or password: the same answer as any miss.
    if b.username.is_empty() || b.username.len() > 254 || b.password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::InvalidCredentials);
    }
    let session = service::login(&auth, &b.username, b.password).await?;
    Ok(HttpResponse::Ok().json(session))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = Session), (status = 401, description = "unauthorized"),
              (status = 429, description = "rate_limited")))]
pub async fn refresh(
    auth: web::Data<AuthContext>,
    req: HttpRequest,
    body: Json<RefreshRequest>,
) -> ApiResult<HttpResponse> {
    auth.check_ip(client_ip(&req))?;
    if body.0.refresh_token.len() > 256 {
        return Err(ApiError::Unauthorized("the refresh token is not valid"));
    }
    let session = service::refresh(&auth, &body.0.refresh_token).await?;
    Ok(HttpResponse::Ok().json(session))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "the token and its refresh token are dead"),
              (status = 401, description = "unauthorized, token_revoked")))]
pub async fn logout(auth: web::Data<AuthContext>, user: AuthUser) -> ApiResult<HttpResponse> {
    service::logout(&auth, &user).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, description = "unauthorized")))]
pub async fn me(auth: web::Data<AuthContext>, user: AuthUser) -> ApiResult<web::Json<User>> {
    Ok(web::Json(service::me(&auth.pool, user.id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct ChangePassword {
    pub current_password: String,
    /// 8 to 72 bytes of UTF-8 (bcrypt reads no further).
    pub new_password: String,
}

#[utoipa::path(post, path = "/api/v1/me/password", tag = "auth", request_body = ChangePassword, security(("bearer" = [])),
    responses((status = 204, description = "changed; the account's other sessions are signed out"),
              (status = 401, description = "unauthorized"),
              (status = 422, description = "validation_failed: the current password is wrong, or the new one is not a password"),
              (status = 429, description = "rate_limited")))]
pub async fn change_password(
    auth: web::Data<AuthContext>,
    req: HttpRequest,
    user: AuthUser,
    body: Json<ChangePassword>,
) -> ApiResult<HttpResponse> {
    // Guessing the current password from a stolen session is limited too.
    auth.check_ip(client_ip(&req))?;
    let b = body.0;
    let new = Password::parse(&b.new_password).map_err(|p| ApiError::field("new_password", p))?;
    if b.current_password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::field(
            "current_password",
            "is not the account's password",
        ));
    }
    account::change_password(&auth, &user, b.current_password, new).await?;
    Ok(HttpResponse::NoContent().finish())
}
