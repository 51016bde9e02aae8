#!/usr/bin/env bash
# Runs every test suite against one devcluster (each test uses its own namespace).
set -euo pipefail
cd "$(dirname "$0")/../.."
state="${TEST_STATE:?}"
log() { echo "[test] $(date +%T) $*" >&2; }

log "the images' contents (tests/images/test.sh: its own registry, two builds, 33 checks)"
tests/images/test.sh

log "the chart's linters and checkers (kube-score, kubeconform, promtool, helm-docs; cached)"
tests/devcluster/control-plane/build.sh chart-tools >/dev/null
# tests/chart fails instead of skipping when one of them is missing
export WA_REQUIRE_CHART_TOOLS=1

log "starting devcluster in $state"
"$DEVCLUSTER_BIN" up --state-dir "$state"
trap '"$DEVCLUSTER_BIN" down --state-dir "$state" || true' EXIT
export DEVCLUSTER_STATE_DIR="$state"
export KUBECONFIG="$state/kubeconfig"

log "cargo tests (unit + integration on devcluster)"
cargo test --release --workspace --no-fail-fast -- --test-threads=2

if [[ -f frontend/package.json ]]; then
  log "frontend unit tests"
  (cd frontend && npm test)
fi
if [[ -f tests/conformance/package.json ]]; then
  log "whatsapp-web.js conformance against the fake WhatsApp Web"
  (cd tests/conformance && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund && npm test)
fi
if [[ -f tests/e2e/package.json ]]; then
  log "end-to-end tests"
  (cd tests/e2e && npm ci --no-audit --no-fund && npm test)
fi
log "all suites passed"
