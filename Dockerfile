# syntax=docker/dockerfile:1
#
# One image per service, chosen at build time:
#   docker build --build-arg SERVICE=user-service --build-arg PORT=8081 -t ferroshop/user-service .
# `SERVICE` is the Cargo package and binary name (services/<name>); `PORT` its default port
# (docs/DESIGN: user 8081, product 8082, order 8083, payment 8084, notification 8085,
# gateway 8080, psp-sim 8090). Stages: web (the storefront's static files), chef (toolchain +
# cargo-chef), planner (dependency recipe), builder (dependencies cached in their own layer,
# then the service), runtime.

ARG RUST_IMAGE=rust:1-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim
ARG RUNTIME_IMAGE=debian:bookworm-slim

# The web storefront (web/), built from its lock file; every image carries it (about 0.3 MB)
# and only the gateway serves it (GATEWAY_WEB_ROOT below).
FROM ${NODE_IMAGE} AS web
WORKDIR /web
COPY web/package.json web/package-lock.json web/.npmrc ./
RUN npm ci --no-audit --no-fund --cache /tmp/npm-cache
COPY web/ ./
RUN npm run build

FROM ${RUST_IMAGE} AS chef
# cmake and g++ build librdkafka from source (rdkafka's `cmake-build` feature). Not pinned
# to exact Debian versions: bookworm's point releases replace them, and a pin would break the
# build on the next security update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake g++ \
 && rm -rf /var/lib/apt/lists/*
# cargo-chef from crates.io, pinned, built with its own lock file.
RUN cargo install cargo-chef --locked --version 0.1.77
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
ARG SERVICE=user-service
# Only the dependency graph reaches this layer, so it is rebuilt when Cargo.toml/Cargo.lock
# change, not when the sources do.
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --recipe-path recipe.json --package "${SERVICE}"
COPY . .
RUN cargo build --release --locked --package "${SERVICE}" \
 && cp "target/release/${SERVICE}" /app/service

FROM ${RUNTIME_IMAGE} AS runtime
ARG SERVICE=user-service
ARG PORT=8081
# ca-certificates: TLS to external PostgreSQL/MongoDB/Kafka/OIDC. Nothing else: the health
# check below uses bash (Essential in Debian, so already in the slim image), not curl.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin app \
 && mkdir -p /var/lib/ferroshop/secrets \
 && chown -R 10001:10001 /var/lib/ferroshop \
 && chmod 700 /var/lib/ferroshop/secrets
COPY --from=builder /app/service /usr/local/bin/service
COPY --from=web /web/dist /usr/share/ferroshop/web
# Listen on every interface inside the container (the services default to 127.0.0.1).
# JWT_PRIVATE_KEY_PATH points into a directory owned by the app user: user-service writes its
# key there on first start in the local profile (mount a volume to keep it), and Kubernetes
# mounts the key from a Secret there. (A path, not a secret value.)
# hadolint ignore=DL3064
ENV SERVICE_NAME=${SERVICE} \
    HOST=0.0.0.0 \
    PORT=${PORT} \
    JWT_PRIVATE_KEY_PATH=/var/lib/ferroshop/secrets/jwt-ed25519.pem \
    GATEWAY_WEB_ROOT=/usr/share/ferroshop/web \
    RUST_LOG=info
USER 10001:10001
EXPOSE ${PORT}
# A real HTTP check without curl: bash's /dev/tcp (dash, /bin/sh here, has none) sends a GET
# to the readiness endpoint and requires a 200 status line. Readiness, not liveness, because
# compose uses "healthy" to order start-up (product-service waits for user-service's JWKS).
# Kubernetes ignores HEALTHCHECK and uses the chart's probes instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT} && printf 'GET /health/ready HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r -t 2 status <&3 && [[ $status == *' 200 '* ]]"]
ENTRYPOINT ["/usr/local/bin/service"]
