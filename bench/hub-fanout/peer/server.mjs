// The benchmark peer: the original plan's "central hub" stack doing the wa-hub job for the
// measured path — Express + Socket.io + the official @kubernetes/client-node informer over
// WhatsAppSession CRs, JWT (HS256) auth in the socket.io handshake, tenant check on
// subscribe, a room per session, `session-status` pushed on every change.
//   WATCH_NAMESPACE=ns HUB_JWT_SECRET_FILE=f PORT=8081 KUBECONFIG=... node server.mjs
import fs from "node:fs";
import http from "node:http";
import express from "express";
import { Server } from "socket.io";
import * as k8s from "@kubernetes/client-node";
import jwt from "jsonwebtoken";

const ns = process.env.WATCH_NAMESPACE;
const secret = fs.readFileSync(process.env.HUB_JWT_SECRET_FILE, "utf8").trim();
const port = Number(process.env.PORT ?? 8081);
const [group, version, plural] = ["whatsapp.leadmaster.io", "v1alpha1", "whatsappsessions"];

const kc = new k8s.KubeConfig();
kc.loadFromDefault();
const api = kc.makeApiClient(k8s.CustomObjectsApi);
const informer = k8s.makeInformer(
  kc,
  `/apis/${group}/${version}/namespaces/${ns}/${plural}`,
  () => api.listNamespacedCustomObject({ group, version, namespace: ns, plural }),
);
let live = false;

const statusEvent = (o) => ({
  instance_id: o.metadata.name,
  namespace: o.metadata.namespace,
  tenant: o.spec.tenant,
  status: o.status?.status ?? "init",
  qr_status: o.status?.qrStatus ?? "none",
  connectedAt: o.status?.connectedAt ?? null,
  phoneNumber: o.status?.phoneNumber ?? null,
  updatedAt: o.status?.updatedAt ?? null,
  lastError: o.status?.lastError ?? null,
});
const last = new Map();
const room = (o) => `${o.metadata.namespace}/${o.metadata.name}`;

function changed(o) {
  const ev = statusEvent(o);
  const key = room(o);
  const prev = last.get(key);
  last.set(key, JSON.stringify(ev));
  if (prev !== JSON.stringify(ev)) io.to(key).emit("session-status", ev);
}
informer.on("add", changed);
informer.on("update", changed);
informer.on("delete", (o) => last.delete(room(o)));
informer.on("connect", () => { live = true; });
informer.on("error", (err) => {
  live = false;
  console.error("informer error", err?.message ?? err);
  setTimeout(() => informer.start(), 1000);
});

const app = express();
app.get("/health", (_req, res) => res.status(live ? 200 : 503).json({ status: live ? "ok" : "stale" }));
const server = http.createServer(app);
const io = new Server(server, { transports: ["websocket"] });

io.on("connection", (socket) => {
  try {
    socket.data.claims = jwt.verify(socket.handshake.auth?.token ?? "", secret, { algorithms: ["HS256"] });
    socket.emit("authenticated", { success: true });
  } catch {
    socket.emit("connection-error", { error: "UNAUTHENTICATED", message: "invalid token" });
    socket.disconnect(true);
    return;
  }
  socket.on("subscribe-session", (data, ack) => {
    const id = data?.instance_id;
    const o = typeof id === "string" ? informer.get(id, ns) : undefined;
    const c = socket.data.claims;
    let err;
    if (!o) err = { instance_id: id, error: "NOT_FOUND", message: "unknown session" };
    else if (c.role !== "admin" && !(c.tenants ?? []).includes(o.spec.tenant)) err = { instance_id: id, error: "FORBIDDEN", message: "other tenant" };
    if (err) {
      socket.emit("connection-error", err);
      if (typeof ack === "function") ack(err);
      return;
    }
    socket.join(room(o));
    socket.emit("session-status", statusEvent(o));
    if (typeof ack === "function") ack({ ok: true });
  });
});

await informer.start();
server.listen(port, "127.0.0.1", () => console.error(`peer listening on ${port}`));
process.on("SIGTERM", () => { io.close(); server.close(); process.exit(0); });
