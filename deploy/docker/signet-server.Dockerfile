# syntax=docker/dockerfile:1
# Image of signet-server. Build from the repository root:
#   docker build -f deploy/docker/signet-server.Dockerfile -t signet-server .

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The cache mounts keep downloaded crates and compiled dependencies between builds, so the
# binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p signet-server --bin signet-server \
    && install -D target/release/signet-server /out/signet-server

FROM debian:bookworm-slim
# A fixed uid, so that Kubernetes can check runAsNonRoot and fsGroup can match it.
RUN groupadd --system --gid 10001 signet \
    && useradd --system --uid 10001 --gid signet --home-dir /var/lib/signet-server \
        --shell /usr/sbin/nologin signet \
    && install -d -o signet -g signet -m 0700 /var/lib/signet-server /run/signet-server
COPY --from=builder /out/signet-server /usr/local/bin/signet-server
# `run` and the operator commands (`kubectl exec ... -- signet-server entry show`) read the
# admin socket path from here, so they always agree.
ENV SIGNET_SERVER_ADMIN_SOCKET=/run/signet-server/private/api.sock
USER 10001:10001
EXPOSE 8081 8080 9988
HEALTHCHECK --interval=30s --timeout=15s CMD ["/usr/local/bin/signet-server", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/signet-server"]
CMD ["run", "--config", "/etc/signet-server/server.toml"]
