#!/usr/bin/env bash
# Operator scale benchmark: N WhatsAppSessions with the stand-in agent (devcluster test pod).
# Measures the time until all are Ready, the operator's peak RSS and CPU seconds (from /proc)
# and the API requests it sent per session (its own wa_operator_kube_requests_total).
#
# Where the time goes: from the pods' own conditions (second resolution) the seconds from the
# first apply until the last pod was created, scheduled, had its containers running (the
# kubelet/containerd side) and was Ready (the readiness probe), next to the last session Ready.
#
# Where the CPU goes: seconds of each part of the cluster from the first create to all Ready
# (cpu.py: the control plane's processes, the node's by name with the children they reaped,
# the node's and the pods' cgroups), and the client-side throttling the controller-manager,
# the scheduler and the kubelet logged in that time (client-go logs a wait over 1 s).
#
# Usage: KUBECONFIG=<devcluster kubeconfig> REGISTRY=<its registry> bench/operator-scale/run.sh [N ...]
#   (default: 100 500; both from the devcluster's cluster.env). For 500 the node needs pod
#   addresses: `devcluster up --pod-cidr 10.246.0.0/21` (kubelet maxPods follows the subnet);
#   `--api-qps 100` lifts kube-controller-manager's 20 requests/s, which otherwise holds pod
#   creation to ~5 a second (docs/operator.md "Scale").
#   OPERATOR_ARGS: extra wa-operator flags (e.g. --concurrency 32).
#   BENCH_JSON=FILE: also write the figures as JSON (with the command and `uptime`).
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
json_rows=()

kubectl apply --server-side --force-conflicts --field-manager=whatsapp-bench -f crds/whatsappsession.yaml >/dev/null
kubectl wait --for=condition=Established crd/whatsappsessions.whatsapp.leadmaster.io --timeout=60s >/dev/null

# The cluster's memory cgroup (the node's parts, shims and pods): what each pod costs the machine.
kubelet_pid=$(cat "$(dirname "$KUBECONFIG")/pids/kubelet.pid" 2>/dev/null || true)
cg=/sys/fs/cgroup/memory$(grep -m1 ':memory:' "/proc/$kubelet_pid/cgroup" 2>/dev/null | cut -d: -f3 | cut -d/ -f1-2)
cluster_mem_mib() { # rss + kernel memory of every process of the cluster (page cache excluded)
  [[ -r $cg/memory.stat ]] || { echo 0; return; }
  local rss kmem
  rss=$(awk '$1=="total_rss" {print $2}' "$cg/memory.stat")
  kmem=$(cat "$cg/memory.kmem.usage_in_bytes" 2>/dev/null || echo 0)
  echo $(((rss + kmem) / 1048576))
}

state_dir=$(dirname "$KUBECONFIG")
throttled() { # client-go's "Waited for ... due to client-side throttling" lines so far, per part
  local c
  for c in kube-controller-manager kube-scheduler kubelet; do
    printf '%s=%s ' "$c" "$(grep -c 'client-side throttling' "$state_dir/logs/$c.log" 2>/dev/null || true)"
  done
}

metric() { curl -fsS "http://127.0.0.1:$port/metrics" | awk -v m="$1" '$1==m {print $2}'; }

