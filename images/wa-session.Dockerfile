# syntax=docker/dockerfile:1.7
# wa-session image (the session agent + Chromium): ghcr.io/leadmaster/wa-session
#   docker build -f images/wa-session.Dockerfile -t ghcr.io/leadmaster/wa-session:0.1.0 .
# Build context: the repository root. The compile step is the one `make build` runs
# (cargo build --release), narrowed to this binary; `make test` runs the same agent against
# Debian's Chromium, the package installed below.
#
# Build arguments (the defaults are the full build above):
#   BINARIES      the stage the runtime copies /out from: `build` compiles here; `prebuilt`
#                 takes the binary `make build` produced from the named context `staged`
#                 (--build-context staged=DIR, DIR/wa-session), as tests/images/build.sh does
#                 on machines with no Rust image. buildah/podman: always pass
#                 --build-arg BINARIES=... (see docs/images.md).
#   RUNTIME_BASE  the runtime base image.
# The runtime stage (last) is the same whichever stage built the binary.

ARG RUST_VERSION=1.94
ARG RUNTIME_BASE=docker.io/library/debian:bookworm-slim
ARG BINARIES=build

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin wa-session \
 && install -D target/release/wa-session /out/wa-session

FROM scratch AS prebuilt
COPY --from=staged wa-session /out/wa-session

FROM ${BINARIES} AS binaries

FROM ${RUNTIME_BASE}
# Chromium and fonts for WhatsApp Web's text and emoji (Noto covers Latin, CJK is optional:
# add fonts-noto-cjk for such contacts' names); CA certificates for TLS; tini reaps
# Chromium's helper processes, since the agent is PID 1's only child.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      chromium fonts-noto-core fonts-noto-color-emoji ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 wa && useradd --uid 1000 --gid 1000 --home-dir /data --no-create-home wa \
 && mkdir -p /data && chown 1000:1000 /data
# Chromium's managed policy: WhatsApp only, no background services (docs/session-agent.md,
# "What the browser contacts"). The operator mounts the same policy over this directory, with
# its --whatsapp-url allowed when that is not WhatsApp's own.
COPY images/wa-session/chromium-policy.json /etc/chromium/policies/managed/whatsapp-operator.json
# The binary last: a change to the Rust code alone changes (and pushes) one layer.
COPY --from=binaries /out/wa-session /usr/local/bin/wa-session
# Debian's /usr/bin/chromium is a shell wrapper; pointing the agent at the real binary means
# nothing in the running container needs a shell.
ENV CHROMIUM_PATH=/usr/lib/chromium/chromium \
    WA_DATA_DIR=/data \
    WA_HTTP_ADDR=0.0.0.0:8080
# The operator mounts the session's PVC at /data (fsGroup 1000) and /dev/shm as memory.
VOLUME /data
USER 1000:1000
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/wa-session"]
