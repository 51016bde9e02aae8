// hub-fanout memory probe: where wa-hub's memory goes per socket, without the patch load.
// Starts the hub (optionally under a wrapper such as heaptrack), connects the same socket.io
// clients as run.mjs (clients.mjs: websocket transport, token in the handshake, one subscription
// each) in STEPS, and after each step prints the hub's RSS, peak RSS (VmHWM) and the growth per
// added client; then SIGTERMs the hub (a heap profiler writes its file on exit).
//
// Env: KUBECONFIG (required), HUB_BIN, HUB_WRAP (command prefix, e.g. "heaptrack -o /tmp/hub"),
// HUB_ARGS (extra wa-hub flags), HUB_ENV (extra env, "K=V,K=V"), SESSIONS (1000),
// STEPS ("1000,2500,5000"), CLIENT_PROCS (4), SETTLE_S (seconds after each step, 3),
// OUT (optional JSON file), TARGET ("hub", default: HUB_BIN with wa-hub's flags — also the
// bench-only alt/ server, which takes them; "peer": the Node peer, peer/server.mjs).
import { execSync, fork, spawn } from "node:child_process";
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
const CLIENT_PROCS = Number(process.env.CLIENT_PROCS ?? 4);
const SETTLE_S = Number(process.env.SETTLE_S ?? 3);
const HUB_BIN = process.env.HUB_BIN ?? path.join(os.homedir(), ".cache/whatsapp-operator/target/release/wa-hub");
const HUB_WRAP = (process.env.HUB_WRAP ?? "").split(" ").filter(Boolean);
const HUB_ARGS = (process.env.HUB_ARGS ?? "").split(" ").filter(Boolean);
const TARGET = process.env.TARGET ?? "hub";
if (!["hub", "peer"].includes(TARGET)) throw new Error(`TARGET=${TARGET}: hub or peer`);
const HUB_ENV = Object.fromEntries((process.env.HUB_ENV ?? "").split(",").filter(Boolean).map((kv) => kv.split(/=(.*)/s).slice(0, 2)));
const [group, version, plural] = ["whatsapp.leadmaster.io", "v1alpha1", "whatsappsessions"];
const log = (...a) => console.error(`[memory ${new Date().toISOString().slice(11, 19)}]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const uptime = () => execSync("uptime", { encoding: "utf8" }).trim();

const kc = new k8s.KubeConfig();
kc.loadFromDefault();
const ext = kc.makeApiClient(k8s.ApiextensionsV1Api);
const core = kc.makeApiClient(k8s.CoreV1Api);
const custom = kc.makeApiClient(k8s.CustomObjectsApi);

const crd = k8s.loadYaml(fs.readFileSync(path.join(here, "../../crds/whatsappsession.yaml"), "utf8"));
await ext.createCustomResourceDefinition({ body: crd }).catch((e) => { if (e.code !== 409) throw e; });
const ns = `bench-memory-${Math.random().toString(36).slice(2, 8)}`;
// Claimed for tenant bench (docs/design.md §2): the hub serves no session of an unclaimed namespace.
await core.createNamespace({ body: { metadata: { name: ns, labels: { "tenant.whatsapp.leadmaster.io/bench": "" } } } });
for (;;) {
  try {
    await custom.listNamespacedCustomObject({ group, version, namespace: ns, plural });
    break;
  } catch {
    await sleep(500);
  }
}
const names = Array.from({ length: SESSIONS }, (_, i) => `s${String(i).padStart(4, "0")}`);
for (let i = 0; i < names.length; i += 50) {
  await Promise.all(names.slice(i, i + 50).map((name) =>
    custom.createNamespacedCustomObject({ group, version, namespace: ns, plural,
      body: { apiVersion: `${group}/${version}`, kind: "WhatsAppSession", metadata: { name }, spec: { tenant: "bench", desiredState: "Stopped" } } })));
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hub-memory-"));
const secretFile = path.join(dir, "secret");
const secret = "bench-secret-0123456789abcdef0123456789";
fs.writeFileSync(secretFile, secret);
const token = jwt.sign({ sub: "bench", tenants: ["bench"], role: "user" }, secret, { algorithm: "HS256", expiresIn: "6h" });

const port = 19000 + Math.floor(Math.random() * 1000);
const url = `http://127.0.0.1:${port}`;
const hubArgs = ["--namespace", ns, "--jwt-secret-file", secretFile, "--listen", `127.0.0.1:${port}`, "--metrics-addr", `127.0.0.1:${port + 1000}`, ...HUB_ARGS];
const [cmd, ...pre] = HUB_WRAP.length ? HUB_WRAP : [HUB_BIN];
const wrapper = TARGET === "peer"
  // The Node peer as run.mjs starts it (its settings come from the environment).
  ? spawn(process.execPath, [path.join(here, "peer/server.mjs")], { stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, WATCH_NAMESPACE: ns, HUB_JWT_SECRET_FILE: secretFile, PORT: String(port), ...HUB_ENV } })
  : spawn(cmd, HUB_WRAP.length ? [...pre, HUB_BIN, ...hubArgs] : hubArgs, {
    // Every client connects from loopback: the per-client connection cap (256) would refuse them.
    stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, RUST_LOG: "warn", HUB_MAX_CONNECTIONS_PER_CLIENT: "0", ...HUB_ENV },
  });
