# Pond in a container: the release binary, the DuckDB extensions of the
# default configuration, a non-root user and a data volume.
#
#   docker build -t pond .
#   docker run -d --name pond --stop-timeout 60 \
#     -p 32010:32010 -p 8000:8000 -p 5433:5433 \
#     -v pond-data:/var/lib/pond -e POND_ADMIN_PASSWORD=... pond
#
# Settings are POND_* environment variables (docs/configuration.md); secrets
# such as POND_MASTER_KEY belong in `--env-file`, not in the image. The first
# build compiles DuckDB (about 20 minutes on 2 cores).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- console: the web console's libraries bundled from the npm lockfile
FROM node:20-${DEBIAN_RELEASE}-slim AS console
WORKDIR /web
COPY crates/pond-console/web/ ./
RUN npm ci --no-audit --no-fund --loglevel=error && node build.mjs

# ---- build: the release binary (DuckDB's C++ needs g++, which this image has)
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
COPY --from=console /web/dist crates/pond-console/web/dist
RUN cargo build --release --locked --bin pond \
 && install -m 0755 target/release/pond /usr/local/bin/pond \
 && /usr/local/bin/pond version

# ---- extensions: the official signed binaries from PyPI's wheels, installed
# by Pond's own installer into DuckDB's layout (v<version>/<platform>/).
# The list is POND_SERVE_EXTENSIONS of scripts/env.sh.
FROM python:3.12-slim-${DEBIAN_RELEASE} AS extensions
ARG POND_EXTENSIONS="icu ducklake httpfs postgres_scanner"
COPY --from=build /usr/local/bin/pond /usr/local/bin/pond
# hadolint ignore=SC2086
RUN pond extensions install --extension-dir /opt/pond/extensions --python python3 ${POND_EXTENSIONS}

# ---- runtime
FROM debian:${DEBIAN_RELEASE}-slim
# CA certificates for S3 (httpfs), JWKS URLs and PostgreSQL links over TLS.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 pond \
 && useradd --system --uid 10001 --gid pond --home-dir /var/lib/pond --shell /usr/sbin/nologin pond \
 && mkdir -p /var/lib/pond \
 && chown pond:pond /var/lib/pond \
 && chmod 0700 /var/lib/pond
COPY --from=build /usr/local/bin/pond /usr/local/bin/pond
COPY --from=extensions /opt/pond/extensions /opt/pond/extensions

# Listen on every interface inside the container; extensions come from the
# image only (no download attempts at start: POND_OFFLINE).
ENV POND_DATA_DIR=/var/lib/pond \
    POND_EXTENSION_DIR=/opt/pond/extensions \
    POND_OFFLINE=true \
    POND_FLIGHT_ADDR=0.0.0.0:32010 \
    POND_HTTP_ADDR=0.0.0.0:8000 \
    POND_PG_ADDR=0.0.0.0:5433

# Flight SQL, HTTP, PostgreSQL wire. (TCP-DuckDB's protocol is off unless
# POND_TCP_ADDR is set, e.g. 0.0.0.0:4000; publish that port too then.)
EXPOSE 32010 8000 5433
VOLUME ["/var/lib/pond"]
USER 10001:10001
WORKDIR /var/lib/pond

# `pond health` GETs /health on POND_HTTP_ADDR (https when POND_TLS_CERT is set).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["pond", "health"]

# Pond drains requests and checkpoints on SIGTERM; give it time (--stop-timeout 60).
STOPSIGNAL SIGTERM
ENTRYPOINT ["pond"]
CMD ["serve"]
