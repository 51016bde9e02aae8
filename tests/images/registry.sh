#!/usr/bin/env bash
# A local OCI registry for the images tests/images/build.sh pushes and a kubelet pulls:
# Debian's docker-registry (distribution 2.8), plain HTTP, filesystem storage.
#
# Usage: tests/images/registry.sh CONFIG_DIR STORAGE_DIR ADDR
#   Writes CONFIG_DIR/config.yml (http.addr ADDR, e.g. 127.0.0.1:5000; storage in STORAGE_DIR)
#   and then runs `docker-registry serve CONFIG_DIR/config.yml` in the foreground (exec: the
#   script's PID is the registry's). Start it in the background and stop it by that PID;
#   it is ready when `curl -fsS http://ADDR/v2/` answers `{}`. Its access log (one line per
#   request, on stderr) shows which blobs each push uploaded.
#
# Plain HTTP: clients need --tls-verify=false (buildah, skopeo), and containerd a hosts.toml
# for ADDR with `[host."http://ADDR"] capabilities = ["pull", "resolve"]` (or skip_verify).
set -euo pipefail
if (($# != 3)); then
  echo "usage: $0 CONFIG_DIR STORAGE_DIR ADDR" >&2
  exit 2
fi
config_dir=$1 storage_dir=$2 addr=$3
mkdir -p "$config_dir" "$storage_dir"
storage_dir=$(cd "$storage_dir" && pwd)
cat >"$config_dir/config.yml" <<EOF
# written by tests/images/registry.sh
version: 0.1
log:
  level: warn
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $storage_dir
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $addr
  secret: $(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: false
EOF
exec docker-registry serve "$config_dir/config.yml"
