# syntax=docker/dockerfile:1.7
#
# ipam-gateway container image: a static-ish release binary on distroless, running as non-root.
#
#   docker build -t ipam-gateway:0.1.0 .
#   docker run --rm -p 8443:8443 -p 9464:9464 ipam-gateway:0.1.0      # embedded demo config
#
# Kubernetes manifests: deploy/k8s/ (see docs "Deployment").

# ---- build ---------------------------------------------------------------------------------------
# The toolchain the test suite runs on (the locked dependencies need ≥ 1.90: redb 4.6).
FROM rust:1.95-bookworm AS builder
# aws-lc-rs (rustls' crypto) builds its C code with cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry and target directories are BuildKit cache mounts: dependencies are downloaded and
# compiled once and reused by every later build; only the gateway's own crate is rebuilt.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ipam-gateway \
 && install -D -m 0755 target/release/ipam-gateway /out/ipam-gateway \
 && mkdir -p /out/state

# ---- runtime -------------------------------------------------------------------------------------
# glibc + libgcc, no shell, no package manager; user 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/ipam-gateway /usr/local/bin/ipam-gateway
COPY config/ipam-gateway.toml /etc/ipam-gateway/ipam-gateway.toml
COPY --from=builder --chown=65532:65532 /out/state /var/lib/ipam-gateway
# Listen on all interfaces inside the container; generated TLS material and the embedded
# backend's data file live in the state dir (a volume in Kubernetes: the root fs is read-only).
ENV IPAMGW_SERVER__LISTEN=0.0.0.0:8443 \
    IPAMGW_METRICS__LISTEN=0.0.0.0:9464 \
    IPAMGW_SERVER__STATE_DIR=/var/lib/ipam-gateway
WORKDIR /var/lib/ipam-gateway
USER 65532:65532
EXPOSE 8443 9464
# No HEALTHCHECK: the image has no shell or curl; orchestrators probe GET /healthz and /readyz.
ENTRYPOINT ["/usr/local/bin/ipam-gateway"]
CMD ["--config", "/etc/ipam-gateway/ipam-gateway.toml", "serve"]
