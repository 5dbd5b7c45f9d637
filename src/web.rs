//! The shop's pages: plain HTML, CSS and JavaScript compiled into the binary,
//! so the server needs no front-end build, CDN or network to show them.
//!
//! Every page route answers the same small HTML shell naming the page; the
//! page's script then reads the JSON API with the shopper's token. The API is
//! the only guard: a page shows nothing the API would not give its viewer.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

use crate::resource::at;

/// A file served under `/assets/`.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../web/assets/style.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/assets/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/assets/api.js"),
    },
    Asset {
        name: "ui.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/assets/ui.js"),
    },
    Asset {
        name: "shop.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/assets/shop.js"),
    },
    Asset {
        name: "account.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/assets/account.js"),
    },
    Asset {
        name: "orders.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/assets/orders.js"),
    },
    Asset {
        name: "pay.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/assets/pay.js"),
    },
    Asset {
        name: "admin.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/assets/admin.js"),
    },
    Asset {
        name: "admin-orders.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/assets/admin-orders.js"),
    },
    Asset {
        name: "seller.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/assets/seller.js"),
    },
    Asset {
        name: "products.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/assets/products.js"),
    },
    Asset {
        name: "cart.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/assets/cart.js"),
    },
    Asset {
        name: "queue.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../web/assets/queue.js"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../web/assets/favicon.svg"),
    },
];

const SHELL: &str = include_str!("../web/shell.html");

/// Scripts, styles and data only from this origin; no framing.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

/// Page routes and the page each one shows.
const PAGES: &[(&str, &str, &str)] = &[
    ("/", "home", "Flash sales"),
    ("/sales", "sales", "All sales"),
    ("/sales/{id}", "sale", "Sale"),
    // The catalog; `?q=` searches it.
    ("/products", "products", "Books"),
    ("/products/{id}", "product", "Book"),
    ("/cart", "cart", "Your cart"),
    ("/login", "login", "Sign in"),
    ("/register", "register", "Create an account"),
    ("/forgot", "forgot", "Forgot your password"),
    // The password-reset email links here.
    ("/reset-password", "reset", "Choose a new password"),
    ("/orders", "orders", "My orders"),
    ("/orders/{id}", "order", "Order"),
    // The built-in test provider's hosted page: `redirect_url` of its payments.
    ("/pay/{payment_id}", "pay", "Test payment"),
    ("/seller", "seller", "Seller"),
    ("/admin", "admin", "Admin: products and sales"),
    ("/admin/sales/{id}", "admin-sale", "Admin: live sale"),
    ("/admin/users", "admin-users", "Admin: users"),
];

/// Wires the page routes and `/assets/{name}`.
pub fn config(cfg: &mut web::ServiceConfig) {
    for &(path, page, title) in PAGES {
        cfg.service(
            at(path).get(move |req: HttpRequest| async move { page_response(&req, page, title) }),
        );
    }
    cfg.service(at("/assets/{name}").get(asset));
}

fn page_response(req: &HttpRequest, page: &str, title: &str) -> HttpResponse {
    // `/sales/abc` or `/pay/xyz` is no page: say so in HTML rather than run a
    // script on it. Shop ids are positive integers; payment ids are UUIDs.
    let path = req.match_info();
    let bad_id = path
        .get("id")
        .is_some_and(|id| id.parse::<i64>().map_or(true, |n| n <= 0))
        || path
            .get("payment_id")
            .is_some_and(|id| id.parse::<uuid::Uuid>().is_err());
    let (status, page, title) = if bad_id {
        (
            actix_web::http::StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
        )
    } else {
        (actix_web::http::StatusCode::OK, page, title)
    };
    let html = SHELL.replace("{{page}}", page).replace("{{title}}", title);
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        // Pages are tiny and name the current assets: always revalidate.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .body(html)
}

/// Strong ETags of the assets, by content, computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.body);
                let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

async fn asset(req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    let Some(i) = ASSETS.iter().position(|a| a.name == name.as_str()) else {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("no such asset");
    };
    let asset = &ASSETS[i];
    let etag = &etags()[i];
    // Asset names carry no version, so a browser may keep a copy for a short
    // while and must then ask again; an unchanged file costs a 304.
    let cache = "public, max-age=60, must-revalidate";
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if fresh {
        return HttpResponse::NotModified()
            .insert_header((header::ETAG, etag.as_str()))
            .insert_header((header::CACHE_CONTROL, cache))
            .finish();
    }
    HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(asset.body)
}
