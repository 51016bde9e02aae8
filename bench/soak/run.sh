#!/usr/bin/env bash
# The reliability soak (issue 12): the whole product as the chart deploys it on a devcluster
# with a real kubelet node (operator, hub replicas, session pods from the wa-session image, the
# fake WhatsApp Web), N linked sessions, M socket.io clients and a browser on the UI, faults on a
# seeded schedule for SOAK_MINUTES; prints the figures and writes them to bench/results/.
# See docs/soak.md.
#
# Usage: bench/soak/run.sh          (binaries built: cargo build --release --workspace --bins;
#                                     frontend built; tests/e2e: npm ci)
#   SOAK_MINUTES (30) SOAK_SESSIONS (10) SOAK_CLIENTS (500) SOAK_SEED (1)
#   SOAK_FAULTS (comma-separated kinds; default: all, see tests/e2e/soak/faults.mjs)
#   SOAK_HUB_REPLICAS (2) SOAK_SESSION_MEMORY (768Mi: the session container's limit, what the
#   oom fault exceeds) SOAK_POD_CIDR (10.244.22.0/24) SOAK_HUB_PORT (31996)
#   SOAK_DIR (~/.cache/whatsapp-operator/state/soak: the cluster's state, logs, artifacts)
#   SOAK_OUT (bench/results/soak.json) SOAK_KEEP=1 (leave the cluster running afterwards)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cache=${WA_CACHE_DIR:-$HOME/.cache/whatsapp-operator}
export WA_CACHE_DIR=$cache CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
dir=${SOAK_DIR:-$cache/state/soak}
log() { echo "[soak] $(date +%T) $*" >&2; }

# Room for N Chromiums (~300 MiB each, one up to the memory limit while the oom fault runs)
# and the clients: refuse to start what would push the machine under 4 GiB available.
avail_mib=$(awk '/MemAvailable/ {print int($2/1024)}' /proc/meminfo)
need_mib=$((4096 + ${SOAK_SESSIONS:-10} * 400 + 1024 + ${SOAK_CLIENTS:-500}))
if ((avail_mib < need_mib)); then
  log "only ${avail_mib} MiB available, ${need_mib} needed for ${SOAK_SESSIONS:-10} sessions: lower SOAK_SESSIONS"
  exit 1
fi

log "cluster + images + chart (tests/scripts/demo.sh, fake WhatsApp Web) in $dir"
DEMO_FAKE_WHATSAPP=1 DEMO_DETACH=1 DEMO_SKIP_BUILD=${SOAK_BUILD_SKIP:-1} DEMO_DIR=$dir \
  DEMO_POD_CIDR=${SOAK_POD_CIDR:-10.244.22.0/24} DEMO_HUB_PORT=${SOAK_HUB_PORT:-31996} \
  tests/scripts/demo.sh >"$dir.demo.log" 2>&1 || { tail -30 "$dir.demo.log" >&2; exit 1; }
if [[ ${SOAK_KEEP:-0} != 1 ]]; then
  trap 'log "tearing down"; DEMO_DIR=$dir tests/scripts/demo.sh down >/dev/null 2>&1 || true' EXIT
fi
set -a
# shellcheck disable=SC1091
source "$dir/demo.env"
set +a

# The chart as a production install would run it: hub replicas behind one Service, and a
# session memory limit the oom fault can reach without taking the machine's memory.
helm="$cache/helm-$(sed -n 's/^HELM_VERSION=//p' tests/devcluster/control-plane/versions.env)/helm"
log "helm upgrade: hub.replicas=${SOAK_HUB_REPLICAS:-2}, session memory limit ${SOAK_SESSION_MEMORY:-768Mi}"
"$helm" upgrade wa charts/whatsapp-operator -n whatsapp-system --reuse-values --wait --timeout 5m \
  --set hub.replicas="${SOAK_HUB_REPLICAS:-2}" \
  --set session.defaultResources.memoryLimit="${SOAK_SESSION_MEMORY:-768Mi}" >"$dir.helm.log" 2>&1 \
  || { tail -20 "$dir.helm.log" >&2; exit 1; }

export SOAK_NODE_LOG_DIR=$dir/cluster/node/var-log/pods SOAK_ARTIFACTS=$dir/artifacts
# the cluster kinds restart its parts through `devcluster restart` (demo.sh's state dir)
export SOAK_DEVCLUSTER_STATE_DIR=$dir/cluster SOAK_DEVCLUSTER_BIN=$CARGO_TARGET_DIR/release/devcluster
# Not `exec`: the EXIT trap above tears the cluster down afterwards (an exec'd shell never
# runs it, which left the 30-minute run's cluster up).
node bench/soak/soak.mjs
