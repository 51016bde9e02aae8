// hub-fanout: wa-hub vs the Node peer (Express + Socket.io + client-node informer), same
// workload, one run, one target at a time (so they do not steal each other's CPU on a small
// machine). See README.md.
//
// Env: KUBECONFIG (required), HUB_BIN (wa-hub binary), SESSIONS (1000), STEPS (client counts,
// "1000,2500,5000"), RATE (status patches/s, 100), DURATION (s per step, 20), CLIENT_PROCS (4).
import { fork, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "peer/package.json"));
const k8s = await import(require.resolve("@kubernetes/client-node"));
const jwt = require("jsonwebtoken");

const SESSIONS = Number(process.env.SESSIONS ?? 1000);
const STEPS = (process.env.STEPS ?? "1000,2500,5000").split(",").map(Number);
const RATE = Number(process.env.RATE ?? 100);
const DURATION = Number(process.env.DURATION ?? 20);
const CLIENT_PROCS = Number(process.env.CLIENT_PROCS ?? 4);
const HUB_BIN = process.env.HUB_BIN ?? path.join(os.homedir(), ".cache/whatsapp-operator/target/release/wa-hub");
const [group, version, plural] = ["whatsapp.leadmaster.io", "v1alpha1", "whatsappsessions"];
const log = (...a) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const kc = new k8s.KubeConfig();
kc.loadFromDefault();
const ext = kc.makeApiClient(k8s.ApiextensionsV1Api);
const core = kc.makeApiClient(k8s.CoreV1Api);
const custom = kc.makeApiClient(k8s.CustomObjectsApi);

async function setup() {
  const crd = k8s.loadYaml(fs.readFileSync(path.join(here, "../../crds/whatsappsession.yaml"), "utf8"));
  try {
    await ext.createCustomResourceDefinition({ body: crd });
  } catch (e) {
    if (e.code !== 409) throw e;
  }
  const ns = `bench-fanout-${Math.random().toString(36).slice(2, 8)}`;
  await core.createNamespace({ body: { metadata: { name: ns } } });
  for (;;) {
    try {
      await custom.listNamespacedCustomObject({ group, version, namespace: ns, plural });
      break;
    } catch {
      await sleep(500);
    }
  }
  log(`creating ${SESSIONS} sessions in ${ns}`);
  const names = Array.from({ length: SESSIONS }, (_, i) => `s${String(i).padStart(4, "0")}`);
  for (let i = 0; i < names.length; i += 50) {
    await Promise.all(names.slice(i, i + 50).map((name) =>
      custom.createNamespacedCustomObject({ group, version, namespace: ns, plural,
        body: { apiVersion: `${group}/${version}`, kind: "WhatsAppSession", metadata: { name }, spec: { tenant: "bench", desiredState: "Stopped" } } })));
  }
  return { ns, names };
}

function procStats(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const cpu = (Number(f[11]) + Number(f[12])) / 100; // utime + stime, USER_HZ=100
  const hwm = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return { cpu, peakRssMiB: hwm ? Number(hwm[1]) / 1024 : NaN };
}

async function waitHealthy(url) {
  for (let i = 0; i < 600; i++) {
    try {
      if ((await fetch(`${url}/health`)).status === 200) return;
    } catch {}
    await sleep(100);
  }
  throw new Error(`${url} not healthy`);
}

const ask = (child, msg, key) => new Promise((resolve) => {
  const on = (m) => { if (key in m) { child.off("message", on); resolve(m); } };
  child.on("message", on);
  child.send(msg);
});

const pct = (sorted, p) => sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN;

async function drive(ns, names, seconds) {
  const sent = { n: 0, failed: 0 };
  let inflight = 0;
  let seq = 0;
  const end = Date.now() + seconds * 1000;
  const opts = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch);
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      if (Date.now() >= end) { clearInterval(timer); resolve(); return; }
      if (inflight > 50) return; // the API server is the bottleneck: do not queue without bound
      const name = names[seq++ % names.length];
      const t = Date.now();
      inflight++;
      custom.patchNamespacedCustomObjectStatus({ group, version, namespace: ns, plural, name,
        body: { status: { phoneNumber: `t${t}`, updatedAt: new Date(t).toISOString().replace(/\.\d+Z$/, "Z") } } }, opts)
        .then(() => sent.n++, () => sent.failed++)
        .finally(() => inflight--);
    }, 1000 / RATE);
  });
  while (inflight > 0) await sleep(20);
  return sent;
}

