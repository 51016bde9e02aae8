#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the node's kubelet and
# kube-proxy (one `go build`, so the packages they share compile once), containerd, CoreDNS
# (and helm), and kube-router (the node's NetworkPolicy controller) from the official Go modules, through the Go module proxy, into a cache outside the
# checkout:
#   ${WA_CACHE_DIR:-~/.cache/whatsapp-operator}/k8s-<ver>/{kube-apiserver,...,kubelet,kube-proxy}
#   ${WA_CACHE_DIR:-~/.cache/whatsapp-operator}/etcd-<ver>/etcd
#   ${WA_CACHE_DIR:-~/.cache/whatsapp-operator}/containerd-<ver>/{containerd,containerd-shim-runc-v2,ctr}
#   ${WA_CACHE_DIR:-~/.cache/whatsapp-operator}/coredns-<ver>/coredns
#   ${WA_CACHE_DIR:-~/.cache/whatsapp-operator}/kube-router-<ver>/kube-router
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

k8s_cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

build_k8s() {
  local out="$cache/k8s-$K8S_VERSION"
  # The marker names the binaries it covers, so a cache from a build of fewer is rebuilt.
  [[ -f "$out/.complete" && "$(cat "$out/.complete")" == "${k8s_cmds[*]}" ]] && { echo "$out"; return; }
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
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO
  log "resolving k8s.io/kubernetes $K8S_VERSION dependencies"
  local c pkgs=()
  for c in "${k8s_cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  go get "${pkgs[@]/%/@$K8S_VERSION}"
  go mod tidy
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  log "building ${k8s_cmds[*]} $K8S_VERSION (cold: tens of minutes)"
  go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ld" -o "$out/" "${pkgs[@]}"
  echo "${k8s_cmds[*]}" > "$out/.complete"
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

# go_install NAME VERSION LDFLAGS PACKAGE...: `go install` of PACKAGE@VERSION into
# $cache/NAME-VERSION (reused when complete).
go_install() {
  local name=$1 version=$2 ldflags=$3; shift 3
  local out="$cache/$name-$version"
  [[ -f "$out/.complete" ]] && { echo "$out"; return; }
  mkdir -p "$out"
  log "building $name $version"
  GOBIN="$out" go install -trimpath -ldflags "-s -w $ldflags" "${@/%/@$version}"
  touch "$out/.complete"
  echo "$out"
}

build_containerd() {
  local m=github.com/containerd/containerd/v2
  go_install containerd "$CONTAINERD_VERSION" "-X $m/version.Version=$CONTAINERD_VERSION -X $m/version.Package=$m" \
    "$m/cmd/containerd" "$m/cmd/containerd-shim-runc-v2" "$m/cmd/ctr"
}

build_coredns() {
  go_install coredns "$COREDNS_VERSION" "" github.com/coredns/coredns
}

build_kube_router() {
  local m=github.com/cloudnativelabs/kube-router/v2
  go_install kube-router "$KUBE_ROUTER_VERSION" "-X $m/pkg/version.Version=$KUBE_ROUTER_VERSION" "$m/cmd/kube-router"
}

build_helm() {
  go_install helm "$HELM_VERSION" "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" helm.sh/helm/v3/cmd/helm
}

build_kube_score() {
  go_install kube-score "$KUBE_SCORE_VERSION" "-X main.version=$KUBE_SCORE_VERSION" github.com/zegl/kube-score/cmd/kube-score
}

build_kubeconform() {
  go_install kubeconform "$KUBECONFORM_VERSION" "" github.com/yannh/kubeconform/cmd/kubeconform
}

build_promtool() {
  go_install promtool "$PROMETHEUS_VERSION" "" github.com/prometheus/prometheus/cmd/promtool
}

build_helm_docs() {
  go_install helm-docs "$HELM_DOCS_VERSION" "" github.com/norwoodj/helm-docs/cmd/helm-docs
}

# The chart's linters and checkers (tests/chart).
build_chart_tools() {
  build_kube_score; build_kubeconform; build_promtool; build_helm_docs
}

case "$what" in
  etcd) build_etcd ;;
  k8s) build_k8s ;;
  helm) build_helm ;;
  containerd) build_containerd ;;
  coredns) build_coredns ;;
  kube-router) build_kube_router ;;
  kube-score) build_kube_score ;;
  kubeconform) build_kubeconform ;;
  promtool) build_promtool ;;
  helm-docs) build_helm_docs ;;
  chart-tools) build_chart_tools ;;
  all) build_etcd; build_k8s; build_containerd; build_coredns; build_kube_router ;;
  *) echo "usage: $0 [all|etcd|k8s|containerd|coredns|kube-router|helm|chart-tools|kube-score|kubeconform|promtool|helm-docs]" >&2; exit 2 ;;
esac
