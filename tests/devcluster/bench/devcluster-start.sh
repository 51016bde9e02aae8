#!/usr/bin/env bash
# Measures devcluster's warm start (binaries built: `up` → ready) and checks that `down` leaves
# no processes, network namespaces, links or mounts behind, with a pod running at the time.
# Usage: tests/devcluster/bench/devcluster-start.sh [RUNS]
#   env: DEVCLUSTER_BIN (default $CARGO_TARGET_DIR/release/devcluster), BENCH_STATE_DIR,
#        BENCH_POD_CIDR (default 10.244.250.0/24)
set -euo pipefail
runs="${1:-3}"
bin="${DEVCLUSTER_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/whatsapp-operator/target}/release/devcluster}"
state="${BENCH_STATE_DIR:-$HOME/.cache/whatsapp-operator/state/bench}"
cidr="${BENCH_POD_CIDR:-10.244.250.0/24}"
mkdir -p "$state"
printf 'images:\n  busybox: {entrypoint: []}\n' > "$state/bench-images.yaml"
"$bin" down --state-dir "$state" 2>/dev/null || true

# the node agent names its bridge and netns `dc-<FNV-1a of the absolute state dir>`
fnv1a() { local s="$1" h=2166136261 i c
  for ((i = 0; i < ${#s}; i++)); do printf -v c '%d' "'${s:i:1}"; h=$(( ((h ^ c) * 16777619) & 0xffffffff )); done
  printf 'dc-%08x' "$h"; }
prefix="$(fnv1a "$(realpath "$state")")"
snapshot() {
  { pgrep -af -- "$state" | grep -v -e "devcluster-start" -e pgrep || true
    grep -F -- "$state" /proc/self/mountinfo || true
    ip netns list 2>/dev/null | grep -F "$prefix" || true
    ip -o link show 2>/dev/null | grep -F "$prefix" || true; } | sort
}
before="$(snapshot)"
export KUBECONFIG="$state/kubeconfig"
for i in $(seq "$runs"); do
  start=$(date +%s.%N)
  "$bin" up --state-dir "$state" --images "$state/bench-images.yaml" --pod-cidr "$cidr" >/dev/null
  ready=$(date +%s.%N)
  kubectl get nodes --no-headers | grep -q ' Ready ' || { echo "node not Ready" >&2; exit 1; }
  # a running pod with a volume, so that down has a netns, mounts and a process to remove
  kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: sleeper}
spec:
  containers: [{name: main, image: busybox, command: [sleep, "3600"], volumeMounts: [{name: scratch, mountPath: /scratch}]}]
  volumes: [{name: scratch, emptyDir: {}}]
YAML
  kubectl wait --for=condition=Ready pod/sleeper --timeout=60s >/dev/null
  t0=$(date +%s.%N)
  "$bin" down --state-dir "$state" 2>/dev/null
  down=$(date +%s.%N)
  printf 'run %d: up→ready %.2f s, down %.2f s\n' "$i" "$(echo "$ready - $start" | bc)" "$(echo "$down - $t0" | bc)"
  after="$(snapshot)"
  if [[ "$after" != "$before" ]]; then
    echo "down left behind:" >&2; diff <(echo "$before") <(echo "$after") >&2 || true; exit 1
  fi
done
echo "down left no processes, mounts, network namespaces or links behind"
