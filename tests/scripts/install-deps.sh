#!/usr/bin/env bash
# Installs what `make test` needs and a fresh machine lacks. Idempotent and quiet when all is there.
set -euo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v ip >/dev/null || need+=(iproute2)
fc-list 2>/dev/null | grep -qi noto || need+=(fonts-noto-core)
command -v nsenter >/dev/null || need+=(util-linux)
# the egress proxy of session-pod/tests/proxy.rs (an authenticating proxy, BasicAuth)
command -v tinyproxy >/dev/null || need+=(tinyproxy)
# The devcluster node: runc and the CNI plugins beside containerd (built from Go modules),
# iptables/conntrack for kube-proxy, and the image tools (buildah, skopeo, debootstrap, the
# distribution registry) for the images it runs.
command -v runc >/dev/null || need+=(runc)
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
command -v iptables >/dev/null || need+=(iptables)
command -v conntrack >/dev/null || need+=(conntrack)
# ipset for kube-router, the node's NetworkPolicy controller (its chains match pod sets)
command -v ipset >/dev/null || need+=(ipset)
command -v buildah >/dev/null || need+=(buildah)
command -v skopeo >/dev/null || need+=(skopeo)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v docker-registry >/dev/null || need+=(docker-registry)
# the image scripts' helpers (present on most machines)
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
command -v ps >/dev/null || need+=(procps)
command -v bc >/dev/null || need+=(bc)
# the venv of schemathesis (hub/tests/contract/fuzz.rs)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
if ((${#need[@]})); then
  echo "[deps] installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
for tool in go cargo node npm kubectl; do
  command -v "$tool" >/dev/null || { echo "[deps] missing $tool: install it first" >&2; exit 1; }
done
# schemathesis (PyPI, pinned) in a venv of its own: the OpenAPI probe of hub/tests/contract/fuzz.rs.
st_version=4.32.5
st_venv="${WA_CACHE_DIR:-$HOME/.cache/whatsapp-operator}/schemathesis"
if ! "$st_venv/bin/st" --version 2>/dev/null | grep -qF "$st_version"; then
  echo "[deps] installing schemathesis $st_version into $st_venv" >&2
  python3 -m venv --clear "$st_venv"
  "$st_venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$st_version"
fi
