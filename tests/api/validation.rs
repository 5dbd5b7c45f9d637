//! Bad input, table by table: every case gets its documented status and code,
//! names the offending field where there is one, writes nothing, and is never
//! a 5xx.

use flashsale::auth::Role;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{body, spawn_app, TestApp};

/// What a case sends as its body.
enum Payload {
    None,
    Json(Value),
    Raw(String),
}

/// One bad request and the answer it must get.
struct Case {
    what: String,
    method: Method,
    path: String,
    token: Option<String>,
    payload: Payload,
    status: u16,
    code: &'static str,
    /// The key that must appear under `error.details.fields`.
    field: Option<&'static str>,
}

impl Case {
    fn new(what: impl Into<String>, method: Method, path: impl Into<String>) -> Self {
        Case {
            what: what.into(),
            method,
            path: path.into(),
            token: None,
            payload: Payload::None,
            status: 0,
            code: "",
            field: None,
        }
    }

    fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_string());
        self
    }

    fn json(mut self, v: Value) -> Self {
        self.payload = Payload::Json(v);
        self
    }

    fn raw(mut self, s: impl Into<String>) -> Self {
        self.payload = Payload::Raw(s.into());
        self
    }

    fn expect(mut self, status: u16, code: &'static str) -> Self {
        self.status = status;
        self.code = code;
        self
    }

    /// `422 validation_failed` naming `field`.
    fn invalid(self, field: &'static str) -> Self {
        let mut c = self.expect(422, "validation_failed");
        c.field = Some(field);
        c
    }
}

/// A digest of every row of the tables a request could write to, so that an
/// insert, an update or a delete all show.
async fn fingerprint(app: &TestApp) -> Vec<(String, i64, Option<String>)> {
    let mut out = Vec::new();
    for table in ["app_user", "product", "sale", "purchase_order"] {
        let (n, digest): (i64, Option<String>) = sqlx::query_as(&format!(
            "select count(*), md5(string_agg(t::text, '|' order by t.id)) from {table} t"
        ))
        .fetch_one(&app.pool)
        .await
        .expect("fingerprint");
        out.push((table.to_string(), n, digest));
    }
    out
}

/// Sends every case and checks its answer and that nothing was written.
async fn run(app: &TestApp, cases: Vec<Case>) {
    for case in cases {
        // Arrange
        let before = fingerprint(app).await;
        let mut r = app.client.request(case.method.clone(), app.url(&case.path));
        if let Some(t) = &case.token {
            r = r.bearer_auth(t);
        }
        r = match case.payload {
            Payload::None => r,
            Payload::Json(v) => r.json(&v),
            Payload::Raw(s) => r.header("content-type", "application/json").body(s),
        };

        // Act
        let resp = r.send().await.expect("send");

        // Assert
        let what = format!("{} ({} {})", case.what, case.method, case.path);
        let (status, v) = body(resp).await;
        assert!(status < 500, "{what}: never a 5xx, got {status}: {v}");
        assert_eq!(status, case.status, "{what}: {v}");
        assert_eq!(v["error"]["code"], case.code, "{what}: {v}");
        assert!(v["error"]["message"].is_string(), "{what}: {v}");
        if let Some(field) = case.field {
            assert!(
                v["error"]["details"]["fields"].get(field).is_some(),
                "{what}: details name `{field}`: {v}"
            );
        }
        assert_eq!(fingerprint(app).await, before, "{what}: nothing written");
    }
}

/// The people and things the cases refer to.
struct World {
    customer: String,
    seller: String,
    admin: String,
    customer_id: i64,
    product: i64,
    sale: i64,
    start: String,
    end: String,
}

async fn world(app: &TestApp) -> World {
    let customer = app.create_user(Role::Customer).await;
    let seller = app.create_user(Role::Seller).await;
    let admin = app.create_user(Role::Admin).await;
    let product = app.create_product_by(&seller, 1000).await["id"]
        .as_i64()
        .expect("product id");
    let sale = app.active_sale(10).await;
    let now = app.db_now().await;
    World {
        customer: customer.token,
        seller: seller.token,
        admin: admin.token,
        customer_id: customer.id,
        product,
        sale,
        start: (now + chrono::Duration::seconds(600)).to_rfc3339(),
        end: (now + chrono::Duration::seconds(7200)).to_rfc3339(),
    }
}

