// Reference for the benchmark: one plain watch on the sessions' namespace, measuring the time from
// the driver's patch to the watch event's arrival. Both hubs sit behind this same path, so this
// is the floor their delivery latency cannot beat on this cluster (API server + etcd + one hop).
// Same IPC protocol as clients.mjs (reset/report); the report also maps each patch's send time to
// its event's arrival here, so run.mjs can subtract the API server's part from every delivery.
import * as k8s from "@kubernetes/client-node";

const ns = process.argv[2];
const [group, version, plural] = ["whatsapp.leadmaster.io", "v1alpha1", "whatsappsessions"];
const kc = new k8s.KubeConfig();
kc.loadFromDefault();
const watch = new k8s.Watch(kc);

let latencies = [];
let arrivals = {}; // send time → arrival time of that patch's watch event
let since = Infinity;
let started = false;

function start() {
  watch
    .watch(`/apis/${group}/${version}/namespaces/${ns}/${plural}`, { allowWatchBookmarks: false }, (type, o) => {
      if (type !== "MODIFIED") return;
      const p = o?.status?.phoneNumber;
      if (typeof p !== "string" || !p.startsWith("t")) return;
      const t = Number(p.slice(1));
      if (!(t >= since) || t in arrivals) return;
      const now = Date.now();
      arrivals[t] = now;
      latencies.push(now - t);
    }, (err) => {
      // Watches end (timeouts, restarts): start again so the floor keeps being measured.
      if (err) console.error("watch-probe:", err.message ?? err);
      setTimeout(start, 200);
    })
    .then(() => {
      if (!started) { started = true; process.send({ ready: 1 }); }
    }, (err) => {
      console.error("watch-probe:", err.message ?? err);
      setTimeout(start, 1000);
    });
}
start();

process.on("message", (m) => {
  if (m.cmd === "reset") {
    latencies = [];
    arrivals = {};
    since = m.since;
    process.send({ reset: true });
  } else if (m.cmd === "report") {
    process.send({ latencies, arrivals, received: latencies.length });
  } else if (m.cmd === "exit") {
    process.exit(0);
  }
});
