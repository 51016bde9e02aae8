#!/usr/bin/env bash
# The kubelet node's costs, measured (issue 11): warm `devcluster up` → node
# Ready, the image rebuild + push after a change to one binary, and the memory of a connected
# session as the kubelet sees it (container working set from /stats/summary, the figure memory
# limits and OOM decisions use), beside the operator's and the hub's. Prints the figures and
# writes them as JSON to bench/results/realnode.json.
#
# Usage: bench/realnode/run.sh [UP_RUNS]   (binaries and frontend built: `make build`)
#   env: BENCH_SAMPLES (working-set samples, 1 s apart, default 30)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cache=${WA_CACHE_DIR:-$HOME/.cache/whatsapp-operator}
export WA_CACHE_DIR=$cache CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$cache/target}
bin=$CARGO_TARGET_DIR/release
runs=${1:-3}
samples=${BENCH_SAMPLES:-30}
state=$cache/state/bench-kubelet
demo=$cache/state/bench-kubelet-demo
log() { echo "[bench] $*" >&2; }
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }
load() { cut -d' ' -f1 /proc/loadavg; }

# 1. warm start: up → node Ready, and down
"$bin/devcluster" down --state-dir "$state" >/dev/null 2>&1 || true
ups=() downs=()
for i in $(seq "$runs"); do
  t0=$(now)
  "$bin/devcluster" up --state-dir "$state" --pod-cidr 10.244.249.0/24 >/dev/null
  t1=$(now)
  KUBECONFIG=$state/kubeconfig kubectl get node devcluster-node --no-headers | grep -q ' Ready ' || { log "node not Ready"; exit 1; }
  "$bin/devcluster" down --state-dir "$state" >/dev/null 2>&1
  t2=$(now)
  ups+=("$(secs "$t0" "$t1")") downs+=("$(secs "$t1" "$t2")")
  log "run $i: up→Ready $(printf %.2f "${ups[-1]}") s, down $(printf %.2f "${downs[-1]}") s (load $(load))"
done

# 2. a connected session (make demo with the fake WhatsApp Web), its memory over time
log "make demo (fake WhatsApp Web, no build)"
DEMO_FAKE_WHATSAPP=1 DEMO_DETACH=1 DEMO_SKIP_BUILD=1 DEMO_DIR=$demo DEMO_POD_CIDR=10.244.248.0/24 DEMO_HUB_PORT=31997 \
  make -s demo >/dev/null 2>"$demo.log" || { tail -20 "$demo.log" >&2; exit 1; }
trap 'DEMO_DIR=$demo make -s demo-down >/dev/null 2>&1 || true' EXIT
# shellcheck disable=SC1091
set -a; source "$demo/demo.env"; set +a
qr=$(kubectl get wa -n "$DEMO_NAMESPACE" "$DEMO_SESSION" -o jsonpath='{.status.qr}')
curl -fsS -X POST "${FAKE_WHATSAPP_URL}_fake/scan" -H 'content-type: application/json' \
  -d "{\"qr\":\"$qr\",\"phone\":\"5491100000000\"}" >/dev/null
kubectl wait -n "$DEMO_NAMESPACE" --for=jsonpath='{.status.status}'=connected "wa/$DEMO_SESSION" --timeout=120s >/dev/null
log "session connected; sampling working sets ($samples s)"
# one compact JSON document per line
summary() { kubectl get --raw /api/v1/nodes/devcluster-node/proxy/stats/summary | jq -c .; }
sleep 5  # let the page settle after the link before sampling
tmp=$(mktemp)
for _ in $(seq "$samples"); do summary >>"$tmp"; sleep 1; done
python3 - "$tmp" "$DEMO_NAMESPACE" <<'PY' >"$demo.mem.json"
import json, sys
text = [l for l in open(sys.argv[1]).read().splitlines() if l.strip()]
series = {}
for doc in text:
    s = json.loads(doc)
    for pod in s.get("pods", []):
        for c in pod.get("containers", []):
            key = f'{pod["podRef"]["namespace"]}/{pod["podRef"]["name"]}/{c["name"]}'
            m = c.get("memory", {})
            series.setdefault(key, []).append((m.get("workingSetBytes", 0), m.get("rssBytes", 0)))
out = {}
for k, v in series.items():
    ws = [a for a, _ in v]; rss = [b for _, b in v]
    mib = lambda x: round(x / 1048576, 1)
    out[k] = {"working_set_mib": {"min": mib(min(ws)), "mean": mib(sum(ws) / len(ws)), "max": mib(max(ws))},
              "rss_mib_max": mib(max(rss)), "samples": len(v)}
print(json.dumps(out, indent=1))
PY
rm -f "$tmp"

# 3. image rebuild + push after a change to one binary (a byte appended to a copy of
#    wa-session: to the image pipeline the same as a rebuilt binary)
rebuild_dir=$(mktemp -d)
cp "$bin"/{wa-operator,wa-hub,wa-session} "$rebuild_dir/"
printf '\n' >>"$rebuild_dir/wa-session"
t0=$(now)
WA_BIN_DIR=$rebuild_dir tests/images/build.sh --registry "$(sed -n 's/^REGISTRY=//p' "$demo/cluster/cluster.env")" --tag bench-rebuild >/dev/null 2>"$demo.rebuild.log"
t1=$(now)
rm -rf "$rebuild_dir"
rebuild=$(secs "$t0" "$t1")
log "image rebuild + push after one changed binary: $(printf %.1f "$rebuild") s"

python3 - "$demo.mem.json" "$rebuild" "$(load)" "${ups[*]}" "${downs[*]}" <<'PY' | tee "$root/bench/results/realnode.json"
import json, sys
mem = json.load(open(sys.argv[1]))
ups = [float(x) for x in sys.argv[4].split()]; downs = [float(x) for x in sys.argv[5].split()]
print(json.dumps({
    "command": "bench/realnode/run.sh",
    "up_to_node_ready_s": [round(x, 2) for x in ups],
    "down_s": [round(x, 2) for x in downs],
    "image_rebuild_and_push_one_binary_s": round(float(sys.argv[2]), 1),
    "container_memory": mem,
    "load_at_end": float(sys.argv[3]),
}, indent=1))
PY