for n in "${sizes[@]}"; do
  ns="bench-$n-$RANDOM"
  kubectl create namespace "$ns" >/dev/null
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  log="/tmp/wa-operator-$ns.log"
  "$op_bin" --namespace "$ns" --leader-election=false --session-image "$stand_in" \
    --metrics-addr "127.0.0.1:$port" --default-cpu-request= --default-memory-request= \
    --default-cpu-limit= --default-memory-limit= ${OPERATOR_ARGS:-} >"$log" 2>&1 &
  op_pid=$!
  trap 'kill $op_pid 2>/dev/null || true' EXIT
  until curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do sleep 0.2; done
  base_requests=$(metric wa_operator_kube_requests_total)

  # One file per 25 sessions, created 8 at a time: one `kubectl apply` of all 500 (a GET and a
  # create per object, in sequence) took 4 minutes on the loaded 2-core machine, longer than
  # the operator needed to keep up with it.
  manifest=$(mktemp -d)
  for i in $(seq 1 "$n"); do
    printf -- '---\napiVersion: whatsapp.leadmaster.io/v1alpha1\nkind: WhatsAppSession\nmetadata: {name: s%04d}\nspec: {tenant: bench, deletionPolicy: Delete}\n' "$i" \
      >>"$manifest/$(( (i - 1) / 25 )).yaml"
  done
  lag_json=$(mktemp)
  python3 bench/operator-scale/lag.py "$ns" "$n" "$lag_json" &
  lag_pid=$!
  load_before=$(uptime)
  mem_before=$(cluster_mem_mib)
  cpu_before=$(mktemp)
  python3 bench/operator-scale/cpu.py snapshot "$state_dir" >"$cpu_before"
  throttled_before=$(throttled)
  start=$(date +%s.%N)
  printf '%s\n' "$manifest"/*.yaml | xargs -P 8 -I{} kubectl create -n "$ns" -f {} >/dev/null
  ready=0
  while :; do
    ready=$(kubectl get wa -n "$ns" -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$' || true)
    [[ "$ready" -ge "$n" ]] && break
    now=$(date +%s.%N)
    if (( $(echo "$now - $start > $timeout_s" | bc) )); then echo "timeout: $ready/$n Ready" >&2; break; fi
    sleep 2
  done
  end=$(date +%s.%N)
  wait "$lag_pid" || true
  lag=$(cat "$lag_json" 2>/dev/null || echo null); rm -f "$lag_json"
  echo "N=$n as the watches saw it (s after the start; lag = session Ready after its pod's Ready): $lag" >&2
  cpu_after=$(mktemp)
  python3 bench/operator-scale/cpu.py snapshot "$state_dir" >"$cpu_after"
  cluster_cpu=$(python3 bench/operator-scale/cpu.py diff "$cpu_before" "$cpu_after" "$n")
  rm -f "$cpu_before" "$cpu_after"
  throttling="before: $throttled_before after: $(throttled)"
  echo "N=$n CPU seconds (ms per pod) from the first create to all Ready: $cluster_cpu" >&2
  echo "N=$n client-side throttling lines, $throttling" >&2
  secs=$(echo "$end - $start" | bc)
  hwm_kb=$(awk '/VmHWM/ {print $2}' "/proc/$op_pid/status")
  read -r utime stime < <(awk '{print $14, $15}' "/proc/$op_pid/stat")
  cpu=$(echo "scale=2; ($utime + $stime) / $clk" | bc)
  requests=$(( $(metric wa_operator_kube_requests_total) - base_requests ))
  per_cr=$(echo "scale=1; $requests / $n" | bc)
  # seconds after the start (whole seconds: Kubernetes timestamps) of the last pod event of each kind
  phases=$(kubectl get pods -n "$ns" -o json | python3 -c '
import json, sys, datetime
start = float(sys.argv[1])
ts = lambda t: datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() - start
pods = json.load(sys.stdin)["items"]
last = lambda f: max((f(p) for p in pods), default=0.0)
cond = lambda p, c: next((ts(x["lastTransitionTime"]) for x in p["status"].get("conditions", []) if x["type"] == c), 0.0)
print(json.dumps({
  "pods": len(pods),
  "last_pod_created_s": round(last(lambda p: ts(p["metadata"]["creationTimestamp"])), 1),
  "last_pod_scheduled_s": round(last(lambda p: cond(p, "PodScheduled")), 1),
  "last_container_started_s": round(last(lambda p: max((ts(c["state"]["running"]["startedAt"]) for c in p["status"].get("containerStatuses", []) if "running" in c["state"]), default=0.0)), 1),
  "last_pod_ready_s": round(last(lambda p: cond(p, "Ready")), 1),
}))' "$start")
  mem_after=$(cluster_mem_mib)
  per_pod_mib=$(echo "scale=2; ($mem_after - $mem_before) / $n" | bc)
  phases=$(echo "$phases" | python3 -c 'import json,sys; d=json.load(sys.stdin); d["cluster_mem_per_pod_mib"]=float(sys.argv[1]); d["mem_available_mib"]=int(sys.argv[2]); print(json.dumps(d))' \
    "$per_pod_mib" "$(awk '/MemAvailable/ {print int($2/1024)}' /proc/meminfo)")
  echo "N=$n $phases" >&2
  load_after=$(uptime)
  json_rows+=("$(python3 -c 'import json,sys; a=sys.argv; print(json.dumps({"sessions": int(a[1]), "ready": int(a[2]), "seconds_to_all_ready": round(float(a[3]), 1), "operator_peak_rss_mib": int(a[4]), "operator_cpu_s": float(a[5]), "kube_requests_per_session": float(a[6]), "phases": json.loads(a[7]), "cluster_cpu": json.loads(a[10]), "watched": json.loads(a[12]), "throttling_log_lines": a[11].strip(), "uptime_before": a[8].strip(), "uptime_after": a[9].strip()}))' \
    "$n" "$ready" "$secs" "$((hwm_kb / 1024))" "$cpu" "$per_cr" "$phases" "$load_before" "$load_after" "$cluster_cpu" "$throttling" "$lag")")
  results+=("$(printf '%6s %8s %10.1f %12s %10s %14s' "$n" "$ready" "$secs" "$((hwm_kb / 1024))" "$cpu" "$per_cr")")

  # Clean up: deleting the namespace deletes the sessions (policy Delete) through the operator.
  kubectl delete namespace "$ns" --wait=false >/dev/null
  kubectl wait --for=delete wa --all -n "$ns" --timeout=600s >/dev/null 2>&1 || true
  kill "$op_pid" 2>/dev/null || true
  wait "$op_pid" 2>/dev/null || true
  trap - EXIT
  rm -rf "$manifest"
done

printf '%6s %8s %10s %12s %10s %14s\n' "N" "Ready" "seconds" "peakRSS_MiB" "cpu_s" "requests/CR"
printf '%s\n' "${results[@]}"
if [[ -n "${BENCH_JSON:-}" ]]; then
  python3 -c 'import json,sys; print(json.dumps({"command": sys.argv[1], "operator_args": sys.argv[2], "runs": [json.loads(r) for r in sys.argv[3:]]}, indent=1))' \
    "bench/operator-scale/run.sh ${sizes[*]}" "${OPERATOR_ARGS:-}" "${json_rows[@]}" >"$BENCH_JSON"
fi
