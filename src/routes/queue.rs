//! `/sales/{id}/queue`: a waiting-room sale's line (DESIGN §9).

use actix_web::{web, HttpResponse};

use super::at;
use crate::auth::Shopper;
use crate::db::queue::Ticket;
use crate::error::ApiResult;
use crate::state::AppState;

/// The line's routes, inside the scope of one sale (`/sales/{id}`).
pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(at("/queue").get(get).post(join));
}

#[utoipa::path(post, path = "/api/v1/sales/{id}/queue", tag = "sales", security(("bearer" = [])),
    responses((status = 201, body = Ticket, description = "joined: in the pre-queue before the start (no place yet), behind everyone placed after it"),
              (status = 200, body = Ticket, description = "already in the line: the same ticket"),
              (status = 401, description = "unauthorized"),
              (status = 404, description = "not_found"),
              (status = 409, description = "no_waiting_room, sale_ended, sale_cancelled"),
              (status = 503, description = "busy: retry after Retry-After")))]
pub async fn join(
    state: web::Data<AppState>,
    user: Shopper,
    id: web::Path<i64>,
) -> ApiResult<HttpResponse> {
    let (ticket, created) = state.queue.join(*id, user.id).await?;
    Ok(if created {
        HttpResponse::Created().json(ticket)
    } else {
        HttpResponse::Ok().json(ticket)
    })
}

#[utoipa::path(get, path = "/api/v1/sales/{id}/queue", tag = "sales", security(("bearer" = [])),
    responses((status = 200, body = Ticket), (status = 401, description = "unauthorized"),
              (status = 404, description = "not_found: no such sale, or not in its line")))]
pub async fn get(
    state: web::Data<AppState>,
    user: Shopper,
    id: web::Path<i64>,
) -> ApiResult<web::Json<Ticket>> {
    Ok(web::Json(state.queue.ticket(*id, user.id).await?))
}
