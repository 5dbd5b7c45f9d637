//! Building and running the HTTP application.

use std::net::{IpAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Server, Service};
use actix_web::http::header;
use actix_web::{web, App, HttpResponse, HttpServer};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::AuthContext;
use crate::config::AppSettings;
use crate::db::replica::Replica;
use crate::db::Databases;
use crate::email::outbox::Mailer;
use crate::error::ApiError;
use crate::openapi::ApiDoc;
use crate::payment::webhooks::WebhookSender;
use crate::state::AppState;

/// Where and how to listen.
#[derive(Clone, Debug)]
pub struct Listen {
    pub host: String,
    /// 0 picks a free port (tests).
    pub port: u16,
    pub workers: Option<usize>,
    /// Stop on SIGINT/SIGTERM (off in tests, which run many servers).
    pub handle_signals: bool,
}

/// The keys a server signs and checks with.
#[derive(Clone, Copy)]
pub struct Secrets<'a> {
    /// HS256 key of the access tokens.
    pub jwt: &'a [u8],
    /// HMAC-SHA256 key of the payment provider's webhooks.
    pub payment_webhook: &'a [u8],
}

/// A built server, bound to its port, not yet running.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    auth: web::Data<AuthContext>,
    handle_signals: bool,
}

/// Stops a running server the way a signal does: open event streams end at
/// once, then in-flight requests finish.
#[derive(Clone)]
pub struct Stopper {
    handle: actix_web::dev::ServerHandle,
    state: web::Data<AppState>,
}

impl Stopper {
    pub async fn stop(&self) {
        self.state.closing.send_replace(true);
        self.handle.stop(true).await;
    }
}

