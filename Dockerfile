# syntax=docker/dockerfile:1
#
# model-lens-sync container image.
#   docker build -t model-lens-sync .
#   docker run --rm -e DATABASE_URL=postgres://USER:PASSWORD@HOST:5432/DB -p 127.0.0.1:3000:3000 model-lens-sync
# The image runs `serve` (the worker: schedule, admin API, /metrics, /healthz, /readyz) by default;
# any other command works too: `docker run --rm -e DATABASE_URL=... model-lens-sync sync`.
# Configuration comes from the environment (docs/operations.md, "Configure"); the container
# always needs DATABASE_URL, since the embedded PostgreSQL is for development machines only.

# Base images are pinned by digest, so a build uses exactly the images that were reviewed; the
# tag says which version the digest is. To upgrade, change both (docker buildx imagetools
# inspect rust:1.88-slim-bookworm shows the current digest). The toolchain must be at least
# the crate's rust-version (Cargo.toml), which .ci/check-ops.sh checks against Cargo.lock.

# ---------------------------------------------------------------- build
FROM rust:1.88-slim-bookworm@sha256:38bc5a86d998772d4aec2348656ed21438d20fcdce2795b56ca434cf21430d89 AS build
WORKDIR /src
# reqwest and the PostgreSQL client use rustls: no OpenSSL headers are needed.
COPY . .
# The cache mounts keep the registry and the compiled dependencies between builds; the binary
# is copied out of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin model-lens-sync \
    && install -D -m 0755 target/release/model-lens-sync /out/model-lens-sync

# ---------------------------------------------------------------- run
FROM debian:bookworm-slim@sha256:3783cc01769c7b2b1b83a5c5ad96c815348e28ed7da68e2e3687004faa906251 AS run
# ca-certificates: TLS to the four APIs and to PostgreSQL (sslmode=verify-full uses the system roots); curl: the HEALTHCHECK; tini: PID 1 that forwards
# SIGTERM to the worker and reaps children.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 modellens \
    && useradd --system --uid 10001 --gid modellens --home-dir /app --shell /usr/sbin/nologin modellens \
    && mkdir -p /app/config /app/logs \
    && chown -R modellens:modellens /app

COPY --from=build /out/model-lens-sync /usr/local/bin/model-lens-sync
COPY config/default.toml /app/config/default.toml

WORKDIR /app
# Listen on every interface inside the container (the default is loopback only); logs as JSON
# lines on stdout. Secrets (DATABASE_URL, ADMIN_TOKEN, HF_TOKEN, OPENROUTER_API_KEY,
# ARTIFICIAL_ANALYSIS_API_KEY) are passed at run time, never baked in.
ENV MODEL_LENS_HTTP__LISTEN=0.0.0.0:3000 \
    MODEL_LENS_LOGGING__FORMAT=json \
    RUST_LOG=info

# Numeric, so that orchestrators can verify the user is not root (runAsNonRoot).
USER 10001:10001
EXPOSE 3000

# /healthz answers while the process is alive; /readyz also needs the database.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["curl", "--fail", "--silent", "--show-error", "--max-time", "4", "http://127.0.0.1:3000/healthz"]

# Exec form: tini is PID 1 and forwards SIGTERM to the worker, which stops gracefully within
# http.shutdown_grace_secs (25 s). Docker kills after 10 s unless told otherwise: use
# `docker stop -t 30` (compose: `stop_grace_period: 30s`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/model-lens-sync"]
CMD ["serve"]
