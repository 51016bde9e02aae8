#!/usr/bin/env python3
"""Memory of wa-hub through hundreds of logins (issue 28 item 1).

Starts a wa-hub process (HUB_BIN) against a running devcluster (KUBECONFIG), with a users file
of two users whose passwords are hashed by that binary (`hash-password`: argon2id m=19456 KiB),
then sends, in phases, logins with right and wrong passwords, sequentially and in parallel, and
samples the process's resident memory (VmRSS, every 50 ms) and its peak (VmHWM), and its thread
count. The throttle is set out of the way (`--login-max-failures`), so every login reaches the
password check. Prints a table and writes OUT (JSON).

  KUBECONFIG=... HUB_BIN=.../wa-hub OUT=bench/results/hub-login.json bench/hub-login/run.py

Environment: SEQUENTIAL (200), PARALLEL (400), CONCURRENCY (30), ROUNDS (2: the parallel phase
repeated, to see whether memory keeps growing), LABEL (a name for the binary in the output).
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

HUB_BIN = os.environ.get("HUB_BIN") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/whatsapp-operator/target")),
    "release",
    "wa-hub",
)
SEQUENTIAL = int(os.environ.get("SEQUENTIAL", 200))
PARALLEL = int(os.environ.get("PARALLEL", 400))
CONCURRENCY = int(os.environ.get("CONCURRENCY", 30))
ROUNDS = int(os.environ.get("ROUNDS", 2))
OUT = os.environ.get("OUT")
LABEL = os.environ.get("LABEL", os.path.basename(HUB_BIN))
PASSWORD = "bench-password-0123"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid):
    with open(f"/proc/{pid}/status") as f:
        text = f.read()
    field = lambda k: int(re.search(rf"^{k}:\s+(\d+)", text, re.M).group(1))
    return {"rss_kib": field("VmRSS"), "hwm_kib": field("VmHWM"), "threads": field("Threads")}


class Sampler(threading.Thread):
    """VmRSS every 50 ms; the peak seen per phase."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, False

    def run(self):
        while not self.stop:
            try:
                self.peak = max(self.peak, proc_status(self.pid)["rss_kib"])
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.05)

    def take_peak(self):
        p, self.peak = self.peak, 0
        return p


def login(url, user, password):
    body = json.dumps({"username": user, "password": password}).encode()
    req = urllib.request.Request(
        f"{url}/api/auth/login", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return "error"


def main():
    if not os.environ.get("KUBECONFIG"):
        sys.exit("KUBECONFIG (a running devcluster) is required")
    tmp = tempfile.mkdtemp(prefix="hub-login-")
    h = subprocess.run(
        [HUB_BIN, "hash-password"], input=PASSWORD + "\n", capture_output=True, text=True, check=True
    ).stdout.strip()
    with open(f"{tmp}/users.yaml", "w") as f:
        f.write(
            "users:\n"
            f"  - {{username: ana, passwordHash: '{h}', tenants: [a], role: user}}\n"
            f"  - {{username: bob, passwordHash: '{h}', tenants: [b], role: user}}\n"
        )
    with open(f"{tmp}/secret", "w") as f:
        f.write("bench-secret-0123456789abcdef0123456789\n")
    port, metrics = free_port(), free_port()
    args = [
        HUB_BIN,
        "--namespace", "default",
        "--listen", f"127.0.0.1:{port}",
        "--metrics-addr", f"127.0.0.1:{metrics}",
        "--jwt-secret-file", f"{tmp}/secret",
        "--users-file", f"{tmp}/users.yaml",
        "--login-max-failures", "1000000",
    ]
    help_text = subprocess.run([HUB_BIN, "--help"], capture_output=True, text=True).stdout
    if "--login-max-failures-per-user" in help_text:
        args += ["--login-max-failures-per-user", "1000000"]
    hub = subprocess.Popen(args, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            sys.exit("wa-hub never became healthy")
        sampler = Sampler(hub.pid)
        sampler.start()
        time.sleep(1)
        phases = []

        def record(name, statuses, started):
            time.sleep(2)  # let freed memory go back before reading the settled figure
            st = proc_status(hub.pid)
            counts = {}
            for s in statuses:
                counts[str(s)] = counts.get(str(s), 0) + 1
            phases.append({
                "phase": name,
                "logins": len(statuses),
                "statuses": counts,
                "seconds": round(time.time() - started, 2),
                "peak_rss_mib": round(max(sampler.take_peak(), st["rss_kib"]) / 1024, 1),
                "settled_rss_mib": round(st["rss_kib"] / 1024, 1),
                "threads": st["threads"],
                "alive": hub.poll() is None,
            })
            print(f"[hub-login] {LABEL}: {phases[-1]}", file=sys.stderr)

        t = time.time()
        record("idle", [], t)
        t = time.time()
        seq = [login(url, "ana" if i % 2 else "bob", PASSWORD if i % 4 == 0 else "wrong") for i in range(SEQUENTIAL)]
        record(f"{SEQUENTIAL} sequential (1 in 4 right)", seq, t)
        for r in range(ROUNDS):
            t = time.time()
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                par = list(pool.map(
                    lambda i: login(url, "ana" if i % 2 else "bob", PASSWORD if i % 4 == 0 else "wrong"),
                    range(PARALLEL),
                ))
            record(f"{PARALLEL} at {CONCURRENCY} in parallel, round {r + 1}", par, t)
        sampler.stop = True
        result = {
            "label": LABEL,
            "binary": HUB_BIN,
            "hwm_mib": round(proc_status(hub.pid)["hwm_kib"] / 1024, 1),
            "phases": phases,
            "load_avg": os.getloadavg(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    finally:
        hub.terminate()
        hub.wait(timeout=30)
    print(f"\n{LABEL}: peak VmHWM {result['hwm_mib']} MiB")
    print("| phase | logins | statuses | peak RSS MiB | settled RSS MiB | threads |")
    print("|---|---|---|---|---|---|")
    for p in result["phases"]:
        print(f"| {p['phase']} | {p['logins']} | {p['statuses']} | {p['peak_rss_mib']} | {p['settled_rss_mib']} | {p['threads']} |")
    if OUT:
        runs = []
        if os.path.exists(OUT):
            with open(OUT) as f:
                runs = json.load(f).get("runs", [])
        runs = [r for r in runs if r["label"] != LABEL] + [result]
        with open(OUT, "w") as f:
            json.dump({"command": "KUBECONFIG=... HUB_BIN=... LABEL=... OUT=... bench/hub-login/run.py", "runs": runs}, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
