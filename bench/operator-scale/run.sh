#!/usr/bin/env bash
# Operator scale benchmark: N WhatsAppSessions with the stand-in agent (devcluster test pod).
# Measures the time until all are Ready, the operator's peak RSS and CPU seconds (from /proc)
# and the API requests it sent per session (its own wa_operator_kube_requests_total).
#
# Usage: KUBECONFIG=<devcluster kubeconfig> REGISTRY=<its registry> bench/operator-scale/run.sh [N ...]
#   (default: 100 500; both from the devcluster's cluster.env)
# Needs the release binaries (wa-operator, devcluster-testpod) in $WA_BIN_DIR or
# $CARGO_TARGET_DIR/release; the stand-in image is built and pushed to $REGISTRY.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${KUBECONFIG:?point KUBECONFIG at a devcluster (devcluster up prints it)}"
bin="${WA_BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}"
op_bin="$bin/wa-operator"
[[ -x "$op_bin" ]] || { echo "missing $op_bin (cargo build --release -p operator)" >&2; exit 1; }
timeout_s="${BENCH_TIMEOUT:-1800}"
sizes=("$@"); [[ ${#sizes[@]} -gt 0 ]] || sizes=(100 500)
clk=$(getconf CLK_TCK)
: "${REGISTRY:?set REGISTRY to the registry of the devcluster (cluster.env)}"
stand_in=$(WA_BIN_DIR=$bin tests/devcluster/images/build.sh --registry "$REGISTRY" | sed -n 's/^image=\(.*testpod.*\)/\1/p')
results=()

kubectl apply --server-side --force-conflicts --field-manager=whatsapp-bench -f crds/whatsappsession.yaml >/dev/null
kubectl wait --for=condition=Established crd/whatsappsessions.whatsapp.leadmaster.io --timeout=60s >/dev/null

metric() { curl -fsS "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1==m {print $2}'; }

for n in "${sizes[@]}"; do
  ns="bench-$n-$RANDOM"
  kubectl create namespace "$ns" >/dev/null
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  log="/tmp/wa-operator-$ns.log"
  "$op_bin" --namespace "$ns" --leader-election=false --session-image "$stand_in" \
    --metrics-addr "127.0.0.1:$port" --default-cpu-request= --default-memory-request= \
    --default-cpu-limit= --default-memory-limit= >"$log" 2>&1 &
  op_pid=$!
  trap 'kill $op_pid 2>/dev/null || true' EXIT
  until curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do sleep 0.2; done
  base_requests=$(metric wa_operator_kube_requests_total)

  manifest=$(mktemp)
  for i in $(seq 1 "$n"); do
    printf -- '---\napiVersion: whatsapp.leadmaster.io/v1alpha1\nkind: WhatsAppSession\nmetadata: {name: s%04d}\nspec: {tenant: bench, deletionPolicy: Delete}\n' "$i"
  done >"$manifest"
  start=$(date +%s.%N)
  kubectl apply -n "$ns" -f "$manifest" >/dev/null
  ready=0
  while :; do
    ready=$(kubectl get wa -n "$ns" -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$' || true)
    [[ "$ready" -ge "$n" ]] && break
    now=$(date +%s.%N)
    if (( $(echo "$now - $start > $timeout_s" | bc) )); then echo "timeout: $ready/$n Ready" >&2; break; fi
    sleep 2
  done
  end=$(date +%s.%N)
  secs=$(echo "$end - $start" | bc)
  hwm_kb=$(awk '/VmHWM/ {print $2}' "/proc/$op_pid/status")
  read -r utime stime < <(awk '{print $14, $15}' "/proc/$op_pid/stat")
  cpu=$(echo "scale=2; ($utime + $stime) / $clk" | bc)
  requests=$(( $(metric wa_operator_kube_requests_total) - base_requests ))
  per_cr=$(echo "scale=1; $requests / $n" | bc)
  results+=("$(printf '%6s %8s %10.1f %12s %10s %14s' "$n" "$ready" "$secs" "$((hwm_kb / 1024))" "$cpu" "$per_cr")")

  # Clean up: deleting the namespace deletes the sessions (policy Delete) through the operator.
  kubectl delete namespace "$ns" --wait=false >/dev/null
  kubectl wait --for=delete wa --all -n "$ns" --timeout=600s >/dev/null 2>&1 || true
  kill "$op_pid" 2>/dev/null || true
  wait "$op_pid" 2>/dev/null || true
  trap - EXIT
  rm -f "$manifest"
done

printf '%6s %8s %10s %12s %10s %14s\n' "N" "Ready" "seconds" "peakRSS_MiB" "cpu_s" "requests/CR"
printf '%s\n' "${results[@]}"
