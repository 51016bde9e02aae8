# devcluster's own test pod (src/bin/devcluster-testpod.rs) for the kubelet node's tests, on
# the same distroless base as the product's operator and hub images (tests/images).
ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot
FROM ${RUNTIME_BASE}
COPY devcluster-testpod /usr/local/bin/devcluster-testpod
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/devcluster-testpod"]