async function runTarget(label, start, ns, names, secretFile, token) {
  const port = 18000 + Math.floor(Math.random() * 1000);
  const url = `http://127.0.0.1:${port}`;
  const proc = start(port);
  await waitHealthy(url);
  log(`${label}: up on ${port}`);
  const procs = Array.from({ length: CLIENT_PROCS }, () => fork(path.join(here, "peer/clients.mjs"), [], { cwd: path.join(here, "peer") }));
  const rows = [];
  let held = 0;
  let connected = 0;
  for (const step of STEPS) {
    // Add clients up to `step`: client k watches session k mod SESSIONS (5 per session at 5,000).
    const add = Array.from({ length: step - connected }, (_, i) => names[(connected + i) % names.length]);
    const per = Math.ceil(add.length / CLIENT_PROCS);
    await Promise.all(procs.map((c, i) => ask(c, { cmd: "connect", url, token, sessions: add.slice(i * per, (i + 1) * per) }, "ready")));
    connected = step;
    await Promise.all(procs.map((c) => ask(c, { cmd: "reset" }, "reset")));
    log(`${label}: ${step} clients subscribed; driving ${RATE}/s for ${DURATION}s`);
    const sent = await drive(ns, names, DURATION);
    await sleep(3000);
    const reports = await Promise.all(procs.map((c) => ask(c, { cmd: "report" }, "latencies")));
    const lat = reports.flatMap((r) => r.latencies).sort((a, b) => a - b);
    const subsPerSession = step / names.length;
    const row = { clients: step, patches: sent.n, expected: Math.round(sent.n * subsPerSession), received: lat.length, p50: pct(lat, 50), p99: pct(lat, 99), max: lat[lat.length - 1] };
    rows.push(row);
    log(`${label}:`, JSON.stringify(row));
    if (row.p99 <= 100 && row.received >= row.expected * 0.99) held = step;
  }
  const stats = procStats(proc.pid);
  for (const c of procs) c.send({ cmd: "exit" });
  proc.kill("SIGTERM");
  await new Promise((r) => proc.once("exit", r));
  return { label, rows, held, ...stats };
}

const { ns, names } = await setup();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hub-fanout-"));
const secretFile = path.join(dir, "secret");
const secret = "bench-secret-0123456789abcdef0123456789";
fs.writeFileSync(secretFile, secret);
const token = jwt.sign({ sub: "bench", tenants: ["bench"], role: "user" }, secret, { algorithm: "HS256", expiresIn: "6h" });

const hub = await runTarget("wa-hub", (port) => spawn(HUB_BIN, ["--namespace", ns, "--jwt-secret-file", secretFile, "--listen", `127.0.0.1:${port}`], { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, RUST_LOG: "warn" } }), ns, names, secretFile, token);
const peer = await runTarget("node-peer", (port) => spawn("node", [path.join(here, "peer/server.mjs")], { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, WATCH_NAMESPACE: ns, HUB_JWT_SECRET_FILE: secretFile, PORT: String(port) } }), ns, names, secretFile, token);

await core.deleteNamespace({ name: ns }).catch(() => {});
const r2 = (x) => (Number.isFinite(x) ? Math.round(x * 100) / 100 : x);
const table = [
  "| figure | wa-hub | node peer | hub/peer |",
  "|---|---|---|---|",
];
const last = (t) => t.rows[t.rows.length - 1];
const line = (name, a, b) => table.push(`| ${name} | ${r2(a)} | ${r2(b)} | ${r2(a / b)} |`);
for (let i = 0; i < STEPS.length; i++) {
  line(`p50 ms @${STEPS[i]} clients`, hub.rows[i].p50, peer.rows[i].p50);
  line(`p99 ms @${STEPS[i]} clients`, hub.rows[i].p99, peer.rows[i].p99);
  line(`delivered/expected @${STEPS[i]}`, hub.rows[i].received / hub.rows[i].expected, peer.rows[i].received / peer.rows[i].expected);
}
line("peak RSS MiB", hub.peakRssMiB, peer.peakRssMiB);
line("CPU seconds (whole run)", hub.cpu, peer.cpu);
line("clients held with p99 <= 100 ms", hub.held, peer.held);
const out = { config: { SESSIONS, STEPS, RATE, DURATION, CLIENT_PROCS, cpus: os.cpus().length }, hub, peer, table };
fs.mkdirSync(path.join(here, "../results"), { recursive: true });
fs.writeFileSync(path.join(here, "../results/hub-fanout.json"), JSON.stringify(out, null, 2));
console.log(table.join("\n"));
void last;
