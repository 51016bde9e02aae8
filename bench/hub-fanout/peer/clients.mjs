// Load generator: N real socket.io-client connections (websocket transport) to one hub, each
// subscribed to one session. Latency = receive time - the send time the driver wrote into
// status.phoneNumber ("t<unix ms>"), on the same machine clock.
// Controlled over IPC by run.mjs:
//   {cmd:"connect", url, token, sessions:[names]} → {ready, failed}
//   {cmd:"reset", since}  → {reset}: start a step; only patches sent at or after `since` count,
//                            so a subscribe snapshot or a late event of the last step is not a sample
//   {cmd:"report"}        → {latencies, samples: [[sent, received]...], received, cpuSeconds, wallSeconds, loopDelayP99Ms, connected}
// The report carries this process's own CPU time and event-loop delay over the step: if the load
// generator saturates, its receive timestamps are late and the latency is its own, not the hub's.
import { monitorEventLoopDelay } from "node:perf_hooks";
import { io } from "socket.io-client";

const SUBSCRIBE_TIMEOUT_MS = 180_000;

let latencies = [];
let samples = []; // [send time, receive time] per delivery, to pair with the watch probe's arrivals
let since = Infinity;
let stepStart = { cpu: process.cpuUsage(), wall: performance.now() };
const loop = monitorEventLoopDelay({ resolution: 10 });
loop.enable();
const sockets = [];

function open(url, token, name, onSubscribed) {
  const s = io(url, { transports: ["websocket"], auth: { token }, reconnection: true, forceNew: true, timeout: 60_000 });
  const seen = new Set(); // one sample per patch per socket, even if a server re-sends a state
  let subscribed = false;
  // Subscribe once the server says the handshake token was accepted (as the frontend does), not
  // on "connect": a subscribe sent right at connect was, once in 5,000 connections, never
  // answered by wa-hub (the event seems to arrive before its handlers exist).
  s.on("authenticated", () => {
    // Subscribe again after a reconnect (a real client does), but count readiness once.
    s.emit("subscribe-session", { instance_id: name }, (ack) => {
      if (subscribed) return;
      subscribed = true;
      onSubscribed(ack?.ok === true);
    });
  });
  s.on("session-status", (ev) => {
    const p = ev.phoneNumber;
    if (typeof p !== "string" || !p.startsWith("t")) return;
    const t = Number(p.slice(1));
    if (!(t >= since) || seen.has(t)) return;
    seen.add(t);
    const now = Date.now();
    latencies.push(now - t);
    samples.push([t, now]);
  });
  sockets.push(s);
}

process.on("message", async (m) => {
  if (m.cmd === "connect") {
    let ready = 0;
    let failed = 0;
    await new Promise((resolve) => {
      if (m.sessions.length === 0) return resolve();
      const timer = setTimeout(resolve, SUBSCRIBE_TIMEOUT_MS);
      for (const name of m.sessions) {
        open(m.url, m.token, name, (ok) => {
          if (ok) ready += 1;
          else failed += 1;
          if (ready + failed === m.sessions.length) {
            clearTimeout(timer);
            resolve();
          }
        });
      }
    });
    process.send({ ready, failed });
  } else if (m.cmd === "reset") {
    latencies = [];
    samples = [];
    since = m.since;
    loop.reset();
    stepStart = { cpu: process.cpuUsage(), wall: performance.now() };
    process.send({ reset: true });
  } else if (m.cmd === "count") {
    process.send({ count: latencies.length });
  } else if (m.cmd === "report") {
    const cpu = process.cpuUsage(stepStart.cpu);
    process.send({
      latencies,
      samples,
      received: latencies.length,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      wallSeconds: (performance.now() - stepStart.wall) / 1000,
      loopDelayP99Ms: loop.percentile(99) / 1e6,
      connected: sockets.filter((s) => s.connected).length,
    });
  } else if (m.cmd === "exit") {
    for (const s of sockets) s.close();
    process.exit(0);
  }
});
