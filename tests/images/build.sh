#!/usr/bin/env bash
# Builds the project's three images from images/*.Dockerfile — the files users build — with
# buildah, from the binaries `make build` produced, and pushes them to a registry over plain
# HTTP, for a real kubelet to pull. Nothing is pulled from docker.io or gcr.io: the Dockerfiles'
# base images are replaced (build ARGs) by ones made locally from Debian packages
# (tests/images/base-images.sh, rebuilt only when their inputs change).
#
# Usage: tests/images/build.sh --registry HOST:PORT [--tag TAG]
#   --registry  where to push (plain HTTP), e.g. 127.0.0.1:5000 from tests/images/registry.sh
#   --tag       the images' tag; default: the chart's appVersion (charts/whatsapp-operator/Chart.yaml)
#
# Pushes  HOST:PORT/leadmaster/wa-operator:TAG, .../wa-hub:TAG, .../wa-session:TAG and the pod
# sandbox image HOST:PORT/wa-base/pause:3.10, and prints one line per image on stdout:
#   image=HOST:PORT/leadmaster/wa-operator:TAG@sha256:...
# Progress and timings go to stderr; buildah's output to ${cache}/images/logs/.
#
# Inputs: ${WA_BIN_DIR:-${CARGO_TARGET_DIR:-${WA_CACHE_DIR:-$HOME/.cache/whatsapp-operator}/target}/release}
# /{wa-operator,wa-hub,wa-session} and frontend/dist (`make build`). They are staged (copied only
# when their content changed, so unchanged files keep their bytes and times) into
# ${cache}/images/staged, the named build context `staged` of each Dockerfile's `prebuilt`
# stage; the build runs with BINARIES=prebuilt, so the Dockerfiles' Rust and Node stages are
# skipped, and the runtime stage — the same lines as in a full build — runs as written.
# `buildah bud --layers` keeps every step's result: a rebuild after a change to the Rust code
# alone makes one new layer per changed binary (the binaries are the images' last layers), and
# the push uploads only that layer (blobs the registry has are skipped).
#
# Needs (Debian packages): buildah, runc, debootstrap, golang; root (buildah's storage in
# /var/lib/containers). Runs are serialized with a lock in ${cache}/images.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${WA_CACHE_DIR:-$HOME/.cache/whatsapp-operator}
bin_dir=${WA_BIN_DIR:-${CARGO_TARGET_DIR:-$cache/target}/release}
registry= tag=
while (($#)); do
  case $1 in
    --registry) registry=${2:?--registry HOST:PORT}; shift 2 ;;
    --tag) tag=${2:?--tag TAG}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -n $registry ]] || { echo "build.sh: --registry HOST:PORT is required" >&2; exit 2; }
if [[ -z $tag ]]; then
  tag=$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"[:space:]]*\)"\{0,1\}.*/\1/p' "$repo/charts/whatsapp-operator/Chart.yaml")
  [[ -n $tag ]] || { echo "build.sh: no appVersion in charts/whatsapp-operator/Chart.yaml" >&2; exit 1; }
fi
for tool in buildah runc debootstrap go; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool not found (apt-get install buildah runc debootstrap golang)" >&2; exit 1; }
done

# local base images standing in for the Dockerfiles' defaults (see base-images.sh)
DEBIAN_BASE=localhost/wa-base/debian:bookworm-slim
DISTROLESS_BASE=localhost/wa-base/distroless-cc:nonroot
PAUSE_IMAGE=localhost/wa-base/pause:3.10
declare -A runtime_base=([wa-operator]=$DISTROLESS_BASE [wa-hub]=$DISTROLESS_BASE [wa-session]=$DEBIAN_BASE)
images=(wa-operator wa-hub wa-session)

work=$cache/images
staged=$work/staged
logs=$work/logs
mkdir -p "$staged" "$logs"
exec 9>"$work/build.lock"
flock 9