for (let i = 0; ; i++) {
  try {
    if ((await fetch(`${url}/health`)).status === 200) break;
  } catch {}
  if (i > 1200) throw new Error("hub not healthy");
  await sleep(100);
}
// The hub itself (under a wrapper it is a descendant of the spawned process): the process whose
// command line carries this run's --listen address.
const hubPid = TARGET === "peer" ? wrapper.pid : Number(execSync(`pgrep -f -- '--listen 127.0.0.1:${port}' | while read p; do [ "$(readlink /proc/$p/exe)" = "$(readlink -f ${HUB_BIN})" ] && echo $p; done | head -1`, { encoding: "utf8", shell: "/bin/bash" }).trim());
const status = () => {
  const s = fs.readFileSync(`/proc/${hubPid}/status`, "utf8");
  const kb = (k) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)[1]) / 1024;
  return { rssMiB: kb("VmRSS"), hwmMiB: kb("VmHWM"), anonMiB: kb("RssAnon"), threads: Number(/Threads:\s+(\d+)/.exec(s)[1]) };
};
const r1 = (x) => Math.round(x * 10) / 10;
const base = status();
log(`hub pid ${hubPid} on ${port}: idle with ${SESSIONS} sessions`, base, uptime());

const ask = (child, msg, key) => new Promise((resolve) => {
  const on = (m) => { if (key in m) { child.off("message", on); resolve(m); } };
  child.on("message", on);
  child.send(msg);
});
const procs = Array.from({ length: CLIENT_PROCS }, () => fork(path.join(here, "peer/clients.mjs"), [], { cwd: path.join(here, "peer") }));
const rows = [{ clients: 0, ...base }];
let connected = 0;
for (const step of STEPS) {
  const add = Array.from({ length: step - connected }, (_, i) => names[(connected + i) % names.length]);
  const per = Math.ceil(add.length / CLIENT_PROCS);
  const t0 = Date.now();
  const acks = await Promise.all(procs.map((c, i) => ask(c, { cmd: "connect", url, token, sessions: add.slice(i * per, (i + 1) * per) }, "ready")));
  const ready = acks.reduce((a, r) => a + r.ready, 0);
  connected = step;
  await sleep(SETTLE_S * 1000);
  const s = status();
  const row = { clients: step, subscribed: ready, connectSeconds: (Date.now() - t0) / 1000 - SETTLE_S, ...s,
    kibPerClientRss: r1(((s.rssMiB - base.rssMiB) * 1024) / step), kibPerClientHwm: r1(((s.hwmMiB - base.hwmMiB) * 1024) / step), uptime: uptime() };
  rows.push(row);
  log(JSON.stringify(row));
}
for (const c of procs) c.send({ cmd: "exit" });
await sleep(2000);
const afterClose = status();
log("after the clients closed", afterClose);
process.kill(hubPid, "SIGTERM");
await new Promise((r) => wrapper.once("exit", r));
await core.deleteNamespace({ name: ns }).catch(() => {});
const out = { command: `TARGET=${TARGET} HUB_BIN=${TARGET === "peer" ? "" : HUB_BIN} HUB_WRAP=${JSON.stringify(process.env.HUB_WRAP ?? "")} HUB_ARGS=${JSON.stringify(process.env.HUB_ARGS ?? "")} HUB_ENV=${JSON.stringify(process.env.HUB_ENV ?? "")} SESSIONS=${SESSIONS} STEPS=${STEPS.join(",")} CLIENT_PROCS=${CLIENT_PROCS} node bench/hub-fanout/memory.mjs`, rows, afterClose };
if (process.env.OUT) fs.writeFileSync(process.env.OUT, JSON.stringify(out, null, 2));
console.log(JSON.stringify(out));
process.exit(0);
