#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kube-scheduler (and helm) from the
# official Go modules, through the Go module proxy, into a cache outside the checkout:
#   ${WA_CACHE_DIR:-~/.cache/whatsapp-operator}/k8s-<ver>/{kube-apiserver,...}
#   ${WA_CACHE_DIR:-~/.cache/whatsapp-operator}/etcd-<ver>/etcd
#   ${WA_CACHE_DIR:-~/.cache/whatsapp-operator}/helm-<ver>/helm
# Prints the directory of each. Already-built versions are reused (a `.complete` marker).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC1091
source "$here/versions.env"
cache="${WA_CACHE_DIR:-$HOME/.cache/whatsapp-operator}"
what="${1:-all}"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOPROXY="${GOPROXY:-https://proxy.golang.org,direct}"

log() { echo "[control-plane] $*" >&2; }

build_k8s() {
  local out="$cache/k8s-$K8S_VERSION"
  [[ -f "$out/.complete" ]] && { echo "$out"; return; }
  local work="$cache/src/k8s-$K8S_VERSION"
  mkdir -p "$work" "$out"
  cd "$work"
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
  {
    echo "module devcluster.local/k8sbuild"
    echo
    sed -n 's/^go \(.*\)/go \1/p' "$gomod" | head -1
    echo
    grep '^godebug' "$gomod" || true
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    # k/k requires its staging modules at v0.0.0 and replaces them with ./staging/...; point
    # each at the published module of the same release instead.
    grep -E '=> \./staging/src/' "$gomod" | awk -v v="$K8S_STAGING_VERSION" '{print "replace " $1 " => " $1 " " v}'
  } > go.mod
  cat > tools.go <<'GO'
//go:build tools

package k8sbuild

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
  log "resolving k8s.io/kubernetes $K8S_VERSION dependencies"
  go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S_VERSION" \
    "k8s.io/kubernetes/cmd/kube-scheduler@$K8S_VERSION"
  go mod tidy
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  log "building kube-apiserver, kube-controller-manager, kube-scheduler $K8S_VERSION (cold: tens of minutes)"
  go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ld" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler
  touch "$out/.complete"
  echo "$out"
}

build_etcd() {
  local out="$cache/etcd-$ETCD_VERSION"
  [[ -f "$out/.complete" ]] && { echo "$out"; return; }
  local work="$cache/src/etcd-$ETCD_VERSION"
  mkdir -p "$work" "$out"
  cd "$work"
  cat > go.mod <<GOMOD
module devcluster.local/etcdbuild

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
  log "building etcd $ETCD_VERSION"
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3
  touch "$out/.complete"
  echo "$out"
}

build_helm() {
  local out="$cache/helm-$HELM_VERSION"
  [[ -f "$out/.complete" ]] && { echo "$out"; return; }
  mkdir -p "$out"
  log "building helm $HELM_VERSION"
  GOBIN="$out" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  touch "$out/.complete"
  echo "$out"
}

case "$what" in
  etcd) build_etcd ;;
  k8s) build_k8s ;;
  helm) build_helm ;;
  all) build_etcd; build_k8s ;;
  *) echo "usage: $0 [all|etcd|k8s|helm]" >&2; exit 2 ;;
esac
