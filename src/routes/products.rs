//! `/products`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::{at, Items, Page};
use crate::auth::{AuthUser, Role};
use crate::db::products::{self, NewProduct, Product, ProductChange, Sort};
use crate::domain::{self, Problems};
use crate::error::{ApiError, ApiResult};
use crate::extract::Json;
use crate::state::AppState;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(at("/products").get(list).post(create))
        .service(at("/products/{id}").get(get).patch(update));
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// `newest` (default) or `best_selling`; a search without it is ranked,
    /// best match first.
    pub sort: Option<String>,
    /// Full-text search over name, description and the seller's name (web
    /// search syntax: words, `"a phrase"`, `-not`, `or`); up to 200
    /// characters.
    pub q: Option<String>,
    /// Only this seller's products (the seller page lists its own this way).
    pub seller_id: Option<i64>,
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    #[param(minimum = 0, maximum = 100000)]
    pub offset: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/products", tag = "catalog", params(ListQuery),
    responses((status = 200, body = Items<Product>), (status = 422, description = "validation_failed")))]
pub async fn list(
    state: web::Data<AppState>,
    q: web::Query<ListQuery>,
) -> ApiResult<web::Json<Items<Product>>> {
    let sort = match q.sort.as_deref() {
        None => None,
        Some("newest") => Some(Sort::Newest),
        Some("best_selling") => Some(Sort::BestSelling),
        Some(_) => {
            return Err(ApiError::field(
                "sort",
                "must be `newest` or `best_selling`",
            ))
        }
    };
    let search = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if search.is_some_and(|s| s.chars().count() > 200) {
        return Err(ApiError::field("q", "must be at most 200 characters"));
    }
    let (limit, offset) = Page {
        limit: q.limit,
        offset: q.offset,
    }
    .parse()?;
    Ok(web::Json(Items {
        // The catalog, best sellers and search tolerate the replica's lag.
        items: products::list(state.reads(), sort, search, q.seller_id, limit, offset).await?,
    }))
}

#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "catalog",
    responses((status = 200, body = Product), (status = 404, description = "not_found")))]
pub async fn get(state: web::Data<AppState>, id: web::Path<i64>) -> ApiResult<web::Json<Product>> {
    Ok(web::Json(products::get(state.reads(), *id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct CreateProduct {
    /// 1 to 200 characters.
    pub name: String,
    /// Up to 5000 characters.
    pub description: Option<String>,
    pub price_cents: i64,
    /// Three capital letters; default `EUR`.
    pub currency: Option<String>,
    /// Admins may list a product for a seller; sellers always list their own.
    pub seller_id: Option<i64>,
    /// Copies for catalog orders, 0 to 100000000; default 0 (sold only in
    /// flash sales).
    pub stock: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/products", tag = "catalog", request_body = CreateProduct,
    security(("bearer" = [])),
    responses((status = 201, body = Product), (status = 403, description = "forbidden"),
              (status = 422, description = "validation_failed")))]
pub async fn create(
    state: web::Data<AppState>,
    user: AuthUser,
    body: Json<CreateProduct>,
) -> ApiResult<HttpResponse> {
    user.require(&[Role::Seller, Role::Admin])?;
    let b = body.0;
    let mut p = Problems::default();
    let name = p.check("name", domain::name(&b.name, 200));
    let description = p.check(
        "description",
        domain::text(b.description.as_deref().unwrap_or(""), 5000),
    );
    let price = p.check("price_cents", domain::price_cents(b.price_cents));
    let currency = p.check(
        "currency",
        domain::currency(b.currency.as_deref().unwrap_or("EUR")),
    );
    let stock = p.check("stock", domain::catalog_stock(b.stock.unwrap_or(0)));
    let seller_id = match b.seller_id {
        Some(id) if user.is_admin() => {
            if !products::can_sell(&state.pool, id).await? {
                p.add("seller_id", "no such seller");
            }
            id
        }
        Some(id) if id != user.id => {
            return Err(ApiError::Forbidden("sellers list their own products"))
        }
        _ => user.id,
    };
    p.finish()?;
    let (Some(name), Some(description), Some(price_cents), Some(currency), Some(stock)) =
        (name, description, price, currency, stock)
    else {
        unreachable!("finish() returned Ok, so every field parsed");
    };
    let product = products::create(
        &state.pool,
        NewProduct {
            seller_id,
            name,
            description,
            price_cents,
            currency,
            stock,
        },
    )
    .await?;
    Ok(HttpResponse::Created().json(product))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct UpdateProduct {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price_cents: Option<i64>,
    pub currency: Option<String>,
    /// Sets the copies available for catalog orders now (copies held by
    /// unpaid orders come back on top of it if their holds run out).
    pub stock: Option<i64>,
}

#[utoipa::path(patch, path = "/api/v1/products/{id}", tag = "catalog", request_body = UpdateProduct,
    security(("bearer" = [])),
    responses((status = 200, body = Product), (status = 403, description = "forbidden: not its seller"),
              (status = 404, description = "not_found"), (status = 422, description = "validation_failed")))]
pub async fn update(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<i64>,
    body: Json<UpdateProduct>,
) -> ApiResult<web::Json<Product>> {
    user.require(&[Role::Seller, Role::Admin])?;
    let b = body.0;
    let mut p = Problems::default();
    let change = ProductChange {
        name: b.name.and_then(|n| p.check("name", domain::name(&n, 200))),
        description: b
            .description
            .and_then(|d| p.check("description", domain::text(&d, 5000))),
        price_cents: b
            .price_cents
            .and_then(|c| p.check("price_cents", domain::price_cents(c))),
        currency: b
            .currency
            .and_then(|c| p.check("currency", domain::currency(&c))),
        stock: b
            .stock
            .and_then(|n| p.check("stock", domain::catalog_stock(n))),
    };
    p.finish()?;
    let existing = products::get(&state.pool, *id).await?;
    if !user.is_admin() && existing.seller_id != user.id {
        return Err(ApiError::Forbidden(
            "only the product's seller or an admin may change it",
        ));
    }
    Ok(web::Json(products::update(&state.pool, *id, change).await?))
}
