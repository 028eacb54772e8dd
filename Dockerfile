# syntax=docker/dockerfile:1
#
# The service image: `docker build -t fleet-optimization .` (BuildKit, for the
# cache mounts). Two stages: a Rust toolchain builds the one binary, a slim
# Debian runs it as an unprivileged user. Configuration is the environment
# only (DESIGN.md section 7; README "Deployment").

ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm

# --- build ---------------------------------------------------------------------
# The full (non-slim) image: gcc, make, perl and zlib headers, which the
# bundled librdkafka build (rdkafka's default features) and the bundled
# SQLite, zstd and ring need.
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# The whole workspace: cargo reads every member's manifest and every declared
# target (benches, tests) even to build one binary; .dockerignore keeps out
# target/, .git and the separate fuzz and Arroyo workspaces. The SQL under
# sql/ and the migrations are compiled into the binary (include_str!,
# sqlx::migrate!).
COPY . .
# Registry, git checkouts and target/ are cache mounts, so a rebuild after a
# source change recompiles only our crates. target/ is not in the image, so
# the binary is copied out in the same step.
RUN --mount=type=cache,id=fleet-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=fleet-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=fleet-target,target=/src/target,sharing=locked \
    cargo build --release --locked --bin fleet-optimization \
    && install -D -m 0755 target/release/fleet-optimization /out/fleet-optimization

# --- run -----------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# What the binary links dynamically is glibc, libgcc_s and zlib (librdkafka
# takes the system zlib), all in the base image; rdkafka, SQLite, zstd and
# ring are static. ca-certificates: for TLS to external services
# (no dependency needs it today: the Postgres, Redis, Kafka and ClickHouse
# clients are built without TLS), small enough to keep.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 fleet \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin fleet \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/fleet-optimization

COPY --from=builder /out/fleet-optimization /usr/local/bin/fleet-optimization
# Read at run time, relative to the working directory: the zone file
# (ZONES_FILE, default data/nyc/zones.csv) and, for the embedded replay when
# KAFKA_BROKERS is unset, the trips (TRIPS_FILE). Owned by root: read-only.
WORKDIR /app
COPY data/nyc/ /app/data/nyc/

# DATA_DIR: the embedded SQLite file and Parquet analytics when DATABASE_URL
# or CLICKHOUSE_ADDR are unset; writable by the service user only.
ENV PORT=8080 \
    DATA_DIR=/var/lib/fleet-optimization \
    LOG_LEVEL=info

# A numeric user, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001
EXPOSE 8080

# GET /health with bash alone (no curl in the image): 200 when every
# configured dependency answers, 503 when one is down. Plain HTTP only (with
# TLS_CERT_FILE set, override or disable this check).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-8080} && printf 'GET /health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]

# `docker run IMAGE` serves; `docker run IMAGE migrate` (or replay, solve, ...)
# runs another subcommand.
ENTRYPOINT ["/usr/local/bin/fleet-optimization"]
CMD ["serve"]
