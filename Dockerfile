# flashsale: release image.
#
#   docker build -t flashsale .
#   docker run --rm -e DATABASE_URL=postgres://... -e JWT_SECRET=... \
#       -e PAYMENT_WEBHOOK_SECRET=... -p 8080:8080 flashsale
#
# The image runs against an external PostgreSQL (DATABASE_URL); it carries no
# PostgreSQL server, so the embedded mode is not available inside it.
# See docker-compose.yml for the server + database pair.

# ---------------------------------------------------------------------------
# Builder
# ---------------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS builder
# bash with pipefail, so a failing command inside a pipe fails the build.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /build

# 1. Dependencies only, cached until Cargo.toml / Cargo.lock change.
#    Stub sources stand in for the crate: src/main.rs and src/lib.rs, plus an
#    empty `fn main` for every other target path the workspace's manifests name
#    (tests, benches, the stress harness), so that cargo can read them without
#    the real files.
#    Afterwards the stub crate is forgotten (its sources, binary and
#    fingerprints; the compiled dependencies stay), so the real crate is always
#    rebuilt below whatever the timestamps of the copied files. The other
#    stubs stay: they are never compiled by `--bin flashsale`.
COPY Cargo.toml Cargo.lock ./
COPY stress/Cargo.toml ./stress/
RUN set -eu; \
    mkdir -p src; \
    echo 'fn main() {}' > src/main.rs; \
    : > src/lib.rs; \
    for manifest in Cargo.toml stress/Cargo.toml; do \
        dir="$(dirname "$manifest")"; \
        sed -n 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"\([^"]*\.rs\)".*/\1/p' "$manifest" \
        | while read -r p; do \
            mkdir -p "$dir/$(dirname "$p")"; \
            [ -e "$dir/$p" ] || echo 'fn main() {}' > "$dir/$p"; \
        done; \
    done; \
    cargo build --release --locked --bin flashsale; \
    rm -rf src target/release/flashsale target/release/deps/flashsale-* \
        target/release/deps/libflashsale-* target/release/.fingerprint/flashsale-*

# 2. The real sources. migrations/ is embedded at compile time by sqlx's
#    `migrate!`, seed/ and the email templates in templates/ by `include_str!`
#    and the shop's pages in web/ by `include_bytes!`, so all four must be
#    here for the build (tests/api/dockerfile.rs checks that every directory
#    the sources compile in is copied).
#    `benche[s]` copies benches/ only if it exists: BuildKit (Docker's default
#    builder since 23.0, and always used by Compose) lets a glob match nothing.
COPY src ./src
COPY migrations ./migrations
COPY seed ./seed
COPY templates ./templates
COPY web ./web
COPY benche[s] ./benches/
RUN cargo build --release --locked --bin flashsale \
    && install -m 0755 target/release/flashsale /usr/local/bin/flashsale

# ---------------------------------------------------------------------------
# Runtime
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates: for TLS to a managed database or mail relay. Not pinned to a
# version: Debian's security updates to it should be picked up on rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Never run as root. The home directory is the working directory, so anything
# the server writes relative to it (e.g. ./flashsale-data) lands somewhere it owns.
RUN useradd --system --user-group --uid 10001 --create-home \
        --home-dir /var/lib/flashsale --shell /usr/sbin/nologin flashsale
WORKDIR /var/lib/flashsale

COPY --from=builder /usr/local/bin/flashsale /usr/local/bin/flashsale

# Numeric, so that runtimes checking "runs as non-root" (runAsNonRoot) can tell.
USER 10001:10001
ENV HOST=0.0.0.0 PORT=8080
EXPOSE 8080

# Health: the slim image has no curl, and installing it only for this would add
# a tool (and its libraries) to every container. bash, which the base image
# already has, can speak enough HTTP over /dev/tcp: the container is healthy
# when GET /readyz (server up and database reachable) answers 200.
# It probes 127.0.0.1, which HOST=0.0.0.0 includes.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-8080} && printf 'GET /readyz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

# Exec form: flashsale is PID 1 and gets SIGTERM itself (graceful shutdown).
ENTRYPOINT ["/usr/local/bin/flashsale"]
CMD ["serve"]
