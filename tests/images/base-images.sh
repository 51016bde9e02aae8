#!/usr/bin/env bash
# Builds the base images the project's Dockerfiles start from, locally from Debian packages,
# because nothing can be pulled from docker.io or gcr.io on the development machines:
#
#   localhost/wa-base/debian:bookworm-slim     stands in for docker.io/library/debian:bookworm-slim
#   localhost/wa-base/distroless-cc:nonroot    stands in for gcr.io/distroless/cc-debian12:nonroot
#   localhost/wa-base/pause:3.10               the pod sandbox image (tests/images/pause), for
#                                              containerd's sandbox_image (registry.k8s.io/pause)
#
# Usage: tests/images/base-images.sh [--rebuild]
#
# The images live in buildah's storage (/var/lib/containers/storage, as root). Each is rebuilt
# only when its inputs change: the key of an image is a hash of this script (which holds the
# package lists) plus its own inputs (debootstrap's version, the pause sources); it is kept as
# the image's label io.leadmaster.wa-base.key, which must match for the image to be reused, and
# in a marker file under ${WA_CACHE_DIR:-$HOME/.cache/whatsapp-operator}/images/. --rebuild
# (or WA_BASE_REBUILD=1) rebuilds all three, e.g. to pick up Debian security updates.
#
#   debian:bookworm-slim  `debootstrap --variant=minbase bookworm` from ${WA_DEBIAN_MIRROR}, then
#                         slimmed like the official image (debuerreotype's slimify: no docs, man
#                         pages or locales, apt lists removed, the docker-* apt/dpkg settings) with
#                         /etc/apt/sources.list.d/debian.sources naming bookworm, bookworm-updates
#                         and bookworm-security, so `apt-get update && apt-get install ...` works in
#                         a RUN step (`buildah bud --network host`).
#   distroless-cc:nonroot only what gcr.io/distroless/cc-debian12 has: the files `dpkg -L` lists for
#                         libc6, libgcc-s1, libgomp1, libstdc++6, libssl3, netbase and tzdata (docs
#                         left out), the CA bundle /etc/ssl/certs/ca-certificates.crt, os-release,
#                         /etc/passwd and /etc/group with root, nobody and nonroot (65532),
#                         /home/nonroot, /tmp; no shell, no package manager. Those packages are
#                         installed into a throw-away container of the slim image and copied out.
#   pause:3.10            tests/images/pause built static (CGO_ENABLED=0) into a scratch image,
#                         running as 65535 like registry.k8s.io/pause.
#
# Needs (Debian packages): buildah, runc, debootstrap, golang (go on PATH), tar, coreutils.
# Prints one line per image: `base=<name> <built|cached> <seconds>s`.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${WA_CACHE_DIR:-$HOME/.cache/whatsapp-operator}/images
mirror=${WA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${WA_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
rebuild=${WA_BASE_REBUILD:-0}
[[ ${1:-} == --rebuild ]] && rebuild=1

DEBIAN_IMAGE=localhost/wa-base/debian:bookworm-slim
DISTROLESS_IMAGE=localhost/wa-base/distroless-cc:nonroot
PAUSE_IMAGE=localhost/wa-base/pause:3.10
# What gcr.io/distroless/cc-debian12 is made of (its base + cc layers), besides the CA bundle.
DISTROLESS_PACKAGES=(libc6 libgcc-s1 libgomp1 libstdc++6 libssl3 netbase tzdata)
LABEL=io.leadmaster.wa-base.key

mkdir -p "$cache"
# one run at a time (build.sh and other scripts call this one)
exec 8>"$cache/base.lock"
flock 8
log() { echo "[base-images] $*" >&2; }

key_of() { # NAME INPUT... → sha256 of this script and the inputs (files or strings)
  local name=$1; shift
  { echo "$name"; cat "${BASH_SOURCE[0]}"; for i in "$@"; do if [[ -f $i ]]; then cat "$i"; else echo "$i"; fi; done; } |
    sha256sum | cut -c1-32
}
marker() { echo "$cache/$(echo "$1" | tr '/:' '__').key"; }
is_current() { # IMAGE KEY: the image in the storage carries the key (the marker is then rewritten,
  # so a run with another WA_CACHE_DIR does not rebuild what the storage already has)
  [[ $rebuild == 1 ]] && return 1
  local have
  have=$(buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null) || return 1
  [[ $have == "$2" ]] || return 1
  [[ -f $(marker "$1") && $(cat "$(marker "$1")") == "$2" ]] || echo "$2" >"$(marker "$1")"
}

tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/wa-base.XXXXXX")
ctrs=()
cleanup() {
  for c in "${ctrs[@]}"; do [[ -n $c ]] && { buildah rm "$c" >/dev/null 2>&1 || true; }; done
  rm -rf "$tmp"
}
trap cleanup EXIT
new_ctr() { ctr=$(buildah from --pull-never "$@"); ctrs+=("$ctr"); } # → $ctr

# ---------------------------------------------------------------------------- debian:bookworm-slim
build_debian() {
  local key=$1 root=$tmp/rootfs t=$SECONDS
  log "debootstrap --variant=minbase bookworm ($mirror)"
  debootstrap --variant=minbase --merged-usr bookworm "$root" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
    { tail -30 "$tmp/debootstrap.log" >&2; return 1; }
  log "debootstrap: $((SECONDS - t)) s, $(du -sm "$root" | cut -f1) MB"; t=$SECONDS
  # The official image's settings (debuerreotype): keep images small, never cache .debs.
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# as in docker.io/library/debian:*-slim: no documentation, manual pages or translations
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  printf 'Acquire::GzipIndexes "true";\nAcquire::CompressionTypes::Order:: "gz";\n' >"$root/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # like the official image: the release plus its updates and security updates
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  chroot "$root" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -y -qq upgrade' \
    >"$tmp/upgrade.log" 2>&1 || { tail -30 "$tmp/upgrade.log" >&2; return 1; }
  log "apt-get upgrade (bookworm-updates, bookworm-security): $((SECONDS - t)) s"; t=$SECONDS
  # slimify what debootstrap installed, and leave nothing of this host or of the bootstrap
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/{man,info,groff,linda,lintian}/* "$root"/var/lib/apt/lists/* \
    "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/debconf/*-old \
    "$root"/var/log/* "$root"/dev/* "$root"/run/* "$root"/tmp/* "$root"/debootstrap
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  : >"$root/etc/resolv.conf"; : >"$root/etc/hostname"; : >"$root/etc/machine-id"
  mkdir -p "$root/var/lib/apt/lists/partial"

  local c mnt
  new_ctr scratch; c=$ctr
  mnt=$(buildah mount "$c")
  tar -C "$root" --numeric-owner --xattrs -cf - . | tar -C "$mnt" --numeric-owner --xattrs -xpf -
  buildah umount "$c" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd '["bash"]' --label "$LABEL=$key" --annotation "$LABEL=$key" \
    --created-by "tests/images/base-images.sh: debootstrap --variant=minbase bookworm" "$c"
  buildah commit -q --rm "$c" "$DEBIAN_IMAGE" >/dev/null
  ctrs=("${ctrs[@]/$c/}")
  log "copy + commit: $((SECONDS - t)) s"
  rm -rf "$root"
}

# --------------------------------------------------------------------------- distroless-cc:nonroot
build_distroless() {
  local key=$1 src smnt c mnt list=$tmp/files
  new_ctr "$DEBIAN_IMAGE"; src=$ctr
  buildah run --network host "$src" -- sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends ca-certificates ${DISTROLESS_PACKAGES[*]} >/dev/null" \
    >"$tmp/apt.log" 2>&1 || { tail -30 "$tmp/apt.log" >&2; return 1; }
  smnt=$(buildah mount "$src")
  # Every non-directory the packages own, each under its real directory (bookworm is merged-usr:
  # /lib is a symlink to usr/lib, and dpkg lists either spelling).
  buildah run "$src" -- dpkg -L "${DISTROLESS_PACKAGES[@]}" |
    grep -vE '^/usr/share/(doc|man|info|lintian|bug)/' | while IFS= read -r p; do
      [[ -d $smnt$p && ! -L $smnt$p ]] && continue
      [[ -e $smnt$p || -L $smnt$p ]] || continue
      d=$(cd "$smnt$(dirname "$p")" && pwd -P)
      echo ".${d#"$smnt"}/$(basename "$p")"
    done | sort -u >"$list"
  echo ./etc/ssl/certs/ca-certificates.crt >>"$list"
  echo ./usr/lib/os-release >>"$list"

  new_ctr scratch; c=$ctr
  mnt=$(buildah mount "$c")
  mkdir -p "$mnt"/usr/{bin,sbin,lib,lib64} "$mnt"/etc/ssl/certs "$mnt"/var/lib "$mnt"/dev "$mnt"/proc "$mnt"/sys "$mnt"/run
  for d in bin sbin lib lib64; do ln -s "usr/$d" "$mnt/$d"; done
  tar -C "$smnt" --numeric-owner --no-recursion -cf - -T "$list" | tar -C "$mnt" --numeric-owner --keep-directory-symlink -xpf -
  ln -s ../usr/lib/os-release "$mnt/etc/os-release"
  install -d -m 1777 "$mnt/tmp"
  install -d -m 700 "$mnt/root"
  install -d -m 700 -o 65532 -g 65532 "$mnt/home/nonroot"
  cat >"$mnt/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$mnt/etc/group" <<'EOF'
root:x:0:
tty:x:5:
staff:x:50:
nogroup:x:65534:
nonroot:x:65532:
EOF
  echo 'hosts: files dns' >"$mnt/etc/nsswitch.conf"
  # no shell, no package manager: anything that looks like one fails the build
  for sh in bin/sh bin/bash bin/dash usr/bin/sh usr/bin/bash usr/bin/dash usr/bin/dpkg usr/bin/apt-get; do
    [[ -e $mnt/$sh || -L $mnt/$sh ]] && { log "distroless-cc: $sh must not be there"; return 1; }
  done
  buildah umount "$c" >/dev/null
  buildah umount "$src" >/dev/null
  buildah rm "$src" >/dev/null
  buildah config --user 65532:65532 --workingdir /home/nonroot \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --label "$LABEL=$key" --annotation "$LABEL=$key" \
    --created-by "tests/images/base-images.sh: ${DISTROLESS_PACKAGES[*]} ca-certificates" "$c"
  buildah commit -q --rm "$c" "$DISTROLESS_IMAGE" >/dev/null
  ctrs=("${ctrs[@]/$c/}")
}

# ------------------------------------------------------------------------------------- pause:3.10
build_pause() {
  local key=$1 c
  (cd "$here/pause" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags='-s -w' -o "$tmp/pause" .)
  new_ctr scratch; c=$ctr
  buildah copy -q --chmod 0755 "$c" "$tmp/pause" /pause >/dev/null
  buildah config --entrypoint '["/pause"]' --user 65535:65535 \
    --label "$LABEL=$key" --annotation "$LABEL=$key" --created-by "tests/images/base-images.sh: tests/images/pause" "$c"
  buildah commit -q --rm "$c" "$PAUSE_IMAGE" >/dev/null
  ctrs=("${ctrs[@]/$c/}")
}

one() { # IMAGE KEY BUILDER
  local t0=$SECONDS
  if is_current "$1" "$2"; then
    echo "base=$1 cached 0s"
    return
  fi
  log "building $1"
  rm -f "$(marker "$1")"
  "$3" "$2"
  echo "$2" >"$(marker "$1")"
  echo "base=$1 built $((SECONDS - t0))s"
}

debian_key=$(key_of debian "$(debootstrap --version 2>/dev/null || dpkg-query -W debootstrap)" "$mirror" "$security_mirror")
one "$DEBIAN_IMAGE" "$debian_key" build_debian
# derived from the slim image: rebuilt whenever that one is (its image ID is part of the key)
one "$DISTROLESS_IMAGE" "$(key_of distroless "$(buildah inspect --type image --format '{{.FromImageID}}' "$DEBIAN_IMAGE")")" build_distroless
one "$PAUSE_IMAGE" "$(key_of pause "$here/pause/main.go" "$here/pause/go.mod")" build_pause
