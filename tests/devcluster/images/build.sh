#!/usr/bin/env bash
# The images devcluster's own kubelet-node tests run: the test pod (devcluster-testpod on the
# local distroless stand-in) and the pod sandbox (pause), built with buildah from the local
# base images (tests/images/base-images.sh) and pushed to a cluster's registry.
#
# Usage: tests/devcluster/images/build.sh --registry HOST:PORT
# Prints `image=HOST:PORT/devcluster/testpod:dev` (and the pause image) on stdout.
# Inputs: devcluster-testpod in ${WA_BIN_DIR:-$CARGO_TARGET_DIR/release}.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
registry=
while (($#)); do
  case $1 in
    --registry) registry=$2; shift 2 ;;
    *) echo "usage: $0 --registry HOST:PORT" >&2; exit 2 ;;
  esac
done
[[ -n $registry ]] || { echo "usage: $0 --registry HOST:PORT" >&2; exit 2; }
cache=${WA_CACHE_DIR:-$HOME/.cache/whatsapp-operator}
bin=${WA_BIN_DIR:-${CARGO_TARGET_DIR:-$cache/target}/release}
[[ -x $bin/devcluster-testpod ]] || { echo "$bin/devcluster-testpod missing (cargo build --release -p devcluster)" >&2; exit 1; }

"$root/tests/images/base-images.sh" >&2
ctx=$cache/images/devcluster-testpod
mkdir -p "$ctx"
# copy only when changed, so an unchanged binary keeps its layer
cmp -s "$bin/devcluster-testpod" "$ctx/devcluster-testpod" || cp "$bin/devcluster-testpod" "$ctx/devcluster-testpod"
exec 9>"$cache/images/devcluster-testpod.lock"
flock 9
buildah bud --layers --pull-never -q \
  --build-arg RUNTIME_BASE=localhost/wa-base/distroless-cc:nonroot \
  -f "$here/testpod.Dockerfile" -t localhost/devcluster/testpod:dev "$ctx" >/dev/null
for pair in "localhost/devcluster/testpod:dev $registry/devcluster/testpod:dev" \
            "localhost/wa-base/pause:3.10 $registry/wa-base/pause:3.10"; do
  set -- $pair
  buildah push -q --tls-verify=false "$1" "docker://$2" >/dev/null
  echo "image=$2"
done
