#!/usr/bin/env bash
# Session agent figures (issue 4): start → first QR in the CR status (p50 of 10), start →
# connected when restoring a saved login (p50 of 10; plan target < 3 s), and peak RSS of the
# agent + Chromium process tree while connected and idle (plan budget 500 MB).
# Real Chromium, the fake WhatsApp Web, a devcluster API server.
# Usage: bench/agent/run.sh   (DEVCLUSTER_STATE_DIR=<running cluster> to reuse one; BENCH_RUNS=N)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [[ ! -f session-pod/tests/bench.rs ]]; then
  echo "bench/agent: the benchmark is still in session-pod/pending-tests (not yet verified); see its README.md" >&2
  exit 2
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/whatsapp-operator/target}"
cargo test --release -q -p session-pod --test bench -- --ignored --nocapture 2>&1 | tee /tmp/agent-bench.log | grep '^BENCH'
