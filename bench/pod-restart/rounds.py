"""Rounds of bench/pod-restart/run.sh: delete the session's pod, time the way back to connected.

Two `kubectl --watch` processes (the pod, with its watch events, and the CR) are read on threads
that stamp each line with the monotonic clock as it arrives, so every phase is timed from the
delete request on one clock. Prints the figures as JSON.

Usage: rounds.py NAMESPACE SESSION ROUNDS COMMAND
"""

import json
import queue
import statistics
import subprocess
import sys
import threading
import time

NS, NAME, ROUNDS, COMMAND = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
POD = f"wa-{NAME}-0"
TIMEOUT_S = 120


def watch(args):
    """Starts `kubectl … --watch`; returns the process and a queue of (stamp, fields)."""
    proc = subprocess.Popen(["kubectl", *args], stdout=subprocess.PIPE, text=True)
    lines = queue.Queue()

    def read():
        for line in proc.stdout:
            lines.put((time.monotonic(), line.rstrip("\n").split("|")))

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def one_round():
    pod = watch([
        "get", "pod", "-n", NS, POD, "--watch", "--output-watch-events", "-o",
        "jsonpath={.type}|{.object.metadata.uid}|{.object.status.phase}"
        "|{.object.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}",
    ])
    cr = watch([
        "get", "wa", "-n", NS, NAME, "--watch", "-o",
        "jsonpath={.status.status}|{.status.connectedAt}|{.status.qrStatus}{\"\\n\"}",
    ])
    try:
        # Each watch prints the current state first.
        _, (_, old_uid, _, _) = pod[1].get(timeout=30)
        _, (status, old_at, _) = cr[1].get(timeout=30)
        if status != "connected":
            raise RuntimeError(f"the session is {status!r}, not connected, before the round")
        t0 = time.monotonic()
        subprocess.run(["kubectl", "delete", "pod", "-n", NS, POD, "--wait=false"],
                       check=True, stdout=subprocess.DEVNULL)
        seen, statuses = {}, []
        deadline = t0 + TIMEOUT_S
        while "connected" not in seen:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not connected again within {TIMEOUT_S} s: {statuses}")
            try:
                at, (status, connected_at, qr_status) = cr[1].get(timeout=0.2)
                statuses.append(status)
                if status == "qr_required" or qr_status == "generated":
                    raise RuntimeError(f"a QR after the pod's deletion (a lost login): {statuses}")
                if status == "connected" and connected_at != old_at:
                    seen["connected"] = at
            except queue.Empty:
                pass
        # The pod's events up to its Ready (the readiness probe's period comes after the
        # agent's `connected`), for at most a few seconds more.
        ready_by = time.monotonic() + 15
        while "new_pod_ready" not in seen:
            try:
                at, (event, uid, phase, ready) = pod[1].get(timeout=max(0.0, ready_by - time.monotonic()))
            except queue.Empty:
                break
            if uid == old_uid and event == "DELETED":
                seen.setdefault("old_pod_gone", at)
            if uid != old_uid:
                seen.setdefault("new_pod_created", at)
                if phase == "Running":
                    seen.setdefault("new_pod_running", at)
                if ready == "True":
                    seen.setdefault("new_pod_ready", at)
        return {k: round((v - t0) * 1000) for k, v in seen.items()}, statuses
    finally:
        for proc, _ in (pod, cr):
            proc.terminate()
            proc.wait()


def main():
    rounds = []
    for i in range(ROUNDS):
        ms, statuses = one_round()
        ms["statuses"] = statuses
        rounds.append(ms)
        print(f"[bench] round {i + 1}: {ms}", file=sys.stderr)
    phases = ["old_pod_gone", "new_pod_created", "new_pod_running", "new_pod_ready", "connected"]

    def pct(xs, q):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]

    summary = {
        p: {"p50": statistics.median(v), "p90": pct(v, 0.9), "all": v}
        for p in phases
        if (v := [r[p] for r in rounds if p in r])
    }
    print(json.dumps({
        "command": COMMAND,
        "measured": "ms from `kubectl delete pod` (graceful) of a connected session's pod: the old "
                    "pod gone from the API, the StatefulSet's new pod created, running, Ready, and "
                    "the CR `connected` again with a new connectedAt (no QR in between)",
        "target_connected_ms": 5000,
        "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
        "ms_after_delete": summary,
        "rounds": rounds,
    }, indent=1))


if __name__ == "__main__":
    main()
