#!/usr/bin/env bash
# Writes the devcluster images file (DESIGN.md §7) mapping the project's images to the locally
# built binaries in $WA_BIN_DIR. Usage: images-file.sh OUT
set -euo pipefail
out="$1"; bin="${WA_BIN_DIR:?WA_BIN_DIR must point at the release binaries}"
mkdir -p "$(dirname "$out")"
cat > "$out" <<YAML
images:
  ghcr.io/leadmaster/wa-session: {entrypoint: ["$bin/wa-session"]}
  ghcr.io/leadmaster/wa-operator: {entrypoint: ["$bin/wa-operator"]}
  ghcr.io/leadmaster/wa-hub: {entrypoint: ["$bin/wa-hub"]}
  # A tiny HTTP program for devcluster's own tests and as a stand-in session agent.
  ghcr.io/leadmaster/test-pod: {entrypoint: ["$bin/devcluster-testpod"]}
  busybox: {entrypoint: []}
YAML
