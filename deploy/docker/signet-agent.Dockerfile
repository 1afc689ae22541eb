# syntax=docker/dockerfile:1
# Image of signet-agent. Build from the repository root:
#   docker build -f deploy/docker/signet-agent.Dockerfile -t signet-agent .

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The cache mounts keep downloaded crates and compiled dependencies between builds, so the
# binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p signet-agent --bin signet-agent \
    && install -D target/release/signet-agent /out/signet-agent

FROM debian:bookworm-slim
RUN groupadd --system --gid 10002 signet-agent \
    && useradd --system --uid 10002 --gid signet-agent --home-dir /var/lib/signet-agent \
        --shell /usr/sbin/nologin signet-agent \
    && install -d -o signet-agent -g signet-agent -m 0700 /var/lib/signet-agent \
    && install -d -o signet-agent -g signet-agent -m 0755 /run/signet-agent
COPY --from=builder /out/signet-agent /usr/local/bin/signet-agent
# `run` and `explain` (`kubectl exec ... -- signet-agent explain`) read the admin socket path
# from here, so they always agree.
ENV SIGNET_AGENT_ADMIN_SOCKET=/run/signet-agent/private/admin.sock
# Where `healthcheck`, `api` and workloads that use this image find the Workload API: the
# socket_path of deploy/agent.toml. The Kubernetes DaemonSet sets its own path.
ENV SPIFFE_ENDPOINT_SOCKET=unix:///run/signet-agent/public/api.sock
# Keep glibc malloc from holding the large buffers of each entry sync after they are freed
# (docs/benchmarks.md, "Memory and cold start").
ENV MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072
# Runs as a non-root user by default. The Kubernetes DaemonSet overrides it with root and only
# CAP_SYS_PTRACE: the unix workload attestor needs that capability for other users'
# /proc/<pid>/exe, and Kubernetes sets no ambient capabilities, so a non-root process cannot
# hold it.
USER 10002:10002
EXPOSE 8080 9988
ENTRYPOINT ["/usr/local/bin/signet-agent"]
CMD ["run", "--config", "/etc/signet-agent/agent.toml"]
