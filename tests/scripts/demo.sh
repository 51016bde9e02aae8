#!/usr/bin/env bash
# `make demo` (docs/design.md §6): builds everything, starts a devcluster with a real kubelet node in
# .demo/cluster, builds the three images from images/*.Dockerfile with buildah and pushes them
# to the cluster's registry, installs the Helm chart with them, creates tenant `acme` with a
# user and a session (Stopped: "Conectar WhatsApp" starts it, so no QR round is spent before
# someone looks), serves the UI through the hub's NodePort on the node's address, writes
# .demo/demo.env and prints it, then stays in the foreground until Ctrl-C, which stops
# everything. `demo.sh down` (`make demo-down`) removes what is left.
#
# Environment:
#   DEMO_FAKE_WHATSAPP=1   start the bundled fake WhatsApp Web and point sessions at it (offline)
#   DEMO_POD_EGRESS=0|1    NAT for pods so sessions reach the real WhatsApp Web
#                          (default: 1 unless DEMO_FAKE_WHATSAPP=1)
#   DEMO_HUB_PORT          NodePort of the hub on the node's address (default 30080)
#   DEMO_POD_CIDR          pod network of the demo cluster (default 10.244.99.0/24)
#   DEMO_DETACH=1          return once ready, leaving everything running (tests, scripts)
#   DEMO_SKIP_BUILD=1      use the binaries already in $CARGO_TARGET_DIR/release (the images
#                          are still built from them: only what changed is rebuilt and pushed)
#   DEMO_DIR               where the demo keeps its state (default .demo, gitignored)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
CACHE="${WA_CACHE_DIR:-$HOME/.cache/whatsapp-operator}"
export WA_CACHE_DIR="$CACHE"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
export npm_config_cache="${npm_config_cache:-$CACHE/npm}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
bin="$CARGO_TARGET_DIR/release"
export WA_BIN_DIR="$bin"
demo="${DEMO_DIR:-$root/.demo}"
state="$demo/cluster"
logs="$demo/logs"
hub_port="${DEMO_HUB_PORT:-30080}"
pod_cidr="${DEMO_POD_CIDR:-10.244.99.0/24}"
fake="${DEMO_FAKE_WHATSAPP:-0}"
egress="${DEMO_POD_EGRESS:-$([[ $fake == 1 ]] && echo 0 || echo 1)}"
release=wa
system_ns=whatsapp-system
tenant_ns=acme
session=acme-ventas
user=demo
t0=$SECONDS

