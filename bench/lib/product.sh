# shellcheck shell=bash
# The product on a devcluster's real node as the chart deploys it, for the memory and density
# benches (sourced, not run): `make demo` with the fake WhatsApp Web (operator + hub by the
# Helm chart, session pods from the wa-session image), images pinned by digest, and helpers to
# link sessions and read what the kubelet reports.
#
# Needs: root, the release binaries in $CARGO_TARGET_DIR/release (make build), kubectl, jq, curl.

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bench_cache=${WA_CACHE_DIR:-$HOME/.cache/whatsapp-operator}
export WA_CACHE_DIR=$bench_cache CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$bench_cache/target}

blog() { echo "[bench $(date -u +%H:%M:%S)] $*" >&2; }
load1() { cut -d' ' -f1 /proc/loadavg; }
mem_available_mib() { awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo; }

# product_up DEMO_DIR POD_CIDR HUB_PORT: starts (or reuses) the demo install in DEMO_DIR and
# exports KUBECONFIG, FAKE_WHATSAPP_URL, DEMO_NAMESPACE, DEMO_SESSION, BENCH_HELM.
product_up() {
  local demo=$1 cidr=$2 port=$3
  if [[ ! -f $demo/demo.env ]]; then
    blog "make demo in $demo (fake WhatsApp Web, pod CIDR $cidr, no build)"
    (cd "$bench_root" && DEMO_FAKE_WHATSAPP=1 DEMO_DETACH=1 DEMO_SKIP_BUILD=1 DEMO_DIR=$demo \
      DEMO_POD_CIDR=$cidr DEMO_HUB_PORT=$port make -s demo >/dev/null 2>"$demo.log") ||
      { tail -20 "$demo.log" >&2; return 1; }
    pin_images "$demo"
  fi
  set -a
  # shellcheck disable=SC1091
  source "$demo/demo.env"
  set +a
  export BENCH_HELM
  BENCH_HELM="$bench_cache/helm-$(sed -n 's/^HELM_VERSION=//p' "$bench_root/tests/devcluster/control-plane/versions.env")/helm"
}

# The registry's storage is shared by every devcluster on the machine, and so are its tags:
# another engineer's push of the same tag must not reach these pods. Pin the digests this
# demo built.
pin_images() {
  local demo=$1 log sets=()
  log=$(grep -l '^image=.*wa-session' "$demo"/logs/*.log | head -1)
  [[ -n $log ]] || { blog "no image= lines in $demo/logs"; return 1; }
  for c in session operator hub; do
    local d
    d=$(sed -n "s/^image=.*\/wa-$c:[^@]*@\(sha256:[0-9a-f]*\).*/\1/p" "$log" | head -1)
    [[ -n $d ]] && sets+=(--set "$c.image.digest=$d")
  done
  blog "pinning images: ${sets[*]}"
  set -a
  # shellcheck disable=SC1091
  source "$demo/demo.env"
  set +a
  local helm
  helm="$bench_cache/helm-$(sed -n 's/^HELM_VERSION=//p' "$bench_root/tests/devcluster/control-plane/versions.env")/helm"
  "$helm" upgrade wa "$bench_root/charts/whatsapp-operator" -n whatsapp-system --reuse-values \
    "${sets[@]}" --wait --timeout 5m >/dev/null
}

# The kubelet's /stats/summary (through the API server's node proxy), one compact document.
summary() { kubectl get --raw /api/v1/nodes/devcluster-node/proxy/stats/summary | jq -c .; }

# container_mem SUMMARY NS POD CONTAINER: "workingSetBytes rssBytes usageBytes"
container_mem() {
  jq -r --arg ns "$2" --arg pod "$3" --arg c "$4" \
    '.pods[] | select(.podRef.namespace == $ns and .podRef.name == $pod) | .containers[]
     | select(.name == $c) | "\(.memory.workingSetBytes) \(.memory.rssBytes) \(.memory.usageBytes)"' <<<"$1"
}

# wait_jsonpath NS NAME JSONPATH VALUE TIMEOUT_S: waits for the session's field to equal VALUE.
wait_field() {
  kubectl wait -n "$1" --for=jsonpath="$3"="$4" "wa/$2" --timeout="${5}s" >/dev/null
}

# link NS NAME PHONE [TIMEOUT_S]: the session shows a QR, the fake's phone scans it, connected.
link() {
  local ns=$1 name=$2 phone=$3 timeout=${4:-180} qr end
  end=$((SECONDS + timeout))
  while ((SECONDS < end)); do
    qr=$(kubectl get wa -n "$ns" "$name" -o jsonpath='{.status.qr}' 2>/dev/null || true)
    if [[ -n $qr ]] && curl -fsS -X POST "${FAKE_WHATSAPP_URL}_fake/scan" -H 'content-type: application/json' \
      -d "{\"qr\":\"$qr\",\"phone\":\"$phone\"}" >/dev/null 2>&1; then
      wait_field "$ns" "$name" '{.status.status}' connected $((end - SECONDS > 5 ? end - SECONDS : 5))
      return
    fi
    sleep 1
  done
  return 1
}

# session_pod NS NAME: the session's pod (its StatefulSet's only replica).
session_pod() { echo "wa-$2-0"; }
