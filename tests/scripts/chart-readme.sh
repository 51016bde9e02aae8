#!/usr/bin/env bash
# Regenerates charts/whatsapp-operator/README.md from the `# --` comments of values.yaml with
# helm-docs (built from its Go module by tests/devcluster/control-plane/build.sh helm-docs).
# `--check`: print the generated README to stdout instead (tests/chart compares it).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin="$(tests/devcluster/control-plane/build.sh helm-docs)/helm-docs"
args=(--chart-search-root charts/whatsapp-operator --sort-values-order file --skip-version-footer
  --log-level warning)
if [[ "${1:-}" == "--check" ]]; then
  "$bin" "${args[@]}" --dry-run
else
  "$bin" "${args[@]}"
fi
