#!/usr/bin/env bash
# How many connected sessions one machine holds (issue 15, row 5): a ramp on the devcluster's
# real node with the product as the chart deploys it (bench/lib/product.sh: `make demo` with the
# fake WhatsApp Web; operator and hub in pods, session pods from the wa-session image). Each
# step adds BENCH_STEP sessions and links each through the fake (QR → scan → connected), then
# checks that the whole fleet still works:
#   - every session connected;
#   - restore: BENCH_RESTARTS sessions picked at random get their pod deleted and must come
#     back connected from their saved login (no QR), timed;
#   - QR: a fresh session is created and must show a QR, timed (then deleted);
# and records the kubelet's container working sets of every session (/stats/summary through the
# API server's node proxy), the node's working set, the host's MemAvailable and the load.
#
# The machine is shared: before each step the ramp stops when MemAvailable minus the step's
# expected cost (the MemAvailable drop per session measured so far, × 1.25) would fall under
# BENCH_FLOOR_MIB (6144), and right away when MemAvailable is under it. It also stops at
# BENCH_MAX sessions, at BENCH_DEADLINE (a `date +%s`), or when a step's checks fail (where it
# breaks).
#
# Usage: bench/density/run.sh
#   env: BENCH_STEP (5), BENCH_MAX (60), BENCH_RESTARTS (2), BENCH_FLOOR_MIB (6144),
#        BENCH_DEADLINE, BENCH_DEMO_DIR (~/.cache/whatsapp-operator/state/bench-memory; an
#        existing demo there is reused), BENCH_POD_CIDR (10.244.24.0/24), BENCH_HUB_PORT (31924),
#        BENCH_KEEP=1 leaves the sessions and the demo running.
# Session pods ask for 10m CPU (the product's default, 100m, would fit 20 pods on a 2-core
# node: requests, not use) and keep the product's memory request and limit (256Mi / 1Gi).
# Writes bench/results/density.json (the command, every step, where and why it stopped).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/product.sh
source "$here/../lib/product.sh"
demo=${BENCH_DEMO_DIR:-$bench_cache/state/bench-memory}
step=${BENCH_STEP:-5} max=${BENCH_MAX:-60} restarts=${BENCH_RESTARTS:-2}
floor=${BENCH_FLOOR_MIB:-6144} deadline=${BENCH_DEADLINE:-0}
out=$bench_root/bench/results/density.json
cmd="bench/density/run.sh (BENCH_STEP=$step BENCH_MAX=$max BENCH_RESTARTS=$restarts BENCH_FLOOR_MIB=$floor)"

blog "uptime: $(uptime)"
avail0=$(mem_available_mib)
product_up "$demo" "${BENCH_POD_CIDR:-10.244.24.0/24}" "${BENCH_HUB_PORT:-31924}"
ns=$DEMO_NAMESPACE
cleanup() {
  [[ ${BENCH_KEEP:-0} == 1 ]] && return
  kubectl delete wa -n "$ns" -l bench=density --wait=false >/dev/null 2>&1 || true
  kubectl wait -n "$ns" --for=delete wa -l bench=density --timeout=300s >/dev/null 2>&1 || true
  (cd "$bench_root" && DEMO_DIR=$demo make -s demo-down >/dev/null 2>&1) || true
}
trap cleanup EXIT
# The demo's own session stays Stopped: the fleet is only the bench's.
avail_base=$(mem_available_mib)
blog "product up; MemAvailable $avail0 MiB before, $avail_base MiB with the product and no session"

session_manifest() { # NAME
  cat <<YAML
---
apiVersion: whatsapp.leadmaster.io/v1alpha1
kind: WhatsAppSession
metadata: {name: $1, labels: {bench: density}}
spec:
  tenant: $ns
  desiredState: Running
  deletionPolicy: Delete
  storage: {size: 64Mi}
  resources:
    requests: {cpu: 10m, memory: 256Mi}
    limits: {memory: 1Gi}
YAML
}
name_of() { printf 'd%03d' "$1"; }
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

