#!/usr/bin/env bash
# Session agent figures (issue 4): start → first QR in the CR status (p50 of 10), start →
# connected when restoring a saved login (p50/p90 of 10; plan target < 3 s; issue 15: <= 1 s) and
# where its time goes (restore_steps_p50_ms, from the agent's debug log), SIGTERM to the
# agent's process group (a pod deletion) → agent exited and → next agent connected (issue 12),
# and the memory of the agent + Chromium process tree while connected and idle (plan budget
# 500 MB): peak RSS, PSS and USS, and per process.
# Hang recovery (issue 12): a hung page → relaunch decided → connected again, with the agent's
# defaults and with the rule before the hang watchdog (HANG_RUNS=N, default 3).
# Real Chromium, the fake WhatsApp Web, a devcluster API server.
# Usage: bench/agent/run.sh   (DEVCLUSTER_STATE_DIR=<running cluster> to reuse one; BENCH_RUNS=N)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/whatsapp-operator/target}"
echo "BENCH load before: $(uptime)"
cargo test --release -q -p session-pod --test bench -- --ignored --nocapture 2>&1 | tee /tmp/agent-bench.log | grep '^BENCH'
echo "BENCH load after: $(uptime)"
