# syntax=docker/dockerfile:1.7
# wa-operator image: ghcr.io/leadmaster/wa-operator
#   docker build -f images/wa-operator.Dockerfile -t ghcr.io/leadmaster/wa-operator:0.1.0 .
# Build context: the repository root. The compile step is the one `make build` runs
# (cargo build --release), narrowed to this binary; `make test` exercises the same build.
#
# Build arguments (the defaults are the full build above):
#   BINARIES      the stage the runtime copies /out from: `build` compiles here; `prebuilt`
#                 takes the binary `make build` produced from the named context `staged`
#                 (--build-context staged=DIR, DIR/wa-operator), as tests/images/build.sh does
#                 on machines with no Rust image. buildah/podman: always pass
#                 --build-arg BINARIES=... (see docs/images.md).
#   RUNTIME_BASE  the runtime base image.
# The runtime stage (last) is the same whichever stage built the binary.

ARG RUST_VERSION=1.94
ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARIES=build

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binary is copied out of
# the cached target dir because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin wa-operator \
 && install -D target/release/wa-operator /out/wa-operator

FROM scratch AS prebuilt
COPY --from=staged wa-operator /out/wa-operator

FROM ${BINARIES} AS binaries

# distroless/cc: glibc + libgcc + CA certificates, no shell or package manager; the same
# Debian 12 glibc the builder linked against. Runs as the image's nonroot user (65532).
FROM ${RUNTIME_BASE}
COPY --from=binaries /out/wa-operator /usr/local/bin/wa-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/wa-operator"]
