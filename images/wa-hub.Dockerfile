# syntax=docker/dockerfile:1.7
# wa-hub image (REST + socket.io + the web UI): ghcr.io/leadmaster/wa-hub
#   docker build -f images/wa-hub.Dockerfile -t ghcr.io/leadmaster/wa-hub:0.1.0 .
# Build context: the repository root. Both build steps are the ones `make build` runs
# (`npm ci && npm run build` in frontend/, `cargo build --release`), which `make test` exercises.
#
# Build arguments (the defaults are the full build above):
#   BINARIES      the stage the runtime copies /out from: `build` compiles here; `prebuilt`
#                 takes what `make build` produced from the named context `staged`
#                 (--build-context staged=DIR, DIR/wa-hub and DIR/static = frontend/dist), as
#                 tests/images/build.sh does on machines with no Rust or Node image.
#                 buildah/podman: always pass --build-arg BINARIES=... (see docs/images.md).
#   RUNTIME_BASE  the runtime base image.
# The runtime stage (last) is the same whichever stage built /out.

ARG RUST_VERSION=1.94
ARG NODE_VERSION=22
ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARIES=build

FROM docker.io/library/node:${NODE_VERSION}-bookworm-slim AS frontend
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY frontend/ ./
RUN npm run build

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin wa-hub \
 && install -D target/release/wa-hub /out/wa-hub
COPY --from=frontend /src/frontend/dist /out/static

FROM scratch AS prebuilt
COPY --from=staged static /out/static
COPY --from=staged wa-hub /out/wa-hub

FROM ${BINARIES} AS binaries

FROM ${RUNTIME_BASE}
# The chart passes --static-dir=/usr/share/wa-hub/static (values: hub.staticDir).
COPY --from=binaries /out/static /usr/share/wa-hub/static
# The binary last: a change to the Rust code alone changes (and pushes) one layer.
COPY --from=binaries /out/wa-hub /usr/local/bin/wa-hub
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/wa-hub"]