log() { echo "[images] $*" >&2; }
run_logged() { # LOGFILE CMD... → the command's output in LOGFILE; its tail on failure
  local f=$1; shift
  if ! "$@" >"$f" 2>&1; then
    tail -40 "$f" >&2
    log "failed: $* (log: $f)"
    return 1
  fi
}

# --- 1. base images (cached)
t0=$SECONDS
"$repo/tests/images/base-images.sh" >&2
log "base images ready ($((SECONDS - t0)) s)"

# --- 2. stage what `make build` produced
stage_file() { # SRC DEST: copy only when the content differs
  [[ -f $1 ]] || { echo "build.sh: $1 missing: run \`make build\` first" >&2; exit 1; }
  cmp -s "$1" "$2" 2>/dev/null || { cp -p "$1" "$2.new" && mv -f "$2.new" "$2"; }
}
for b in "${images[@]}"; do stage_file "$bin_dir/$b" "$staged/$b"; done
[[ -f $repo/frontend/dist/index.html ]] || { echo "build.sh: frontend/dist/index.html missing: run \`make build\` first" >&2; exit 1; }
if ! diff -rq "$repo/frontend/dist" "$staged/static" >/dev/null 2>&1; then
  rm -rf "$staged/static.new" && cp -a "$repo/frontend/dist" "$staged/static.new"
  rm -rf "$staged/static" && mv "$staged/static.new" "$staged/static"
fi

# --- 3. build and push
push() { # LOCAL_NAME REMOTE_REF → prints image=REMOTE_REF@DIGEST
  local digestfile=$work/digest.$$
  local short=${1##*/}; run_logged "$logs/push-${short%%:*}.log" buildah push --tls-verify=false --digestfile "$digestfile" "$1" "docker://$2"
  echo "image=$2@$(cat "$digestfile")"
  rm -f "$digestfile"
}
# buildah 1.28 leaves a working container behind for a stage that is only `FROM <stage>` (the
# Dockerfiles' `binaries`, named <image id>-working-container): remove those a build created.
all_images() { buildah images --all --quiet --no-trunc | sort -u; }
containers() {
  buildah containers --notruncate --format '{{.ContainerID}} {{.ContainerName}}' |
    awk '$2 ~ /^[0-9a-f]+-working-container(-[0-9]+)?$/ {print $1}' | sort
}
for name in "${images[@]}"; do
  local_name=localhost/leadmaster/$name:$tag
  t0=$SECONDS
  containers >"$work/containers.before"
  all_images >"$work/images.before"
  status=0
  run_logged "$logs/bud-$name.log" buildah bud --layers --pull-never --network host \
    --build-arg BINARIES=prebuilt --build-arg "RUNTIME_BASE=${runtime_base[$name]}" \
    --build-context "staged=$staged" \
    -f "$repo/images/$name.Dockerfile" -t "$local_name" "$repo" || status=$?
  comm -13 "$work/containers.before" <(containers) | xargs -r buildah rm >/dev/null
  comm -13 "$work/images.before" <(all_images) >>"$work/images.created"
  ((status == 0)) || exit "$status"
  t1=$SECONDS
  push "$local_name" "$registry/leadmaster/$name:$tag"
  log "$name: bud $((t1 - t0)) s, push $((SECONDS - t1)) s"
done
t0=$SECONDS
push "$PAUSE_IMAGE" "$registry/wa-base/pause:3.10"
log "pause: push $((SECONDS - t0)) s"
# Images a rebuild replaced (now untagged, unused) would pile up in the storage: remove those
# of our builds (not `buildah rmi --prune`: another script's build may be running). An image
# with children or a name stays, so the --layers cache does (a later build gives the same digests).
sort -u "$work/images.created" >"$work/images.created.new"
comm -12 "$work/images.created.new" <(buildah images --all --quiet --no-trunc --filter dangling=true | sort -u) |
  while read -r id; do buildah rmi "$id" >/dev/null 2>&1 || true; done
comm -12 "$work/images.created.new" <(all_images) >"$work/images.created"
rm -f "$work/images.created.new"