steps=$(mktemp)
n=0 stopped=""
while :; do
  avail=$(mem_available_mib)
  per=$(((avail_base - avail) / (n > 0 ? n : 1)))
  ((per > 150)) || per=150
  if ((n >= max)); then stopped="reached BENCH_MAX=$max sessions"; break; fi
  if ((avail < floor)); then stopped="MemAvailable $avail MiB is under the floor $floor MiB"; break; fi
  if ((avail - step * per * 5 / 4 < floor)); then
    stopped="the next $step sessions (~$per MiB each, measured) would take MemAvailable ($avail MiB) under the floor $floor MiB"
    break
  fi
  if ((deadline > 0 && $(date +%s) > deadline)); then stopped="time budget (BENCH_DEADLINE) spent"; break; fi

  first=$((n + 1)) last=$((n + step))
  blog "step: sessions $first..$last (MemAvailable $avail MiB, ~$per MiB/session so far, load $(load1))"
  for i in $(seq "$first" "$last"); do session_manifest "$(name_of "$i")"; done | kubectl apply -n "$ns" -f - >/dev/null
  t0=$(date +%s%N) pids=() failed=0
  for i in $(seq "$first" "$last"); do
    link "$ns" "$(name_of "$i")" "$(printf '54911%07d' "$i")" 300 & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
  link_ms=$(ms_since "$t0")
  n=$last
  connected=$(kubectl get wa -n "$ns" -l bench=density -o json | jq '[.items[] | select(.status.status == "connected")] | length')

  # restore: delete some pods, each must come back connected from its profile
  restore_ms=() restore_failed=0
  picks=$(seq 1 "$n" | shuf -n "$restarts")
  t0=$(date +%s%N) since=$(date -u +%Y-%m-%dT%H:%M:%SZ) pids=()
  for i in $picks; do
    s=$(name_of "$i")
    kubectl delete pod -n "$ns" "$(session_pod "$ns" "$s")" --wait=false >/dev/null
    (
      t=$(date +%s%N)
      for _ in $(seq 240); do
        st=$(kubectl get wa -n "$ns" "$s" -o jsonpath='{.status.status}|{.status.connectedAt}|{.status.qr}')
        IFS='|' read -r status at qr <<<"$st"
        if [[ $status == connected && $at > "$since" ]]; then echo "$(ms_since "$t")"; exit 0; fi
        [[ -n ${qr:-} ]] && { echo "qr"; exit 1; } # a QR means the login was lost
        sleep 0.5
      done
      exit 1
    ) >"$steps.r$i" & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || restore_failed=$((restore_failed + 1)); done
  # A restore that timed out wrote nothing: null, as one that showed a QR.
  for i in $picks; do v=$(cat "$steps.r$i" 2>/dev/null || true); restore_ms+=("${v:-null}"); rm -f "$steps.r$i"; done

  # QR: a fresh session must show one
  probe=q$(printf '%03d' "$n")
  t0=$(date +%s%N)
  session_manifest "$probe" | kubectl apply -n "$ns" -f - >/dev/null
  qr_ms=null
  for _ in $(seq 240); do
    if [[ -n $(kubectl get wa -n "$ns" "$probe" -o jsonpath='{.status.qr}' 2>/dev/null) ]]; then qr_ms=$(ms_since "$t0"); break; fi
    sleep 0.5
  done
  kubectl delete wa -n "$ns" "$probe" --wait=false >/dev/null

  # what the kubelet counts, once the restarted pods have settled
  sleep 20
  sum=$(summary)
  avail=$(mem_available_mib)
  jq -c --argjson n "$n" --argjson connected "$connected" --argjson failed "$failed" \
    --argjson link_ms "$link_ms" --argjson qr_ms "$qr_ms" --argjson restore_failed "$restore_failed" \
    --argjson restore_ms "[$(IFS=,; echo "${restore_ms[*]}" | sed 's/qr/null/g')]" \
    --argjson avail "$avail" --argjson base "$avail_base" --arg up "$(uptime)" --arg ns "$ns" '
    def mib: . / 1048576 * 10 | round / 10;
    [.pods[] | select(.podRef.namespace == $ns and (.podRef.name | test("^wa-d[0-9]+-0$")))
      | .containers[] | select(.name == "session") | .memory.workingSetBytes] as $ws
    | ($ws | sort) as $s
    | {sessions: $n, connected: $connected, link_failures: $failed, link_step_ms: $link_ms,
       restore_ms: $restore_ms, restore_failures: $restore_failed, fresh_session_qr_ms: $qr_ms,
       session_working_set_mib: {count: ($s | length), median: ($s[($s | length) / 2 | floor] | mib),
         min: ($s[0] | mib), max: ($s[-1] | mib), sum: ($s | add | mib)},
       node_working_set_mib: (.node.memory.workingSetBytes | mib),
       mem_available_mib: $avail, mem_available_drop_per_session_mib: ((($base - $avail) / $n) * 10 | round / 10),
       uptime: $up}' <<<"$sum" | tee -a "$steps" | jq -c '{sessions, connected, restore_ms, fresh_session_qr_ms, session_working_set_mib, mem_available_mib}' >&2
  if ((failed > 0 || connected < n || restore_failed > 0)) || [[ $qr_ms == null ]]; then
    stopped="broke at $n sessions: $failed link failures, $connected/$n connected, $restore_failed restores failed, fresh-session QR $qr_ms ms"
    break
  fi
done
blog "stopped: $stopped"

jq -s --arg cmd "$cmd" --arg stopped "$stopped" --argjson avail0 "$avail0" --argjson base "$avail_base" \
  --argjson floor "$floor" --arg total "$(free -m | awk '/^Mem:/ {print $2}')" '
  (map(select(.connected == .sessions and .restore_failures == 0)) | last) as $ok
  | {command: $cmd,
     measured: "sessions linked through the fake WhatsApp Web on the devcluster real node (chart install, wa-session image); container working sets from the kubelet /stats/summary",
     machine_mem_total_mib: ($total | tonumber), mem_available_before_mib: $avail0,
     mem_available_with_product_mib: $base, floor_mib: $floor,
     stopped_because: $stopped,
     largest_healthy_step: ($ok.sessions // 0),
     sessions_per_gib: (if $ok then {
        by_container_working_set: (1024 / $ok.session_working_set_mib.median * 10 | round / 10),
        by_host_mem_available_drop: (1024 / $ok.mem_available_drop_per_session_mib * 10 | round / 10)} else null end),
     extrapolated_sessions_until_floor: (if $ok then
        (($base - $floor) / $ok.mem_available_drop_per_session_mib | floor) else null end),
     steps: .}' "$steps" >"$out"
rm -f "$steps"
cat "$out"
