# syntax=docker/dockerfile:1.7
# wa-hub image (REST + socket.io + the web UI): ghcr.io/leadmaster/wa-hub
#   docker build -f images/wa-hub.Dockerfile -t ghcr.io/leadmaster/wa-hub:0.1.0 .
# Build context: the repository root. Both build steps are the ones `make build` runs
# (`npm ci && npm run build` in frontend/, `cargo build --release`), which `make test` exercises.

ARG RUST_VERSION=1.94
ARG NODE_VERSION=22

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

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/wa-hub /usr/local/bin/wa-hub
# The chart passes --static-dir=/usr/share/wa-hub/static (values: hub.staticDir).
COPY --from=frontend /src/frontend/dist /usr/share/wa-hub/static
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/wa-hub"]
