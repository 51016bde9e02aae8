// A thin bridge between the hub's Rust integration tests and the real socket.io-client:
// commands arrive as JSON lines on stdin, everything the clients see goes to stdout as JSON
// lines. Assertions live in Rust; this file only relays.
//
// in:  {"op":"connect","client":"c1","url":"http://...","auth":{...}|null,
//       "onConnect":[{"event":"subscribe-session","data":{...}}], "reconnection":true}
//      {"op":"emit","client":"c1","event":"...","data":...,"req":7}   (req: ask for an ack)
//      {"op":"raw","client":"c1","event":"...","args":[...]}          (emit without ack, any args)
//      {"op":"close","client":"c1"}
// out: {"client":"c1","type":"connect"|"disconnect"|"connect_error"|"event"|"ack"|"reconnect_attempt",...}
import { io } from "socket.io-client";
import readline from "node:readline";

const clients = new Map();
const out = (m) => process.stdout.write(JSON.stringify(m) + "\n");

function connect(cmd) {
  const socket = io(cmd.url, {
    transports: ["websocket"],
    auth: cmd.auth ?? undefined,
    reconnection: cmd.reconnection ?? true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
    timeout: 5000,
    forceNew: true,
  });
  const c = cmd.client;
  socket.on("connect", () => {
    out({ client: c, type: "connect", id: socket.id });
    for (const e of cmd.onConnect ?? []) socket.emit(e.event, e.data);
  });
  socket.on("disconnect", (reason) => out({ client: c, type: "disconnect", reason }));
  socket.on("connect_error", (err) => out({ client: c, type: "connect_error", message: String(err?.message ?? err) }));
  socket.io.on("reconnect_attempt", (n) => out({ client: c, type: "reconnect_attempt", n }));
  socket.onAny((event, ...args) => out({ client: c, type: "event", event, data: args[0] ?? null, t: Date.now() }));
  clients.set(c, socket);
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => {
  let cmd;
  try {
    cmd = JSON.parse(line);
  } catch {
    out({ type: "bridge_error", message: "bad command" });
    return;
  }
  const s = clients.get(cmd.client);
  switch (cmd.op) {
    case "connect":
      connect(cmd);
      break;
    case "emit":
      if (cmd.req !== undefined) {
        s.timeout(5000).emit(cmd.event, cmd.data, (err, resp) =>
          out({ client: cmd.client, type: "ack", req: cmd.req, data: err ? { timeout: true } : resp }));
      } else {
        s.emit(cmd.event, cmd.data);
      }
      break;
    case "raw":
      s.emit(cmd.event, ...(cmd.args ?? []));
      break;
    case "close":
      s?.close();
      clients.delete(cmd.client);
      break;
    default:
      out({ type: "bridge_error", message: `unknown op ${cmd.op}` });
  }
});
rl.on("close", () => {
  for (const s of clients.values()) s.close();
  process.exit(0);
});
out({ type: "ready" });
