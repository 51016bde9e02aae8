#!/usr/bin/env python3
"""The operator's share of the time to Ready: for each session, from its pod's Ready reaching
the API server to the session's Ready condition doing so, both stamped as a watch delivers them.

  lag.py NAMESPACE N OUT.json   (runs until N sessions are Ready; started before the sessions)

Writes {"pod_ready_last_s", "session_ready_last_s", "lag_ms": {p50, p90, max}} with seconds
after the watcher started. A pod's own Ready timestamp (the kubelet's clock, whole seconds) can
be tens of seconds older than the API server's copy when the kubelet's status updates queue up,
so the lag is taken from what the watches see, as the operator sees it.
"""
import json
import subprocess
import sys
import threading
import time

ns, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t0 = time.monotonic()
pod_ready, session_ready = {}, {}
done = threading.Event()


def ready(obj):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def watch(kind, seen, key):
    proc = subprocess.Popen(["kubectl", "get", kind, "-n", ns, "--watch", "-o", "json"],
                            stdout=subprocess.PIPE, text=True)
    dec, buf = json.JSONDecoder(), ""
    for line in proc.stdout:
        buf += line
        while buf.strip():
            try:
                obj, end = dec.raw_decode(buf.lstrip())
            except json.JSONDecodeError:
                break
            buf = buf.lstrip()[end:]
            name = key(obj["metadata"]["name"])
            if ready(obj) and name not in seen:
                seen[name] = time.monotonic() - t0
                if kind != "pods" and len(seen) >= n:
                    done.set()
        if done.is_set():
            break
    proc.kill()


# the session's StatefulSet is wa-<session>, its one pod wa-<session>-0 (operator/src/children.rs)
threading.Thread(target=watch, args=("pods", pod_ready, lambda p: p.removeprefix("wa-").rsplit("-", 1)[0]), daemon=True).start()
threading.Thread(target=watch, args=("whatsappsessions", session_ready, lambda s: s), daemon=True).start()
done.wait(timeout=1800)
lags = sorted(1000 * (session_ready[s] - pod_ready[s]) for s in session_ready if s in pod_ready)
pick = lambda q: round(lags[min(len(lags) - 1, int(q * len(lags)))]) if lags else None
with open(out, "w") as f:
    json.dump({
        "pod_ready_last_s": round(max(pod_ready.values(), default=0), 1),
        "session_ready_last_s": round(max(session_ready.values(), default=0), 1),
        "lag_ms": {"p50": pick(0.5), "p90": pick(0.9), "max": round(lags[-1]) if lags else None,
                   "samples": len(lags)},
    }, f)
