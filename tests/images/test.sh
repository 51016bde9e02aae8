#!/usr/bin/env bash
# Tests the container images as built by tests/images/build.sh, through the real parts: the
# images are pulled back from a registry and inspected with skopeo (their config) and buildah
# (their files, and their programs run in containers with runc). No cluster needed.
#
# Usage: tests/images/test.sh [--registry HOST:PORT --tag TAG]
#   default: starts a throw-away registry (tests/images/registry.sh) on a free loopback port,
#            runs build.sh against it twice — the second time with every binary changed by one
#            byte, as after a one-line code change — and checks both the images and that the
#            second push changed only each image's last layer (the binary).
#   --registry HOST:PORT --tag TAG: only checks images build.sh already pushed there.
#
# Checks, each failing the test:
#   wa-session   user 1000:1000; entrypoint tini -- /usr/local/bin/wa-session; Chromium at
#                /usr/lib/chromium/chromium (its version printed) renders a page headless;
#                CHROMIUM_PATH points at it; Noto fonts (text, emoji); CA certificates;
#                wa-session --help runs through the entrypoint (tini).
#   wa-operator, wa-hub  user 65532:65532; entrypoint the binary; the binary runs --help in the
#                image; CA certificates; no shell anywhere in the image (and /bin/sh cannot run).
#   wa-hub       the UI: /usr/share/wa-hub/static/index.html.
#   pause        entrypoint /pause; keeps running, and exits 0 on SIGTERM.
#   Dockerfiles  with BuildKit's own Dockerfile frontend (tests/images/buildkit-check, what
#                `docker build` runs): the default build needs only the upstream images and not
#                the `staged` context, BINARIES=prebuilt needs no builder image, both give the
#                same image config.
# Needs root (buildah's storage, runc).
# Needs (Debian packages): buildah, skopeo, runc, docker-registry, curl, jq (+ build.sh's).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
registry= tag=
while (($#)); do
  case $1 in
    --registry) registry=${2:?}; shift 2 ;;
    --tag) tag=${2:?}; shift 2 ;;
    *) echo "test.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

failures=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
check() { # DESCRIPTION CMD...
  local d=$1; shift
  if "$@" >/dev/null 2>&1; then pass "$d"; else fail "$d"; fi
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wa-images-test.XXXXXX")
reg_pid= ctrs=() pulled=()
cleanup() {
  for c in "${ctrs[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
  # the names the pulls added to buildah's storage (the images stay under their local names)
  for r in "${pulled[@]}"; do buildah rmi "$r" >/dev/null 2>&1 || true; done
  if [[ -n $reg_pid ]]; then kill "$reg_pid" 2>/dev/null || true; wait "$reg_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap 'rc=$?; cleanup; exit $rc' EXIT

start_registry() {
  local port
  for _ in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 20000))
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue # taken
    "$here/registry.sh" "$tmp/registry" "$tmp/registry/data" "127.0.0.1:$port" >"$tmp/registry.log" 2>&1 &
    reg_pid=$!
    for _ in $(seq 50); do
      if curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; then
        registry=127.0.0.1:$port
        return
      fi
      kill -0 "$reg_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$reg_pid" 2>/dev/null || true
    wait "$reg_pid" 2>/dev/null || true
    reg_pid=
  done
  echo "test.sh: could not start a registry: $(tail -3 "$tmp/registry.log")" >&2
  exit 1
}

layers() { skopeo inspect --raw --tls-verify=false "docker://$1" | jq -r '.layers[].digest'; }

