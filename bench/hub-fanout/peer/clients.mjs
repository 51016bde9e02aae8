// Load generator: N real socket.io-client connections (websocket transport) to one hub, each
// subscribed to one session. Latency = receive time - the send time the driver wrote into
// status.phoneNumber ("t<unix ms>"), on the same machine clock.
// Controlled over IPC by run.mjs: {cmd:"connect", url, token, sessions:[names]} →
// {ready:n}; {cmd:"reset"}; {cmd:"report"} → {latencies:[ms...], received}.
import { io } from "socket.io-client";

let latencies = [];
let received = 0;
const sockets = [];

process.on("message", async (m) => {
  if (m.cmd === "connect") {
    let ready = 0;
    await new Promise((resolve) => {
      for (const name of m.sessions) {
        const s = io(m.url, { transports: ["websocket"], auth: { token: m.token }, reconnection: true, forceNew: true, timeout: 60000 });
        sockets.push(s);
        s.on("connect", () => {
          s.emit("subscribe-session", { instance_id: name }, () => {
            ready += 1;
            if (ready === m.sessions.length) resolve();
          });
        });
        s.on("session-status", (ev) => {
          const p = ev.phoneNumber;
          if (typeof p === "string" && p.startsWith("t")) {
            received += 1;
            latencies.push(Date.now() - Number(p.slice(1)));
          }
        });
      }
    });
    process.send({ ready });
  } else if (m.cmd === "reset") {
    latencies = [];
    received = 0;
    process.send({ reset: true });
  } else if (m.cmd === "report") {
    process.send({ latencies, received });
  } else if (m.cmd === "exit") {
    for (const s of sockets) s.close();
    process.exit(0);
  }
});
