# syntax=docker/dockerfile:1.7
# wa-operator image: ghcr.io/leadmaster/wa-operator
#   docker build -f images/wa-operator.Dockerfile -t ghcr.io/leadmaster/wa-operator:0.1.0 .
# Build context: the repository root. The compile step is the one `make build` runs
# (cargo build --release), narrowed to this binary; `make test` exercises the same build.

ARG RUST_VERSION=1.94
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binary is copied out of
# the cached target dir because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin wa-operator \
 && install -D target/release/wa-operator /out/wa-operator

# distroless/cc: glibc + libgcc + CA certificates, no shell or package manager; the same
# Debian 12 glibc the builder linked against. Runs as the image's nonroot user (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/wa-operator /usr/local/bin/wa-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/wa-operator"]
