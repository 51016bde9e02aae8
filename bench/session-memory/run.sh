#!/usr/bin/env bash
# A connected idle session's memory as Kubernetes counts it (issue 15, row 4), one row per
# memory lever: the product on the devcluster's real node as the chart deploys it
# (bench/lib/product.sh: `make demo` with the fake WhatsApp Web), the demo session linked, then
# for each lever the session's StatefulSet gets the lever's agent settings (WA_* environment,
# so each lever is what an operator could set), its pod is replaced, the session restores from
# its profile (connected, no QR), is left idle to settle, and the kubelet's /stats/summary
# (through the API server's node proxy, the figure limits and OOM decisions use) is sampled:
# the container's working set and RSS. From inside the pod: each Chromium process's command
# line (the flags as Chromium got them), its RSS and PSS (smaps_rollup) and the container
# cgroup's memory.stat.
#
# Usage: bench/session-memory/run.sh [LEVER...]   (default: all; names below)
#   env: BENCH_DEMO_DIR (default ~/.cache/whatsapp-operator/state/bench-memory; an existing demo
#        there is reused), BENCH_POD_CIDR (10.244.24.0/24), BENCH_HUB_PORT (31924),
#        BENCH_SETTLE (s idle after connected before sampling, 45), BENCH_SAMPLES (12, 2.5 s apart),
#        BENCH_KEEP=1 leaves the demo running.
# Writes bench/results/session-memory.json (the command, uptime, one row per lever).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/product.sh
source "$here/../lib/product.sh"
demo=${BENCH_DEMO_DIR:-$bench_cache/state/bench-memory}
settle=${BENCH_SETTLE:-45}
samples=${BENCH_SAMPLES:-12}
out=$bench_root/bench/results/session-memory.json

# The agent's current --disable-features list (browser.rs), to extend it in one lever.
product_disabled=$(sed -n '/^const DISABLED_FEATURES/,/^];/p' "$bench_root/session-pod/src/browser.rs" |
  grep -o '"[A-Za-z0-9-]*"' | tr -d '"' | paste -sd,)
more_disabled="BackForwardCache,Prerender2,LensOverlay,OptimizationGuideModelDownloading,OptimizationHintsFetching,AutofillServerCommunication,CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions,HeavyAdIntervention,DialMediaRouteProvider,GlobalMediaControls,LiveCaption,PaintHolding,AcceptCHFrame,MediaEngagementBypassAutoplayPolicies,SafeBrowsingOnUIThread,WebRtcHideLocalIpsWithMdns,Prefetch,LoadingPredictorPrefetch"

# name | what | agent environment (VAR=value, ';' between variables)
levers=(
  "baseline|the product's flags as on main|"
  "features-back-on|--disable-features without the memory entries (omnibox WebUI preload, spare renderer, site-per-process, audio service out of process back on)|WA_CHROMIUM_EXTRA_ARGS=--disable-features=Translate"
  "network-service-out-of-process|--enable-features= (NetworkServiceInProcess2 off: the network service in a process of its own)|WA_CHROMIUM_EXTRA_ARGS=--enable-features="
  "more-features-off|--disable-features=<product list>,$more_disabled|WA_CHROMIUM_EXTRA_ARGS=--disable-features=$product_disabled,$more_disabled"
  "low-end-device-mode|--enable-low-end-device-mode|WA_CHROMIUM_EXTRA_ARGS=--enable-low-end-device-mode"
  "single-process|--single-process (browser, storage and renderer in one process)|WA_CHROMIUM_EXTRA_ARGS=--single-process"
  "v8-optimize-for-size|--js-flags=... --optimize-for-size|WA_JS_FLAGS=--optimize-for-size"
  "v8-small-young-gen|--js-flags=... --max-semi-space-size=1 (MiB)|WA_JS_FLAGS=--max-semi-space-size=1"
  "v8-old-space-128|--js-flags=--max-old-space-size=128|WA_JS_HEAP_MB=128"
  "memory-relief-15s|CDP Memory.simulatePressureNotification(critical) + HeapProfiler.collectGarbage every 15 s|WA_MEMORY_RELIEF_INTERVAL=15s"
  "dev-shm-off|--disable-dev-shm-usage (shared memory in /tmp, a disk emptyDir, instead of the memory-backed /dev/shm)|WA_CHROMIUM_EXTRA_ARGS=--disable-dev-shm-usage"
  "combined|low-end device mode + more features off + --optimize-for-size + memory relief 15 s|WA_CHROMIUM_EXTRA_ARGS=--enable-low-end-device-mode --disable-features=$product_disabled,$more_disabled;WA_JS_FLAGS=--optimize-for-size;WA_MEMORY_RELIEF_INTERVAL=15s"
)
lever_vars=(WA_CHROMIUM_EXTRA_ARGS WA_JS_FLAGS WA_JS_HEAP_MB WA_MEMORY_RELIEF_INTERVAL)
want=("$@")