impl Application {
    /// Binds the listener and wires the routes.
    pub async fn build(
        settings: AppSettings,
        secrets: Secrets<'_>,
        dbs: impl Into<Databases>,
        listen: Listen,
    ) -> anyhow::Result<Application> {
        let listener = TcpListener::bind((listen.host.as_str(), listen.port)).map_err(|e| {
            anyhow::anyhow!("cannot listen on {}:{}: {e}", listen.host, listen.port)
        })?;
        let port = listener.local_addr()?.port();
        let public_url = settings
            .email
            .public_url
            .clone()
            .unwrap_or_else(|| own_url(&listen.host, port));
        let Databases {
            primary: pool,
            listen: listen_options,
            listen_follower,
            read,
        } = dbs.into();
        let replica = read.map(|(db, max_lag)| Replica::new(db, pool.clone(), max_lag));
        let auth = web::Data::new(AuthContext::new(pool.clone(), &settings, secrets.jwt));
        let webhook_url = format!(
            "{}/api/v1/payments/webhook",
            loopback_url(&listen.host, port)
        );
        let state = web::Data::new(AppState::new(
            pool,
            (listen_options, listen_follower),
            replica,
            settings,
            public_url,
            secrets.payment_webhook,
            webhook_url,
        ));
        // Revoked tokens are checked in memory: load them before serving.
        auth.cache.resync(&auth.pool).await?;

        let (data, auth_data) = (state.clone(), auth.clone());
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(auth_data.clone())
                .wrap_fn(|req, srv| {
                    // Count and time every request by its route pattern.
                    let start = Instant::now();
                    let method = method_label(req.method());
                    let signed_in = req.headers().contains_key(header::AUTHORIZATION);
                    let docs = req.path().starts_with("/docs/");
                    let state = req.app_data::<web::Data<AppState>>().cloned();
                    let fut = srv.call(req);
                    async move {
                        let mut res = fut.await?;
                        secure_headers(res.headers_mut(), signed_in);
                        if docs {
                            res.headers_mut().insert(
                                header::CONTENT_SECURITY_POLICY,
                                header::HeaderValue::from_static(DOCS_CSP),
                            );
                        }
                        if let Some(state) = state {
                            let route = res
                                .request()
                                .match_pattern()
                                .unwrap_or_else(|| "unmatched".into());
                            let status = res.status().as_u16().to_string();
                            state
                                .metrics
                                .http_requests
                                .with_label_values(&[method, &route, &status])
                                .inc();
                            state
                                .metrics
                                .http_duration
                                .with_label_values(&[method, &route])
                                .observe(start.elapsed().as_secs_f64());
                        }
                        Ok(res)
                    }
                })
                .wrap(tracing_actix_web::TracingLogger::<
                    crate::telemetry::RequestSpan,
                >::new())
                .configure(crate::routes::config)
                // The OpenAPI document and its UI, served from the binary.
                .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", ApiDoc::openapi()))
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(ApiError::NotFound("no such route"))
                }))
        })
        .listen(listener)?
        .shutdown_timeout(30);
        if let Some(w) = listen.workers {
            server = server.workers(w);
        }
        if !listen.handle_signals {
            server = server.disable_signals();
        }
        let server = server.run();
        Ok(Application {
            port,
            server,
            state,
            auth,
            handle_signals: listen.handle_signals,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the server gracefully.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Stops the server like a signal would (see [`Stopper`]).
    pub fn stopper(&self) -> Stopper {
        Stopper {
            handle: self.server.handle(),
            state: self.state.clone(),
        }
    }

    /// Serves until stopped (by a signal or the handle), finishing in-flight
    /// requests, with upkeep tasks running beside it.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let state = self.state.clone().into_inner();
        let auth = self.auth.clone().into_inner();
        let mut tasks = vec![
            tokio::spawn(upkeep(Arc::clone(&state), Arc::clone(&auth))),
            tokio::spawn(listen(Arc::clone(&state), auth)),
            tokio::spawn(crate::queue::admitter::run(state.pool.clone())),
            tokio::spawn(crate::purchase::sweeper::run(
                state.engine.own_pool().clone(),
                state.engine.clone(),
            )),
        ];
        if let Some(replica) = &state.replica {
            tasks.push(tokio::spawn(Arc::clone(replica).watch()));
        }
        let primary = state.pool.follower();
        if let Some(f) = primary {
            tasks.push(tokio::spawn(Arc::clone(f).watch()));
        }
        match &state.listen_follower {
            Some(f) if !primary.is_some_and(|p| Arc::ptr_eq(p, f)) => {
                tasks.push(tokio::spawn(Arc::clone(f).watch()))
            }
            _ => {}
        }
        // actix-web stops on SIGINT/SIGTERM by itself; this only ends the
        // event streams it would otherwise wait for until its timeout.
        if self.handle_signals {
            tasks.push(tokio::spawn(close_streams_on_signal(self.state.clone())));
        }
        let email = &state.settings.email;
        match Mailer::new(state.pool.clone(), email.clone(), state.public_url.clone()) {
            Ok(Some(mailer)) => tasks.extend(mailer.spawn_workers()),
            Ok(None) => tracing::warn!(
                "no SMTP_URL or EMAIL_DIR: emails wait in the outbox until one is set"
            ),
            Err(e) => {
                tracing::error!(error = %e, "cannot start sending email; emails wait in the outbox")
            }
        }
        // The provider's webhooks and refunds run whether or not email does.
        match WebhookSender::new(
            state.pool.clone(),
            email.clone(),
            state.webhook_url.clone(),
            state.payments.webhook_secret(),
        ) {
            Ok(sender) => tasks.extend(sender.spawn_workers()),
            Err(e) => tracing::error!(error = %e, "cannot start delivering payment webhooks"),
        }
        tasks.push(tokio::spawn(crate::payment::refunds::run(
            state.pool.clone(),
            state.payments.provider().clone(),
        )));
        if let Some(times) = email.jobs {
            tasks.push(tokio::spawn(crate::email::jobs::schedule(
                state.pool.clone(),
                times,
            )));
        }
        let result = self.server.await;
        // A sender stopped mid-send leaves its email claimed; it is sent
        // again when the claim times out (at-least-once).
        for t in tasks {
            t.abort();
        }
        result
    }
}

