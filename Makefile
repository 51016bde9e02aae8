# whatsapp-operator — build, test and demo entry points.
# Caches live outside the checkout (reused across clones and by CI, never required).
SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/whatsapp-operator
export WA_CACHE_DIR := $(CACHE)
export CARGO_TARGET_DIR ?= $(CACHE)/target
export npm_config_cache ?= $(CACHE)/npm
export GOFLAGS ?= -buildvcs=false
BIN := $(CARGO_TARGET_DIR)/release
# The devcluster used by `make test` (one cluster for the whole run, a namespace per test).
export TEST_STATE ?= $(CACHE)/state/test
export WA_BIN_DIR := $(BIN)
export DEVCLUSTER_BIN := $(BIN)/devcluster

.PHONY: all deps control-plane build frontend crds lint test test-fast cluster-up cluster-down demo demo-down clean

all: build

## deps: install what a fresh machine lacks (Chromium, fonts, Node packages).
deps:
	@tests/scripts/install-deps.sh

## control-plane: build etcd, the Kubernetes control plane and node (kubelet, kube-proxy),
## containerd, CoreDNS (+ helm, and the chart's checkers: kube-score, kubeconform, promtool,
## helm-docs) from Go modules (cached).
control-plane:
	@tests/devcluster/control-plane/build.sh all >/dev/null
	@tests/devcluster/control-plane/build.sh helm >/dev/null
	@tests/devcluster/control-plane/build.sh chart-tools >/dev/null

## build: every Rust binary (release) and the frontend.
build: frontend
	cargo build --release --workspace --bins

frontend:
	@if [ -f frontend/package.json ]; then cd frontend && npm ci --no-audit --no-fund && npm run build; fi

## crds: regenerate crds/whatsappsession.yaml from the Rust types (and the Helm chart's copy).
crds:
	cargo run -q -p crds --bin crdgen > crds/whatsappsession.yaml
	cp crds/whatsappsession.yaml charts/whatsapp-operator/crds/whatsappsession.yaml

## lint: formatting first (seconds), cargo-deny (licences, duplicate versions, sources,
## advisories: deny.toml), then the frontend's ESLint + tsc, then clippy (-D warnings).
## CI runs it before the tests, so a slip fails fast.
lint:
	cargo fmt --all --check
	@tests/scripts/deny.sh
	cd frontend && npm ci --no-audit --no-fund && npm run lint && npm run typecheck
	cargo clippy --workspace --all-targets --locked -- -D warnings

## test-fast: the tier that needs no cluster, no root and no Chromium, in seconds once built:
## every crate's unit tests (`--lib --bins`: lib and binary targets, no tests/ suites), e.g.
## the operator's reconcile against a mocked API server. `make test` stays the gate.
test-fast:
	cargo test --workspace --lib --bins

## test: every test, from a fresh machine. The Go and the Rust builds run side by side: on a
## fresh machine each spends minutes downloading and linking, which the other fills.
test: deps
	@$(MAKE) --no-print-directory -j2 control-plane build
	@tests/scripts/run-tests.sh

## cluster-up / cluster-down: a devcluster for development (KUBECONFIG, REGISTRY printed);
## its images: tests/images/build.sh --registry $$REGISTRY.
cluster-up: control-plane build
	$(DEVCLUSTER_BIN) up --state-dir $(CACHE)/state/dev

cluster-down:
	$(DEVCLUSTER_BIN) down --state-dir $(CACHE)/state/dev

demo:
	@if [ -x tests/scripts/demo.sh ]; then tests/scripts/demo.sh; else echo "make demo: not implemented yet"; exit 1; fi

demo-down:
	@if [ -x tests/scripts/demo.sh ]; then tests/scripts/demo.sh down; fi

clean:
	cargo clean
