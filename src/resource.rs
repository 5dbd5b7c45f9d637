//! One path and the handlers of its methods, registered as one resource, for
//! the API's routes and the shop's pages alike: a method the path lacks is
//! answered `405 method_not_allowed` with `Allow`, while a path nobody
//! serves stays `404 not_found`.

use actix_web::dev::{AppService, HttpServiceFactory};
use actix_web::http::header;
use actix_web::{web, FromRequest, Handler, HttpResponse, Responder};

/// One path and the handlers of its methods, registered as one resource: a
/// method it lacks is answered `405 method_not_allowed` with `Allow` naming
/// the ones it has (a path it does not know stays `404 not_found`).
pub struct Methods {
    resource: actix_web::Resource,
    allow: Vec<&'static str>,
}

/// The methods of `path`, to be added with [`Methods::get`] and the like.
pub fn at(path: &str) -> Methods {
    Methods {
        resource: web::resource(path),
        allow: Vec::new(),
    }
}

impl Methods {
    pub fn get<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route("GET", web::get().to(handler))
    }

    pub fn post<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route("POST", web::post().to(handler))
    }

    pub fn patch<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route("PATCH", web::patch().to(handler))
    }

    pub fn put<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route("PUT", web::put().to(handler))
    }

    pub fn delete<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.route("DELETE", web::delete().to(handler))
    }

    fn route(mut self, method: &'static str, route: actix_web::Route) -> Self {
        self.resource = self.resource.route(route);
        self.allow.push(method);
        self
    }
}

impl HttpServiceFactory for Methods {
    fn register(self, config: &mut AppService) {
        let allow = self.allow.join(", ");
        self.resource
            .default_service(web::to(move || {
                let allow = allow.clone();
                async move { method_not_allowed(&allow) }
            }))
            .register(config)
    }
}

/// `405` in the shape of every error, with the `Allow` header.
fn method_not_allowed(allow: &str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, allow))
        .json(serde_json::json!({
            "error": {
                "code": "method_not_allowed",
                "message": format!("this path answers only {allow}"),
            }
        }))
}