/// The method as a metrics label: the standard ones by name, any other as
/// `OTHER`, so made-up methods cannot grow the label set.
fn method_label(m: &actix_web::http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

/// Headers every answer carries: no content sniffing, and no caching of an
/// answer to a signed-in request (it may hold the user's data).
fn secure_headers(h: &mut actix_web::http::header::HeaderMap, signed_in: bool) {
    use actix_web::http::header::HeaderValue;
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if signed_in {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// The Swagger UI's policy: its page runs only its own scripts (it has no
/// inline ones) and its own style sheets, plus the one `<style>` inside its
/// logo's SVG, allowed by hash; its stylesheet draws `data:` images; it
/// fetches only `/openapi.json` and the API it tries out, same-origin.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; \
                        style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='; \
                        img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                        form-action 'none'; frame-ancestors 'none'";

/// `http://host:port` to reach this server from the same machine: an
/// unspecified address (`0.0.0.0`, `::`) as the loopback of its family.
fn loopback_url(host: &str, port: u16) -> String {
    let host = match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) if ip.is_unspecified() => "127.0.0.1".to_string(),
        Ok(IpAddr::V6(ip)) if ip.is_unspecified() => "[::1]".to_string(),
        Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
        _ => host.to_string(),
    };
    format!("http://{host}:{port}")
}

/// `http://host:port` for links, with an unspecified address (`0.0.0.0`,
/// `::`) shown as `localhost`.
fn own_url(host: &str, port: u16) -> String {
    let host = match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() => "localhost".to_string(),
        Ok(IpAddr::V6(ip)) => format!("[{ip}]"),
        _ => host.to_string(),
    };
    format!("http://{host}:{port}")
}

async fn close_streams_on_signal(state: web::Data<AppState>) {
    use tokio::signal::unix::{signal, SignalKind};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    state.closing.send_replace(true);
}

/// Periodic housekeeping: drop expired token revocations, old sent emails,
/// spent email tokens and idempotent answers past their 24 hours, and forget
/// idle rate-limiter keys so memory stays bounded.
async fn upkeep(state: Arc<AppState>, auth: Arc<AuthContext>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        state.purchase_limiter.retain_recent();
        if let Some(limiter) = &state.purchase_ip_limiter {
            limiter.retain_recent();
        }
        auth.cache.prune();
        auth.retain_recent();
        if let Err(e) = crate::db::idempotency::sweep(&state.pool).await {
            tracing::warn!(error = %e, "sweeping old idempotency keys failed");
        }
        if let Err(e) = crate::auth::service::sweep_expired(&state.pool).await {
            tracing::warn!(error = %e, "sweeping expired tokens failed");
        }
        if let Err(e) = crate::email::admin::sweep_sent(&state.pool).await {
            tracing::warn!(error = %e, "sweeping sent emails failed");
        }
    }
}

/// Applies announcements from other instances (and this one) until aborted:
/// sale changes to the live board, logouts and user changes to the auth
/// cache. After a lost connection both are brought back in step from the
/// database, since announcements sent meanwhile are gone.
async fn listen(state: Arc<AppState>, auth: Arc<AuthContext>) {
    use sqlx::postgres::PgListener;
    // Straight to the primary: a pooler would not keep the subscription.
    let direct = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(state.listen_options.clone());
    if let Some(f) = &state.listen_follower {
        f.adopt(&direct, |o| o);
    }
    loop {
        let mut listener = match PgListener::connect_with(&direct).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for changes; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener
            .listen_all([crate::db::sales::CHANNEL, crate::auth::cache::CHANNEL])
            .await
        {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        resync(&state, &auth).await;
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) if n.channel() == crate::db::sales::CHANNEL => {
                    state.board.apply(n.payload()).await
                }
                Ok(Some(n)) => auth.cache.apply(n.payload()),
                // The connection was lost (it reconnects on the next call).
                Ok(None) => resync(&state, &auth).await,
                Err(e) => {
                    tracing::warn!(error = %e, "listening failed; reconnecting");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
            }
        }
    }
}

async fn resync(state: &AppState, auth: &AuthContext) {
    state.board.reload_all().await;
    if let Err(e) = auth.cache.resync(&auth.pool).await {
        tracing::warn!(error = %e, "reloading revoked tokens failed");
    }
}