log() { printf '[demo] %02d:%02d %s\n' $(((SECONDS - t0) / 60)) $(((SECONDS - t0) % 60)) "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# step NAME CMD...: runs CMD with its output in .demo/logs/<n>.log, printing the step, a
# heartbeat every 15 s and, on failure, the end of the log.
nstep=0
step() {
  local name="$1"; shift
  nstep=$((nstep + 1))
  # The log's name: the step's, reduced to a file-name-safe slug (names hold paths).
  local slug="${name%% (*}"
  slug="${slug//[^A-Za-z0-9]/-}"
  local file="$logs/$(printf '%02d' $nstep)-${slug:0:40}.log" s0=$SECONDS
  log "$name"
  "$@" >"$file" 2>&1 &
  local pid=$!
  step_pid=$pid
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if (((SECONDS - s0) % 15 == 0)); then log "  … $name ($((SECONDS - s0)) s)"; fi
  done
  if ! wait "$pid"; then
    tail -n 30 "$file" >&2
    die "$name (log: $file)"
  fi
  log "  done: $name ($((SECONDS - s0)) s)"
}

devcluster_bin() { echo "$bin/devcluster"; }

down() {
  if [[ -f "$demo/fake.pid" ]]; then
    kill "$(cat "$demo/fake.pid")" 2>/dev/null || true
    rm -f "$demo/fake.pid"
  fi
  if [[ -f "$state/cluster.env" ]] && [[ -x "$(devcluster_bin)" ]]; then
    "$(devcluster_bin)" down --state-dir "$state" >&2 || true
  fi
  rm -f "$demo/demo.env"
}

if [[ "${1:-up}" == down ]]; then
  down
  rm -rf "$state"
  log "demo stopped and removed"
  exit 0
fi

# The kubelet node has its own /run, /var/lib and /var/log (devcluster refuses a state dir there).
case "$state/" in
  /run/* | /var/lib/* | /var/log/*) die "the demo's state dir $state is under a directory the node mounts over: set DEMO_DIR elsewhere" ;;
esac
mkdir -p "$logs"
rm -f "$demo/demo.env"
# Ctrl-C while building or starting: stop the running step and whatever is already up.
step_pid=
# (step_pid may name two: the build's two sides.)
trap 'echo >&2; log "interrupted"; [[ -n $step_pid ]] && kill $step_pid 2>/dev/null; down; exit 130' INT TERM

# --- build --------------------------------------------------------------------------------
step "install missing system packages" tests/scripts/install-deps.sh
# The Go side (control plane, helm) and the Rust side (frontend, binaries) share nothing, and on
# a fresh machine each spends minutes downloading and in single-threaded links that the other
# fills: they run side by side, each step still timed on its own.
go_side() {
  step "build control plane (etcd, kube-apiserver, ...; cold: tens of minutes)" \
    tests/devcluster/control-plane/build.sh all
  step "build helm" tests/devcluster/control-plane/build.sh helm
}
rust_side() {
  [[ "${DEMO_SKIP_BUILD:-0}" == 1 ]] && return 0
  if [[ -f frontend/package.json ]]; then
    step "build frontend (npm ci && npm run build)" \
      bash -c 'cd frontend && npm ci --no-audit --no-fund && npm run build'
  fi
  step "build Rust binaries (cargo build --release --workspace --bins)" \
    cargo build --release --workspace --bins
}
s0=$SECONDS
go_side & go_pid=$!
rust_side & rust_pid=$!
step_pid="$go_pid $rust_pid"
go_ok=0 rust_ok=0
wait "$go_pid" || go_ok=$?
wait "$rust_pid" || rust_ok=$?
step_pid=
((go_ok == 0)) || die "the Go side of the build failed (see above)"
((rust_ok == 0)) || die "the Rust side of the build failed (see above)"
log "  done: build, both sides ($((SECONDS - s0)) s)"
helm="$CACHE/helm-$(sed -n 's/^HELM_VERSION=//p' tests/devcluster/control-plane/versions.env)/helm"
for b in devcluster wa-operator wa-hub wa-session; do
  [[ -x "$bin/$b" ]] || die "$bin/$b missing (build failed?)"
done

# --- cluster ------------------------------------------------------------------------------
# A previous demo still running is replaced: one demo cluster at a time.
down
up_args=(up --state-dir "$state" --pod-cidr "$pod_cidr")
[[ $egress == 1 ]] && up_args+=(--pod-egress)
step "start devcluster in $state" "$bin/devcluster" "${up_args[@]}"
# shellcheck disable=SC1091
source "$state/cluster.env"
export KUBECONFIG HOST_IP NODE_IP REGISTRY
step_pid=
step "build images and push them to $REGISTRY (cold: minutes)" tests/images/build.sh --registry "$REGISTRY"
step_pid=

stop_all() {
  trap - INT TERM
  [[ -n ${sleep_pid:-} ]] && kill "$sleep_pid" 2>/dev/null
  echo >&2
  log "stopping (Ctrl-C)"
  down
  log "stopped; \`make demo-down\` removes .demo/cluster"
  exit 0
}

whatsapp_url=https://web.whatsapp.com/
if [[ $fake == 1 ]]; then
  [[ -x "$bin/fake-whatsapp" ]] || die "$bin/fake-whatsapp missing"
  log "start fake WhatsApp Web on $HOST_IP"
  # a previous demo's output must not be matched below
  rm -f "$demo/fake.out"
  "$bin/fake-whatsapp" --listen "$HOST_IP:0" >"$demo/fake.out" 2>"$logs/fake-whatsapp.log" &
  echo $! >"$demo/fake.pid"
  for _ in $(seq 100); do
    grep -q '^FAKE_WHATSAPP_URL=' "$demo/fake.out" 2>/dev/null && break
    sleep 0.1
  done
  whatsapp_url="$(sed -n 's/^FAKE_WHATSAPP_URL=//p' "$demo/fake.out")"
  [[ -n $whatsapp_url ]] || die "fake-whatsapp did not start (log: $logs/fake-whatsapp.log)"
fi

# --- chart --------------------------------------------------------------------------------
password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | head -c 16)"
hash="$(printf '%s' "$password" | "$bin/wa-hub" hash-password)"
cat >"$demo/values.yaml" <<YAML
# Values of the demo install (written by tests/scripts/demo.sh).
session:
  whatsappUrl: "$whatsapp_url"
  image:
    repository: $REGISTRY/leadmaster/wa-session
    # the tag (appVersion) is rebuilt in place by every demo: pull what the registry has
    pullPolicy: Always
operator:
  image:
    repository: $REGISTRY/leadmaster/wa-operator
    pullPolicy: Always
hub:
  image:
    repository: $REGISTRY/leadmaster/wa-hub
    pullPolicy: Always
  service:
    type: NodePort
    nodePort: $hub_port
  auth:
    users:
      - username: $user
        passwordHash: '$hash'
        tenants: [$tenant_ns]
        role: user
# The tenant's namespace, created with the label that lets it hold tenant $tenant_ns's sessions
# (tenant.whatsapp.leadmaster.io/$tenant_ns): the chart's admission policy refuses them elsewhere.
sessionNamespaces:
  create: true
  names: [{name: $tenant_ns, tenants: [$tenant_ns]}]
networkPolicy:
  # Pods reach the fake (and the API server) on the host's address.
  extraEgress:
    - to: [{ipBlock: {cidr: $HOST_IP/32}}]
YAML
kubectl create namespace "$system_ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace "$system_ns" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null
step "helm install (operator + hub)" "$helm" upgrade --install "$release" charts/whatsapp-operator \
  --namespace "$system_ns" --values "$demo/values.yaml" --wait --timeout 5m

# The sample session is created Stopped. Running means "show QR codes now" (DESIGN.md §2): a
# Running session would spend its QR rounds before anyone opened the UI, and a newcomer arriving
# minutes later would find "QR expirado" instead of the README's "Conectar WhatsApp", which
# starts the session (the hub sets desiredState Running with a QR request).
create_session() {
  kubectl patch --local -f examples/session.yaml --type merge \
    -p '{"spec":{"desiredState":"Stopped"}}' -o yaml | kubectl apply -n "$tenant_ns" -f -
}
step "create session $tenant_ns/$session (Stopped until \"Conectar WhatsApp\")" create_session
hub_url="http://$NODE_IP:$hub_port/"
log "wait for the hub at $hub_url"
for _ in $(seq 120); do
  curl -fsS "${hub_url}health" >/dev/null 2>&1 && break
  sleep 1
done
curl -fsS "${hub_url}health" >/dev/null || die "hub not answering at ${hub_url}health"
log "wait for the operator to take the session (Ready=False, reason Stopped)"
if ! kubectl wait -n "$tenant_ns" --for=jsonpath='{.status.conditions[?(@.type=="Ready")].reason}'=Stopped \
  "wa/$session" --timeout=120s >/dev/null; then
  kubectl get wa -n "$tenant_ns" -o wide >&2 || true
  kubectl logs -n "$system_ns" -l app.kubernetes.io/component=operator --tail=20 >&2 || true
  die "the operator did not take $tenant_ns/$session within 120 s (the cluster is left running: \`make demo-down\` removes it)"
fi

{
  echo "KUBECONFIG=$KUBECONFIG"
  echo "HUB_URL=$hub_url"
  echo "DEMO_USER=$user"
  echo "DEMO_PASSWORD=$password"
  echo "DEMO_NAMESPACE=$tenant_ns"
  echo "DEMO_SESSION=$session"
  [[ $fake == 1 ]] && echo "FAKE_WHATSAPP_URL=$whatsapp_url"
} >"$demo/demo.env.tmp"
mv "$demo/demo.env.tmp" "$demo/demo.env"
log "ready in $((SECONDS - t0)) s: open $hub_url, log in as $user, open \"WhatsApp\" and press \"Conectar WhatsApp\" (written to .demo/demo.env)"
cat "$demo/demo.env"

if [[ "${DEMO_DETACH:-0}" == 1 ]]; then
  exit 0
fi
trap stop_all INT TERM
log "running; Ctrl-C stops everything"
# A waited-for background sleep, so the trap runs at once (and kills it: no orphan sleep).
while true; do
  sleep 3600 &
  sleep_pid=$!
  wait "$sleep_pid" || true
done
