#!/usr/bin/env python3
"""Where a devcluster's CPU goes: a snapshot of CPU seconds per part, and the difference of two.

  cpu.py snapshot STATE_DIR > before.json
  cpu.py diff before.json after.json [PODS]   -> JSON: seconds per part (and ms per pod)

Parts: the control plane's processes (from STATE_DIR/pids), the node's processes grouped by
name (containerd-shim-runc-v2 summed as `shims`), each counted with its reaped children
(cutime/cstime: the CNI plugins under containerd, runc under the shims), and the cgroup
totals of the node's own processes (`node_cgroup`, which also counts processes that have
exited) and of the pods (`pods_cgroup`).
"""
import json
import os
import sys

CONTROL_PLANE = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"]
TCK = os.sysconf("SC_CLK_TCK")


def proc_seconds(pid):
    """utime + stime + cutime + cstime of a process, in seconds (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is the state (field 3); utime..cstime are fields 14..17
    return sum(int(x) for x in fields[11:15]) / TCK


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def cgroup_procs(path):
    pids = []
    for root, _dirs, files in os.walk(path):
        if "cgroup.procs" in files:
            with open(os.path.join(root, "cgroup.procs")) as f:
                pids += [int(p) for p in f.read().split()]
    return pids


def node_cgroup(state):
    """/sys/fs/cgroup/cpuacct/dc-<hash>: the kubelet's cpuacct cgroup, one level up."""
    with open(os.path.join(state, "pids", "kubelet.pid")) as f:
        pid = f.read().strip()
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.strip().split(":", 2)
            if "cpuacct" in ctrls.split(","):
                return "/sys/fs/cgroup/cpuacct/" + path.strip("/").split("/")[0]
    raise SystemExit("no cpuacct cgroup for the kubelet")


def usage(path):
    try:
        with open(os.path.join(path, "cpuacct.usage")) as f:
            return int(f.read()) / 1e9
    except OSError:
        return 0.0


def snapshot(state):
    parts = {}
    for name in CONTROL_PLANE:
        try:
            with open(os.path.join(state, "pids", f"{name}.pid")) as f:
                s = proc_seconds(f.read().strip())
        except OSError:
            s = None
        if s is not None:
            parts[name] = s
    cg = node_cgroup(state)
    for pid in cgroup_procs(os.path.join(cg, "node")):
        name = comm(pid)
        s = proc_seconds(pid)
        if name is None or s is None:
            continue
        name = "shims" if name.startswith("containerd-shim") else name
        parts[name] = parts.get(name, 0.0) + s
    parts["node_cgroup"] = usage(os.path.join(cg, "node"))
    parts["pods_cgroup"] = usage(os.path.join(cg, "kubepods"))
    return parts


def diff(a, b, pods):
    out = {k: round(b[k] - a.get(k, 0.0), 1) for k in b}
    if pods:
        out = {k: {"s": v, "ms_per_pod": round(1000 * v / pods)} for k, v in out.items()}
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["snapshot"]:
        print(json.dumps(snapshot(sys.argv[2])))
    elif sys.argv[1:2] == ["diff"]:
        with open(sys.argv[2]) as f:
            a = json.load(f)
        with open(sys.argv[3]) as f:
            b = json.load(f)
        print(json.dumps(diff(a, b, int(sys.argv[4]) if len(sys.argv) > 4 else 0)))
    else:
        raise SystemExit(__doc__)