# ------------------------------------------------------------------ the Dockerfiles for BuildKit
echo "# images/*.Dockerfile through BuildKit's Dockerfile frontend"
checker=${WA_CACHE_DIR:-$HOME/.cache/whatsapp-operator}/images/buildkit-check
mkdir -p "$(dirname "$checker")"
if (cd "$here/buildkit-check" && GOFLAGS=-buildvcs=false go build -o "$checker" .) 2>"$tmp/checker.log"; then
  out=$("$checker" "$here"/../../images/*.Dockerfile) || true
  echo "$out" | sed "s|$here/../../||"
  failures=$((failures + $(echo "$out" | grep -c '^FAIL' || true)))
else
  fail "build tests/images/buildkit-check: $(tail -3 "$tmp/checker.log")"
fi

if [[ -z $registry ]]; then
  start_registry
  tag=test
  echo "# registry $registry; build.sh --registry $registry --tag $tag"
  "$here/build.sh" --registry "$registry" --tag "$tag" | tee "$tmp/build1.out"
  [[ $(grep -c '^image=' "$tmp/build1.out") == 4 ]] || fail "build.sh printed 4 image= lines"
  for n in wa-operator wa-hub wa-session; do layers "$registry/leadmaster/$n:$tag" >"$tmp/$n.layers1"; done

  # the same build after a change to every binary: only the last layer of each image changes
  bins=${WA_BIN_DIR:-${CARGO_TARGET_DIR:-${WA_CACHE_DIR:-$HOME/.cache/whatsapp-operator}/target}/release}
  mkdir -p "$tmp/bin"
  for n in wa-operator wa-hub wa-session; do
    cp "$bins/$n" "$tmp/bin/$n" && printf '\n' >>"$tmp/bin/$n" # trailing bytes: still a valid ELF
  done
  echo "# rebuild with changed binaries (WA_BIN_DIR=$tmp/bin)"
  log_lines=$(wc -l <"$tmp/registry.log")
  WA_BIN_DIR=$tmp/bin "$here/build.sh" --registry "$registry" --tag "$tag" | tee "$tmp/build2.out"
  for n in wa-operator wa-hub wa-session; do
    layers "$registry/leadmaster/$n:$tag" >"$tmp/$n.layers2"
    n1=$(wc -l <"$tmp/$n.layers1") n2=$(wc -l <"$tmp/$n.layers2")
    same=$(head -n $((n1 - 1)) "$tmp/$n.layers1" | cmp -s - <(head -n $((n2 - 1)) "$tmp/$n.layers2") && echo y || echo n)
    last_differs=$([[ $(tail -1 "$tmp/$n.layers1") != "$(tail -1 "$tmp/$n.layers2")" ]] && echo y || echo n)
    if [[ $n1 == "$n2" && $same == y && $last_differs == y ]]; then
      pass "$n: a changed binary changes only the last of its $n2 layers"
    else
      fail "$n: a changed binary must change only the last layer (layers before: $n1, after: $n2, rest same: $same, last differs: $last_differs)"
    fi
  done
  # what the rebuild uploaded, from the registry's access log: of the images' layers, only the
  # three new binaries' (besides small config blobs and manifests)
  tail -n +$((log_lines + 1)) "$tmp/registry.log" | grep -o '"PUT /v2/[^ ]*/blobs/uploads/[^ ]*digest=sha256[:%3Aa-fA-F0-9]*' |
    sed 's/.*digest=//; s/%3A/:/I' | sort -u >"$tmp/uploaded"
  cat "$tmp"/*.layers2 | sort -u >"$tmp/all-layers2"
  layer_uploads=$(comm -12 "$tmp/uploaded" "$tmp/all-layers2" | wc -l)
  if [[ $layer_uploads == 3 ]]; then
    pass "rebuild after a changed binary: the registry received 3 layer blobs ($(wc -l <"$tmp/uploaded") blobs in all)"
  else
    fail "rebuild after a changed binary: the registry received $layer_uploads layer blobs (want 3, one per image)"
  fi
fi
[[ -n $tag ]] || { echo "test.sh: --tag TAG is required with --registry" >&2; exit 2; }

config() { skopeo inspect --config --tls-verify=false "docker://$1" | jq -c "$2"; }
ctr_of() { # REF → a buildah container of the image pulled from the registry (name in $ctr)
  ctr=$(buildah from --pull=always --tls-verify=false "docker://$1" 2>"$tmp/from.log") ||
    { cat "$tmp/from.log" >&2; fail "pull $1"; return 1; }
  ctrs+=("$ctr") pulled+=("$1")
}
in_ctr() { timeout 120 buildah run --network none "$ctr" -- "$@"; }

# ------------------------------------------------------------------------------------ wa-session
ref=$registry/leadmaster/wa-session:$tag
echo "# $ref"
check "wa-session: user 1000:1000" test "$(config "$ref" .config.User)" = '"1000:1000"'
check "wa-session: entrypoint tini -- wa-session" test "$(config "$ref" .config.Entrypoint)" = '["/usr/bin/tini","--","/usr/local/bin/wa-session"]'
check "wa-session: CHROMIUM_PATH=/usr/lib/chromium/chromium" \
  grep -qx '"CHROMIUM_PATH=/usr/lib/chromium/chromium"' <(config "$ref" '.config.Env[]')
if ctr_of "$ref"; then
  mnt=$(buildah mount "$ctr")
  if v=$(in_ctr /usr/lib/chromium/chromium --version 2>&1) && [[ $v == Chromium\ * ]]; then
    pass "wa-session: $v at /usr/lib/chromium/chromium"
  else
    fail "wa-session: /usr/lib/chromium/chromium --version: $v"
  fi
  html=$(in_ctr /usr/lib/chromium/chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --user-data-dir=/tmp/chromium-test --dump-dom 'data:text/html,<p id=x>rendered</p><script>document.getElementById("x").textContent+=" by JS"</script>' 2>"$tmp/chromium.log") || true
  if [[ $html == *"rendered by JS"* ]]; then pass "wa-session: Chromium renders a page headless (JavaScript ran)"
  else fail "wa-session: Chromium headless did not render: $(tail -3 "$tmp/chromium.log")"; fi
  check "wa-session: Noto Sans (fonts-noto-core)" test -s "$mnt/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf"
  check "wa-session: Noto Color Emoji (fonts-noto-color-emoji)" test -s "$mnt/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
  check "wa-session: CA certificates" grep -q 'BEGIN CERTIFICATE' "$mnt/etc/ssl/certs/ca-certificates.crt"
  check "wa-session: /data owned by 1000:1000" test "$(stat -c %u:%g "$mnt/data" 2>/dev/null)" = 1000:1000
  if out=$(in_ctr /usr/bin/tini -- /usr/local/bin/wa-session --help 2>&1); then
    pass "wa-session: tini -- wa-session --help runs ($(echo "$out" | head -1))"
  else
    fail "wa-session: tini -- wa-session --help: $(echo "$out" | tail -3)"
  fi
  buildah umount "$ctr" >/dev/null
fi

# ------------------------------------------------------------------------- wa-operator and wa-hub
for n in wa-operator wa-hub; do
  ref=$registry/leadmaster/$n:$tag
  echo "# $ref"
  check "$n: user 65532:65532" test "$(config "$ref" .config.User)" = '"65532:65532"'
  check "$n: entrypoint /usr/local/bin/$n" test "$(config "$ref" .config.Entrypoint)" = "[\"/usr/local/bin/$n\"]"
  ctr_of "$ref" || continue
  mnt=$(buildah mount "$ctr")
  if out=$(in_ctr "/usr/local/bin/$n" --help 2>&1); then
    pass "$n: $n --help runs as $(config "$ref" .config.User) ($(echo "$out" | head -1))"
  else
    fail "$n: $n --help: $(echo "$out" | tail -3)"
  fi
  check "$n: CA certificates" grep -q 'BEGIN CERTIFICATE' "$mnt/etc/ssl/certs/ca-certificates.crt"
  shells=$(cd "$mnt" && find . \( -name sh -o -name bash -o -name dash -o -name busybox -o -name ash \) \( -type l -o -type f -perm /111 \) 2>/dev/null | head -5)
  if [[ -z $shells ]]; then pass "$n: no shell in the image"; else fail "$n: shells in the image: $shells"; fi
  if in_ctr /bin/sh -c true >/dev/null 2>&1; then fail "$n: /bin/sh ran"; else pass "$n: /bin/sh cannot run"; fi
  if [[ $n == wa-hub ]]; then
    check "wa-hub: the UI at /usr/share/wa-hub/static/index.html" grep -qi '<html' "$mnt/usr/share/wa-hub/static/index.html"
  fi
  buildah umount "$ctr" >/dev/null
done

# ------------------------------------------------------------------------------------------ pause
ref=$registry/wa-base/pause:3.10
echo "# $ref"
check "pause: entrypoint /pause" test "$(config "$ref" .config.Entrypoint)" = '["/pause"]'
descendants() { local p; for p in $(ps -o pid= --ppid "$1"); do echo "$p $(cat "/proc/$p/comm" 2>/dev/null)"; descendants "$p"; done; }
if ctr_of "$ref"; then
  buildah run --network none "$ctr" -- /pause 2>"$tmp/pause.log" &
  run_pid=$! pause_pid=
  for _ in $(seq 50); do
    pause_pid=$(descendants "$run_pid" | awk '$2 == "pause" {print $1; exit}')
    [[ -n $pause_pid ]] && break
    sleep 0.1
  done
  sleep 1
  if [[ -n $pause_pid ]] && kill -0 "$pause_pid" 2>/dev/null; then
    pass "pause: keeps running"
    kill -TERM "$pause_pid"
    set +e
    wait "$run_pid"
    rc=$?
    set -e
    if [[ $rc == 0 ]]; then pass "pause: exits 0 on SIGTERM"; else fail "pause: exit status $rc on SIGTERM (want 0): $(tail -2 "$tmp/pause.log")"; fi
  else
    fail "pause: not running 1 s after start: $(tail -2 "$tmp/pause.log")"
    kill "$run_pid" 2>/dev/null || true
    wait "$run_pid" 2>/dev/null || true
  fi
fi

if ((failures)); then
  echo "images test: $failures check(s) failed" >&2
  exit 1
fi
echo "images test: all checks passed"