blog "uptime: $(uptime)"
product_up "$demo" "${BENCH_POD_CIDR:-10.244.24.0/24}" "${BENCH_HUB_PORT:-31924}"
[[ ${BENCH_KEEP:-0} == 1 ]] || trap '(cd "$bench_root" && DEMO_DIR=$demo make -s demo-down >/dev/null 2>&1) || true' EXIT
ns=$DEMO_NAMESPACE name=$DEMO_SESSION pod=$(session_pod "$ns" "$name") sts=wa-$name

if [[ $(kubectl get wa -n "$ns" "$name" -o jsonpath='{.status.status}') != connected ]]; then
  blog "linking $ns/$name"
  kubectl patch wa -n "$ns" "$name" --type merge -p '{"spec":{"desiredState":"Running"}}' >/dev/null
  link "$ns" "$name" 5491100000000 240
fi

# What one lever run prints: one JSON object.
measure() {
  local lever=$1 what=$2 envs=$3 args=() tmp
  IFS=';' read -r -a sets <<<"$envs"
  for s in "${sets[@]}"; do [[ -n $s ]] && args+=("$s"); done
  # kubectl refuses to set and remove one variable in the same command
  for v in "${lever_vars[@]}"; do [[ ";$envs" == *";$v="* ]] || args+=("$v-"); done
  # Always a new pod (even when the settings equal the last lever's), logging the relief.
  args+=("BENCH_LEVER=$lever-$RANDOM" "RUST_LOG=info,wa_session::browser=debug")
  # (errexit does not apply inside `if row=$(measure …)`: each step returns on failure)
  kubectl set env -n "$ns" "sts/$sts" "${args[@]}" >/dev/null || return 1
  kubectl rollout status -n "$ns" "sts/$sts" --timeout=300s >/dev/null || return 1
  wait_field "$ns" "$name" '{.status.status}' connected 180 || return 1
  kubectl wait -n "$ns" --for=condition=Ready "pod/$pod" --timeout=120s >/dev/null || return 1
  local t_connected=$SECONDS
  sleep "$settle"
  tmp=$(mktemp)
  for _ in $(seq "$samples"); do
    container_mem "$(summary)" "$ns" "$pod" session >>"$tmp"
    sleep 2.5
  done
  local procs stat heap
  procs=$(kubectl exec -n "$ns" "$pod" -c session -- sh -c '
    for d in /proc/[0-9]*; do
      c=$(tr "\0" "\037" <"$d/cmdline" 2>/dev/null) || continue
      [ -n "$c" ] && [ "${d#/proc/}" != "$$" ] || continue
      m=$(awk "/^Rss:/ {r=\$2} /^Pss:/ {p=\$2} END {print r+0, p+0}" "$d/smaps_rollup" 2>/dev/null)
      printf "%s\t%s\t%s\n" "${d#/proc/}" "$m" "$c"
    done')
  stat=$(kubectl exec -n "$ns" "$pod" -c session -- cat /sys/fs/cgroup/memory/memory.stat 2>/dev/null ||
    kubectl exec -n "$ns" "$pod" -c session -- cat /sys/fs/cgroup/memory.stat)
  heap=$(kubectl logs -n "$ns" "$pod" -c session --since=60s 2>/dev/null | grep 'memory relief' | tail -1 || true)
  python3 - "$lever" "$what" "$envs" "$tmp" "$procs" "$stat" "$heap" "$(uptime)" <<'PY'
import json, sys, statistics
lever, what, envs, tmp, procs, stat, heap, up = sys.argv[1:9]
rows = [l.split() for l in open(tmp).read().splitlines() if l.strip()]
mib = lambda b: round(int(b) / 1048576, 1)
ws = [mib(r[0]) for r in rows]; rss = [mib(r[1]) for r in rows]
ps = []
for line in procs.splitlines():
    pid, mem, cmd = line.split("\t", 2)
    r, p = mem.split()
    argv = cmd.rstrip("\x1f").split("\x1f")
    if len(argv) == 1:  # Chromium's children rewrite their title: one string, spaces between
        argv = argv[0].split(" ")
    exe = argv[0].rsplit("/", 1)[-1]
    kind = next((a.split("=", 1)[1] for a in argv if a.startswith("--type=")), "browser" if exe == "chromium" else exe)
    if "chromium" in argv[0] and "--type=utility" in argv:
        kind = "utility:" + next((a.split("=", 1)[1] for a in argv if a.startswith("--utility-sub-type=")), "?")
    ps.append({"pid": int(pid), "kind": kind, "rss_mib": round(int(r) / 1024, 1), "pss_mib": round(int(p) / 1024, 1),
               "argv": argv[1:] if kind == "browser" else None})
ms = dict(l.split() for l in stat.splitlines() if l.strip())
pick = {k: mib(ms[k]) for k in ("rss", "cache", "shmem", "mapped_file", "active_file", "inactive_file", "active_anon", "inactive_anon") if k in ms}
print(json.dumps({
    "lever": lever, "what": what, "env": envs,
    "working_set_mib": {"median": statistics.median(ws), "min": min(ws), "max": max(ws)},
    "kubelet_rss_mib_median": statistics.median(rss),
    "memory_stat_mib": pick,
    "processes": [{k: v for k, v in p.items() if v is not None} for p in ps if p["kind"] not in ("sh", "tr", "awk", "cat", "paste")],
    "pss_sum_mib": round(sum(p["pss_mib"] for p in ps if p["kind"] not in ("sh", "tr", "awk", "cat", "paste")), 1),
    "page_heap_log": heap or None,
    "samples": len(ws), "uptime": up.strip(),
}))
PY
  rm -f "$tmp"
}

rows=$(mktemp)
for entry in "${levers[@]}"; do
  IFS='|' read -r lever what envs <<<"$entry"
  if ((${#want[@]})) && [[ ! " ${want[*]} " == *" $lever "* ]]; then continue; fi
  blog "lever $lever (load $(load1), MemAvailable $(mem_available_mib) MiB)"
  if row=$(measure "$lever" "$what" "$envs"); then
    echo "$row" >>"$rows"
    blog "  working set median $(jq -r '.working_set_mib.median' <<<"$row") MiB, PSS sum $(jq -r '.pss_sum_mib' <<<"$row") MiB, processes $(jq -r '[.processes[].kind] | join(",")' <<<"$row")"
  else
    blog "  lever $lever failed (the session did not come back connected)"
    jq -nc --arg l "$lever" --arg w "$what" --arg e "$envs" '{lever: $l, what: $w, env: $e, failed: true}' >>"$rows"
  fi
done
# back to the product's settings
kubectl set env -n "$ns" "sts/$sts" "${lever_vars[@]/%/-}" BENCH_LEVER- RUST_LOG- >/dev/null || true

jq -s --arg cmd "bench/session-memory/run.sh $*" --arg up "$(uptime)" --arg chromium "$(kubectl exec -n "$ns" "$pod" -c session -- /usr/lib/chromium/chromium --version 2>/dev/null || true)" \
  '{command: $cmd, chromium: $chromium, uptime_at_end: $up,
    measured: "container working set from the kubelet /stats/summary through the API server node proxy, median of samples taken after the session restored (connected) and idled",
    levers: .}' "$rows" >"$out"
rm -f "$rows"
jq -r '.levers[] | "\(.lever)\t\(.working_set_mib.median // "failed") MiB ws\t\(.pss_sum_mib // "-") MiB PSS"' "$out"