fn register(username: Value, email: Value, password: Value) -> Value {
    json!({"username": username, "email": email, "password": password})
}

#[tokio::test]
async fn a_body_that_is_not_json_returns_400_bad_request() {
    // Arrange
    let app = spawn_app().await;
    let w = world(&app).await;
    let purchase = format!("/api/v1/sales/{}/purchase", w.sale);
    let cases = vec![
        Case::new("truncated object", Method::POST, "/api/v1/auth/register")
            .raw(r#"{"username": "abc", "#)
            .expect(400, "bad_request"),
        Case::new("plain text", Method::POST, "/api/v1/auth/login")
            .raw("username=abc&password=x")
            .expect(400, "bad_request"),
        Case::new("empty body", Method::POST, "/api/v1/auth/register")
            .raw("")
            .expect(400, "bad_request"),
        Case::new("trailing garbage", Method::POST, "/api/v1/auth/refresh")
            .raw(r#"{"refresh_token": "x"} trailing"#)
            .expect(400, "bad_request"),
        Case::new("unquoted keys", Method::POST, "/api/v1/products")
            .token(&w.seller)
            .raw("{name: 'Book', price_cents: 100}")
            .expect(400, "bad_request"),
        Case::new("half an array", Method::POST, "/api/v1/sales")
            .token(&w.admin)
            .raw("[")
            .expect(400, "bad_request"),
        Case::new("not JSON", Method::POST, &purchase)
            .token(&w.customer)
            .raw("{quantity: 1}")
            .expect(400, "bad_request"),
        Case::new(
            "not JSON",
            Method::PATCH,
            format!("/api/v1/products/{}", w.product),
        )
        .token(&w.seller)
        .raw("nope")
        .expect(400, "bad_request"),
        Case::new(
            "not JSON",
            Method::PATCH,
            format!("/api/v1/admin/users/{}", w.customer_id),
        )
        .token(&w.admin)
        .raw("{\"disabled\": tru}")
        .expect(400, "bad_request"),
    ];

    // Act & Assert
    run(&app, cases).await;
}

#[tokio::test]
async fn a_field_of_the_wrong_type_returns_422_naming_the_field() {
    // Arrange
    let app = spawn_app().await;
    let w = world(&app).await;
    let (start, end) = (w.start.as_str(), w.end.as_str());
    let product = format!("/api/v1/products/{}", w.product);
    let user = format!("/api/v1/admin/users/{}", w.customer_id);
    let cases = vec![
        Case::new(
            "username is a number",
            Method::POST,
            "/api/v1/auth/register",
        )
        .json(register(
            json!(5),
            json!("a@example.test"),
            json!("password123"),
        ))
        .invalid("username"),
        Case::new("email is a bool", Method::POST, "/api/v1/auth/register")
            .json(register(json!("abcd"), json!(true), json!("password123")))
            .invalid("email"),
        Case::new(
            "password is an array",
            Method::POST,
            "/api/v1/auth/register",
        )
        .json(register(json!("abcd"), json!("a@example.test"), json!([])))
        .invalid("password"),
        Case::new("password is null", Method::POST, "/api/v1/auth/login")
            .json(json!({"username": "abcd", "password": null}))
            .invalid("password"),
        Case::new(
            "refresh_token is a number",
            Method::POST,
            "/api/v1/auth/refresh",
        )
        .json(json!({"refresh_token": 12}))
        .invalid("refresh_token"),
        Case::new("price_cents is a string", Method::POST, "/api/v1/products")
            .token(&w.seller)
            .json(json!({"name": "Book", "price_cents": "ten"}))
            .invalid("price_cents"),
        Case::new(
            "price_cents is a fraction",
            Method::POST,
            "/api/v1/products",
        )
        .token(&w.seller)
        .json(json!({"name": "Book", "price_cents": 9.99}))
        .invalid("price_cents"),
        Case::new("name is an object", Method::POST, "/api/v1/products")
            .token(&w.seller)
            .json(json!({"name": {"en": "Book"}, "price_cents": 100}))
            .invalid("name"),
        Case::new("stock is a string", Method::POST, "/api/v1/sales")
            .token(&w.admin)
            .json(json!({
                "product_id": w.product, "starts_at": start, "ends_at": end, "stock": "many"
            }))
            .invalid("stock"),
        Case::new("starts_at is not a time", Method::POST, "/api/v1/sales")
            .token(&w.admin)
            .json(json!({
                "product_id": w.product, "starts_at": "tomorrow", "ends_at": end, "stock": 5
            }))
            .invalid("starts_at"),
        Case::new("product_id is a string", Method::POST, "/api/v1/sales")
            .token(&w.admin)
            .json(json!({
                "product_id": w.product.to_string(), "starts_at": start, "ends_at": end,
                "stock": 5
            }))
            .invalid("product_id"),
        Case::new("price_cents is a string", Method::PATCH, &product)
            .token(&w.seller)
            .json(json!({"price_cents": "1"}))
            .invalid("price_cents"),
        Case::new("role is unknown", Method::PATCH, &user)
            .token(&w.admin)
            .json(json!({"role": "superuser"}))
            .invalid("role"),
        Case::new("disabled is a string", Method::PATCH, &user)
            .token(&w.admin)
            .json(json!({"disabled": "yes"}))
            .invalid("disabled"),
        Case::new(
            "stock is a string",
            Method::PATCH,
            format!("/api/v1/sales/{}", w.sale),
        )
        .token(&w.admin)
        .json(json!({"stock": "5"}))
        .invalid("stock"),
        Case::new("the body is an array", Method::POST, "/api/v1/auth/login")
            .json(json!(["abcd", "password123"]))
            .expect(422, "validation_failed"),
    ];

    // Act & Assert
    run(&app, cases).await;
}

#[tokio::test]
async fn a_missing_field_returns_422_naming_the_field() {
    // Arrange
    let app = spawn_app().await;
    let w = world(&app).await;
    let (start, end) = (w.start.as_str(), w.end.as_str());
    let cases = vec![
        Case::new("no password", Method::POST, "/api/v1/auth/register")
            .json(json!({"username": "abcd", "email": "a@example.test"}))
            .invalid("password"),
        Case::new("no username", Method::POST, "/api/v1/auth/register")
            .json(json!({"email": "a@example.test", "password": "password123"}))
            .invalid("username"),
        Case::new("no email", Method::POST, "/api/v1/auth/register")
            .json(json!({"username": "abcd", "password": "password123"}))
            .invalid("email"),
        Case::new("no username", Method::POST, "/api/v1/auth/login")
            .json(json!({"password": "password123"}))
            .invalid("username"),
        Case::new("no refresh_token", Method::POST, "/api/v1/auth/refresh")
            .json(json!({}))
            .invalid("refresh_token"),
        Case::new("no price_cents", Method::POST, "/api/v1/products")
            .token(&w.seller)
            .json(json!({"name": "Book"}))
            .invalid("price_cents"),
        Case::new("no name", Method::POST, "/api/v1/products")
            .token(&w.seller)
            .json(json!({"price_cents": 100}))
            .invalid("name"),
        Case::new("no ends_at", Method::POST, "/api/v1/sales")
            .token(&w.admin)
            .json(json!({"product_id": w.product, "starts_at": start, "stock": 5}))
            .invalid("ends_at"),
        Case::new("no stock", Method::POST, "/api/v1/sales")
            .token(&w.admin)
            .json(json!({"product_id": w.product, "starts_at": start, "ends_at": end}))
            .invalid("stock"),
        Case::new("no product_id", Method::POST, "/api/v1/sales")
            .token(&w.admin)
            .json(json!({"starts_at": start, "ends_at": end, "stock": 5}))
            .invalid("product_id"),
    ];

    // Act & Assert
    run(&app, cases).await;
}

#[tokio::test]
async fn a_purchase_quantity_out_of_range_or_not_an_integer_returns_422() {
    // Arrange
    let app = spawn_app().await;
    let w = world(&app).await;
    let path = format!("/api/v1/sales/{}/purchase", w.sale);
    let cases = [
        json!(0),
        json!(-1),
        json!(1_000_000_000_000_i64),
        json!(i64::MIN),
        json!("1"),
        json!(1.5),
        json!(true),
        json!([1]),
    ]
    .into_iter()
    .map(|q| {
        Case::new(format!("quantity {q}"), Method::POST, &path)
            .token(&w.customer)
            .json(json!({"quantity": q}))
            .invalid("quantity")
    })
    .collect();

    // Act & Assert
    run(&app, cases).await;
    let (status, _) = body(
        app.post(&path, Some(&w.customer), &json!({"quantity": 1}))
            .await,
    )
    .await;
    assert_eq!(status, 201, "the same customer can still buy one");
}

#[tokio::test]
async fn an_unknown_id_returns_404_not_found() {
    // Arrange
    let app = spawn_app().await;
    let w = world(&app).await;
    let cases = vec![
        Case::new("purchase", Method::POST, "/api/v1/sales/987654321/purchase")
            .token(&w.customer)
            .json(json!({"quantity": 1}))
            .expect(404, "not_found"),
        Case::new(
            "purchase without a body",
            Method::POST,
            "/api/v1/sales/987654321/purchase",
        )
        .token(&w.customer)
        .expect(404, "not_found"),
        Case::new("sale", Method::GET, "/api/v1/sales/987654321").expect(404, "not_found"),
        Case::new("status", Method::GET, "/api/v1/sales/987654321/status").expect(404, "not_found"),
        Case::new("stats", Method::GET, "/api/v1/admin/sales/987654321/stats")
            .token(&w.admin)
            .expect(404, "not_found"),
        Case::new("cancel", Method::PATCH, "/api/v1/sales/987654321")
            .token(&w.admin)
            .json(json!({"cancelled": true}))
            .expect(404, "not_found"),
        Case::new("product", Method::GET, "/api/v1/products/987654321").expect(404, "not_found"),
        Case::new(
            "change product",
            Method::PATCH,
            "/api/v1/products/987654321",
        )
        .token(&w.seller)
        .json(json!({"name": "x"}))
        .expect(404, "not_found"),
        Case::new("order", Method::GET, "/api/v1/orders/987654321")
            .token(&w.customer)
            .expect(404, "not_found"),
        Case::new("user", Method::PATCH, "/api/v1/admin/users/987654321")
            .token(&w.admin)
            .json(json!({"disabled": true}))
            .expect(404, "not_found"),
        // An unknown id in a body is a problem with that field, not a path.
        Case::new("sale of no product", Method::POST, "/api/v1/sales")
            .token(&w.admin)
            .json(json!({
                "product_id": 987654321, "starts_at": w.start, "ends_at": w.end, "stock": 5
            }))
            .invalid("product_id"),
    ];

    // Act & Assert
    run(&app, cases).await;
}

#[tokio::test]
async fn an_id_in_the_path_that_is_not_an_id_returns_400_bad_request() {
    // Arrange
    let app = spawn_app().await;
    let w = world(&app).await;
    let mut cases = Vec::new();
    for id in ["abc", "1.5", "-", "99999999999999999999", "1e3", "%20"] {
        cases.extend([
            Case::new("sale", Method::GET, format!("/api/v1/sales/{id}")),
            Case::new("status", Method::GET, format!("/api/v1/sales/{id}/status")),
            Case::new("product", Method::GET, format!("/api/v1/products/{id}")),
            Case::new("order", Method::GET, format!("/api/v1/orders/{id}")).token(&w.customer),
            Case::new(
                "purchase",
                Method::POST,
                format!("/api/v1/sales/{id}/purchase"),
            )
            .token(&w.customer)
            .json(json!({"quantity": 1})),
            Case::new(
                "change product",
                Method::PATCH,
                format!("/api/v1/products/{id}"),
            )
            .token(&w.seller)
            .json(json!({"name": "x"})),
            Case::new("cancel sale", Method::PATCH, format!("/api/v1/sales/{id}"))
                .token(&w.admin)
                .json(json!({"cancelled": true})),
            Case::new(
                "stats",
                Method::GET,
                format!("/api/v1/admin/sales/{id}/stats"),
            )
            .token(&w.admin),
            Case::new("user", Method::PATCH, format!("/api/v1/admin/users/{id}"))
                .token(&w.admin)
                .json(json!({"disabled": true})),
        ]);
    }
    let cases = cases
        .into_iter()
        .map(|c| c.expect(400, "bad_request"))
        .collect();

    // Act & Assert
    run(&app, cases).await;
}

#[tokio::test]
async fn a_body_over_64_kib_returns_413_payload_too_large() {
    // Arrange: valid JSON of about 70 KiB.
    let app = spawn_app().await;
    let w = world(&app).await;
    let padding = "a".repeat(70 * 1024);
    let cases = vec![
        Case::new("register", Method::POST, "/api/v1/auth/register")
            .json(json!({
                "username": "abcd", "email": "a@example.test", "password": "password123",
                "pad": padding
            }))
            .expect(413, "payload_too_large"),
        Case::new("login", Method::POST, "/api/v1/auth/login")
            .json(json!({"username": padding, "password": "password123"}))
            .expect(413, "payload_too_large"),
        Case::new("product", Method::POST, "/api/v1/products")
            .token(&w.seller)
            .json(json!({"name": "Book", "description": padding, "price_cents": 100}))
            .expect(413, "payload_too_large"),
        Case::new(
            "purchase",
            Method::POST,
            format!("/api/v1/sales/{}/purchase", w.sale),
        )
        .token(&w.customer)
        .json(json!({"quantity": 1, "note": padding}))
        .expect(413, "payload_too_large"),
        Case::new(
            "change product",
            Method::PATCH,
            format!("/api/v1/products/{}", w.product),
        )
        .token(&w.seller)
        .json(json!({"description": padding}))
        .expect(413, "payload_too_large"),
    ];

    // Act & Assert
    run(&app, cases).await;
}

#[tokio::test]
async fn strings_over_their_limit_return_422_naming_the_field() {
    // Arrange
    let app = spawn_app().await;
    let w = world(&app).await;
    let cases = vec![
        Case::new("username of 33", Method::POST, "/api/v1/auth/register")
            .json(register(
                json!("u".repeat(33)),
                json!("a@example.test"),
                json!("password123"),
            ))
            .invalid("username"),
        Case::new("username of 2", Method::POST, "/api/v1/auth/register")
            .json(register(
                json!("ab"),
                json!("a@example.test"),
                json!("password123"),
            ))
            .invalid("username"),
        Case::new(
            "username with a space",
            Method::POST,
            "/api/v1/auth/register",
        )
        .json(register(
            json!("a b c"),
            json!("a@example.test"),
            json!("password123"),
        ))
        .invalid("username"),
        Case::new("password of 73", Method::POST, "/api/v1/auth/register")
            .json(register(
                json!("abcd"),
                json!("a@example.test"),
                json!("p".repeat(73)),
            ))
            .invalid("password"),
        Case::new("password of 7", Method::POST, "/api/v1/auth/register")
            .json(register(
                json!("abcd"),
                json!("a@example.test"),
                json!("1234567"),
            ))
            .invalid("password"),
        Case::new("not an email", Method::POST, "/api/v1/auth/register")
            .json(register(
                json!("abcd"),
                json!("not-an-email"),
                json!("password123"),
            ))
            .invalid("email"),
        Case::new("product name of 201", Method::POST, "/api/v1/products")
            .token(&w.seller)
            .json(json!({"name": "n".repeat(201), "price_cents": 100}))
            .invalid("name"),
        Case::new("blank product name", Method::POST, "/api/v1/products")
            .token(&w.seller)
            .json(json!({"name": "   ", "price_cents": 100}))
            .invalid("name"),
        Case::new("description of 5001", Method::POST, "/api/v1/products")
            .token(&w.seller)
            .json(json!({"name": "Book", "description": "d".repeat(5001), "price_cents": 100}))
            .invalid("description"),
        Case::new(
            "product name of 201",
            Method::PATCH,
            format!("/api/v1/products/{}", w.product),
        )
        .token(&w.seller)
        .json(json!({"name": "n".repeat(201)}))
        .invalid("name"),
        Case::new(
            "description of 5001",
            Method::PATCH,
            format!("/api/v1/products/{}", w.product),
        )
        .token(&w.seller)
        .json(json!({"description": "d".repeat(5001)}))
        .invalid("description"),
    ];

    // Act & Assert
    run(&app, cases).await;
}

#[tokio::test]
async fn strings_at_their_limit_are_accepted() {
    // Arrange: the control for the table above, so that its limits are where
    // the contract puts them and not lower.
    let app = spawn_app().await;
    let seller = app.create_user(Role::Seller).await;

    // Act
    let (user_status, user) = body(
        app.post(
            "/api/v1/auth/register",
            None,
            &register(
                json!("u".repeat(32)),
                json!("max@example.test"),
                json!("p".repeat(72)),
            ),
        )
        .await,
    )
    .await;
    let (product_status, product) = body(
        app.post(
            "/api/v1/products",
            Some(&seller.token),
            &json!({"name": "n".repeat(200), "description": "d".repeat(5000), "price_cents": 100}),
        )
        .await,
    )
    .await;

    // Assert
    assert_eq!(user_status, 201, "{user}");
    assert_eq!(product_status, 201, "{product}");
    assert_eq!(product["name"].as_str().map(str::len), Some(200));
    assert_eq!(product["description"].as_str().map(str::len), Some(5000));
}

#[tokio::test]
async fn bad_list_parameters_return_422() {
    // Arrange
    let app = spawn_app().await;
    let w = world(&app).await;
    let cases = vec![
        Case::new("sort", Method::GET, "/api/v1/products?sort=worst").invalid("sort"),
        Case::new("limit 0", Method::GET, "/api/v1/products?limit=0").invalid("limit"),
        Case::new("limit 101", Method::GET, "/api/v1/products?limit=101").invalid("limit"),
        Case::new("offset -1", Method::GET, "/api/v1/products?offset=-1").invalid("offset"),
        Case::new("limit abc", Method::GET, "/api/v1/products?limit=abc")
            .expect(422, "validation_failed"),
        Case::new("state", Method::GET, "/api/v1/sales?state=bogus").invalid("state"),
        Case::new("empty state", Method::GET, "/api/v1/sales?state=").invalid("state"),
        Case::new("limit 0", Method::GET, "/api/v1/sales?limit=0").invalid("limit"),
        Case::new("limit 101", Method::GET, "/api/v1/sales?limit=101").invalid("limit"),
        Case::new("limit 0", Method::GET, "/api/v1/orders?limit=0")
            .token(&w.customer)
            .invalid("limit"),
        Case::new("limit 101", Method::GET, "/api/v1/admin/users?limit=101")
            .token(&w.admin)
            .invalid("limit"),
        Case::new("month", Method::GET, "/api/v1/seller/revenue?month=2024-13")
            .token(&w.seller)
            .invalid("month"),
        Case::new("month", Method::GET, "/api/v1/seller/revenue?month=last")
            .token(&w.seller)
            .invalid("month"),
    ];

    // Act & Assert
    run(&app, cases).await;
    for ok in [
        "/api/v1/products?limit=1",
        "/api/v1/products?limit=100&sort=best_selling",
        "/api/v1/sales?state=active&limit=100",
    ] {
        assert_eq!(app.get(ok, None).await.status().as_u16(), 200, "{ok}");
    }
}
