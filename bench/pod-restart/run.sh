#!/usr/bin/env bash
# A connected session's pod deleted → connected again on its new pod (issue 15, row 3: what a
# rolling upgrade or a node drain does to one session), on the devcluster's real node with the
# product as the chart deploys it (bench/lib/product.sh: `make demo` with the fake WhatsApp
# Web). Each round deletes the pod the way `kubectl delete pod` and a drain do (graceful, the
# pod's SIGTERM), and times from the delete request, with two watches stamped as their lines
# arrive (bench/pod-restart/rounds.py): the old pod gone, the new pod running, ready, and the CR
# `connected` again with a new `connectedAt` — never a QR (a QR would be a lost login and fails
# the round).
#
# Usage: bench/pod-restart/run.sh
#   env: BENCH_ROUNDS (10), BENCH_DEMO_DIR (~/.cache/whatsapp-operator/state/bench-pod-restart;
#        an existing demo there is reused), BENCH_POD_CIDR (10.244.26.0/24), BENCH_HUB_PORT
#        (31926), BENCH_KEEP=1 leaves the demo running.
# Writes bench/results/pod-restart.json.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/product.sh
source "$here/../lib/product.sh"
demo=${BENCH_DEMO_DIR:-$bench_cache/state/bench-pod-restart}
rounds=${BENCH_ROUNDS:-10}

blog "uptime: $(uptime)"
product_up "$demo" "${BENCH_POD_CIDR:-10.244.26.0/24}" "${BENCH_HUB_PORT:-31926}"
[[ ${BENCH_KEEP:-} == 1 ]] || trap 'blog "demo down"; (cd "$bench_root" && DEMO_DIR=$demo make -s demo-down >/dev/null 2>&1) || true' EXIT
ns=$DEMO_NAMESPACE name=$DEMO_SESSION
status=$(kubectl get wa -n "$ns" "$name" -o jsonpath='{.status.status}')
if [[ $status != connected ]]; then
  # The demo's session starts Stopped (a user's "Conectar" starts it).
  kubectl patch wa -n "$ns" "$name" --type merge -p '{"spec":{"desiredState":"Running"}}' >/dev/null
  blog "linking $ns/$name through the fake WhatsApp Web"
  link "$ns" "$name" 5491100000026
fi
blog "$ns/$name connected; $rounds rounds of pod deletion"
python3 "$here/rounds.py" "$ns" "$name" "$rounds" "bench/pod-restart/run.sh (BENCH_ROUNDS=$rounds)" \
  | tee "$bench_root/bench/results/pod-restart.json"
