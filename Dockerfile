# syntax=docker/dockerfile:1
#
# tixngo-bridge image: `docker build -t tixngo-bridge .` (BuildKit, the default since Docker 23).
# The default (last) stage is the production image: the `tixngo-bridge` binary alone (`run`,
# `config check`, `topology export`, `dlq`, ...), built from the bridge crate, so it carries no
# simulator, chaos or bench code, and without debug info. The `lab` stage
# (`docker build --target lab -t tixngo-lab .`) holds the tools the compose demo needs: the
# TIXnGO simulator (`tixngo-sim`) and `tixngo-lab` (demo publisher, bench, chaos).
# deploy/README.md explains the choices; scripts/check-deploy lints this file and checks that the
# build context (.dockerignore) holds everything `cargo build --locked` needs.

# The builder's Debian release must match the runtime's: a binary linked on a newer glibc
# (the plain `rust:1.95` tag follows Debian's newest release) does not start on bookworm.
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /build
# The slim image's gcc is enough: aws-lc-sys (rustls' crypto) builds its C with the `cc` crate on
# Linux, so no cmake, OpenSSL or pkg-config is needed.
# The workspace's manifests and sources: cargo reads every member's manifest even to build one.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY schemas ./schemas
COPY clippy.toml ./
# No debug info in the shipped binary (the local release profile keeps line tables for
# profiling the bench).
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo
# Cache mounts keep the crate downloads and compiled dependencies between builds without a
# dummy-main layer trick (whose copied-in sources can look older than the cached build and be
# skipped). target/ lives only in the cache, so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/build/target,sharing=locked \
    cargo build --release --locked --package tixngo-bridge --bin tixngo-bridge \
    && install -D -m 0755 target/release/tixngo-bridge /out/tixngo-bridge

# The tools: simulator and lab, for the compose demo (never the production image).
FROM build AS lab-build
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/build/target,sharing=locked \
    cargo build --release --locked --package tixngo-sim --package tixngo-lab \
    && install -D -m 0755 target/release/tixngo-sim /out/tixngo-sim \
    && install -D -m 0755 target/release/tixngo-lab /out/tixngo-lab

# What both images share: the system roots and the unprivileged user.
FROM debian:${DEBIAN_RELEASE}-slim AS base
# ca-certificates: reqwest's rustls verifies TIXnGO's (and amqps) certificates against the
# system roots. Not version-pinned on purpose: each rebuild should pick up security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can verify it and secret files can be
# made readable to it (fsGroup) without guessing.
RUN groupadd --system --gid 10001 tixngo \
    && useradd --system --uid 10001 --gid tixngo --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin tixngo

FROM base AS lab
COPY --from=lab-build /out/tixngo-sim /out/tixngo-lab /usr/local/bin/
USER 10001:10001
CMD ["tixngo-sim", "--help"]

FROM base AS runtime
COPY --from=build /out/tixngo-bridge /usr/local/bin/tixngo-bridge
USER 10001:10001
# Log collectors want one JSON object per line; the compose demo switches back to pretty.
ENV TIXNGO_BRIDGE_LOG_FORMAT=json
# [http] listen: /metrics (Prometheus), /healthz, /readyz. No HEALTHCHECK: Kubernetes probes
# these endpoints itself and the image ships no HTTP client to call them with.
EXPOSE 9090
# Exec form: the bridge is PID 1 and receives SIGTERM itself; it drains in-flight messages for
# worker.shutdown_grace (30 s by default), so give it longer than that before SIGKILL
# (compose stop_grace_period, Kubernetes terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/tixngo-bridge"]
CMD ["run", "--config", "/etc/tixngo-bridge/config.toml"]

LABEL org.opencontainers.image.title="tixngo-bridge" \
      org.opencontainers.image.description="Keeps tickets aligned between S-360 and TIXnGO, in real time, over RabbitMQ." \
      org.opencontainers.image.licenses="MIT"
