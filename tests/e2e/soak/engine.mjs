// The soak itself, given a running product (bench/soak/run.sh installs the chart; the e2e
// short form uses the harness's): creates and links N sessions through the fake, starts M
// socket.io clients and one browser, then injects faults on a seeded schedule — one at a time
// per session, global ones (the service offline, the operator or a hub replica killed, a part of
// the cluster restarted) while no session fault runs — and measures what docs/soak.md lists.
// Returns the figures.
import { execSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as lib from '../tests/lib.mjs';
import { restLogin } from '../rest.mjs';
import { sleep } from '../wait.mjs';
import { GLOBAL_KINDS, SESSION_KINDS } from './faults.mjs';
import { Kube } from './kube.mjs';
import { deck, describe, globalGapMs, laneRng, memoryGrowth, between, summarizeFaults, uptime } from './stats.mjs';
import { BrowserViews, SocketClients, Truth } from './views.mjs';

const uptimeLine = () => execSync('uptime', { encoding: 'utf8' }).trim();

export async function soak(cfg) {
  const log = cfg.log ?? ((...a) => console.error(`[soak ${new Date().toISOString().slice(11, 19)}]`, ...a));
  const kube = await new Kube(cfg.kubeconfig, log).start();
  const ctx = { ...cfg, kube, log };
  const sessions = Array.from({ length: cfg.sessions }, (_, i) => ({
    name: `${cfg.prefix}-${String(i + 1).padStart(2, '0')}`,
    phone: `54911${String(cfg.phoneBase + i).padStart(8, '0')}`,
    linked: false,
    busy: false,
    relinks: 0,
  }));
  const byName = new Map(sessions.map((s) => [s.name, s]));
  const truth = new Truth();
  const cr = new Map(); // name → the CR's status object
  const fake = new Map(); // phone → {connected, present}
  const samples = new Map(sessions.map((s) => [s.name, []]));
  const excused = new Map(sessions.map((s) => [s.name, []]));
  const injected = new Map(sessions.map((s) => [s.name, []]));
  const faultWindows = new Map(sessions.map((s) => [s.name, []])); // takesDown faults: injection → back
  const crLies = new Map(sessions.map((s) => [s.name, 0])); // ms the CR said connected while the fake did not
  const faults = [];
  const clusterRestarts = []; // the cluster part's own side of a cluster kind: back, and when
  const rest = { during: {}, outside: {}, total: 0 };
  const memory = new Map(); // component key → [{t, bytes}]
  let globalFault = null;
  let globalPending = false;
  let stopWatch = () => {};
  const timers = [];
  let clients = null;
  let browser = null;
  const started = Date.now();

  // ---- setup --------------------------------------------------------------------------------
  const manifests = sessions
    .map((s) => `apiVersion: whatsapp.leadmaster.io/v1alpha1\nkind: WhatsAppSession\nmetadata:\n  name: ${s.name}\n  namespace: ${cfg.namespace}\nspec:\n  tenant: ${cfg.tenant}\n  displayName: ${s.name}\n  desiredState: Stopped\n  deletionPolicy: Delete\n`)
    .join('---\n');
  kube.kubectl(['apply', '-f', '-'], manifests);
  stopWatch = kube.watchSessions(cfg.namespace, (type, o, at) => {
    const name = o.metadata.name;
    if (!byName.has(name)) return;
    if (type === 'DELETED') return;
    cr.set(name, o.status ?? {});
    truth.update(name, o.status?.status ?? null, o.status?.phoneNumber ?? null, at);
  });
  let token = await restLogin(cfg.hubUrl, cfg.user, cfg.password);
  const hubPost = async (path) => {
    const res = await fetch(new URL(path.replace(/^\//, ''), cfg.hubUrl), { method: 'POST', headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(15_000) });
    return { status: res.status, retryAfter: Number(res.headers.get('retry-after') ?? 0), body: await res.text() };
  };

  // The fake's truth, once a second: which phones have a live browser holding the login.
  const sampleFake = async () => {
    const res = await fetch(new URL('_fake/devices', cfg.fakeUrl), { signal: AbortSignal.timeout(5000) });
    const devices = await res.json();
    const t = Date.now();
    for (const s of sessions) {
      const mine = devices.filter((d) => d.phone.replace(/\D/g, '') === s.phone);
      const connected = mine.some((d) => d.connected);
      fake.set(s.phone, { connected, present: mine.length > 0, at: t });
      if (!s.linked) continue;
      const list = samples.get(s.name);
      const prev = list[list.length - 1];
      if (prev && !prev.connected && cr.get(s.name)?.status === 'connected') crLies.set(s.name, crLies.get(s.name) + (t - prev.t));
      list.push({ t, connected });
    }
  };
  timers.push(setInterval(() => sampleFake().catch((e) => log(`fake sample: ${e.message}`)), 1000));

  const connectedNow = (s) => fake.get(s.phone)?.connected && cr.get(s.name)?.status === 'connected' && !cr.get(s.name)?.qr;

  async function link(s, why) {
    const t0 = Date.now();
    for (;;) {
      const r = await hubPost(`/api/session-manager/sessions/${s.name}/qr`);
      if (r.status === 200) break;
      if (r.status === 429) {
        await sleep(Math.max(1, r.retryAfter) * 1000);
        continue;
      }
      if (r.status === 401) {
        token = await restLogin(cfg.hubUrl, cfg.user, cfg.password);
        continue;
      }
      throw new Error(`POST qr ${s.name}: ${r.status} ${r.body}`);
    }
    // Scan the QR the CR shows (a rotated one answers 410: take the next).
    await lib.waitUntil(`${s.name} linked (${why})`, async () => {
      const qr = cr.get(s.name)?.qr;
      if (qr && cr.get(s.name)?.status === 'qr_required') {
        const res = await fetch(new URL('_fake/scan', cfg.fakeUrl), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ qr, phone: s.phone, pushName: s.name }) });
        await res.text();
      }
      return connectedNow(s);
    }, 240_000, 500);
    s.linked = true;
    return Date.now() - t0;
  }

  // ---- link everything, then the observers -----------------------------------------------------
  log(`linking ${sessions.length} sessions (${uptimeLine()})`);
  const linkMs = [];
  for (let i = 0; i < sessions.length; i += cfg.linkParallel) {
    linkMs.push(...(await Promise.all(sessions.slice(i, i + cfg.linkParallel).map((s) => link(s, 'initial')))));
  }
  log(`all ${sessions.length} linked; ${cfg.clients} socket clients and a browser`);
  clients = new SocketClients({ url: cfg.socketUrl ?? cfg.hubUrl, token, sessions: sessions.map((s) => s.name), count: cfg.clients, truth, log });
  await clients.start();
  if (cfg.browser) {
    browser = new BrowserViews({ lib, sessions: sessions.map((s) => s.name), user: cfg.user, password: cfg.password, truth, log });
    await browser.start();
  }

  // REST through faults: the sessions list once a second, by code, tagged with the running faults.
  const probeRest = async () => {
    let code;
    try {
      const res = await fetch(new URL('api/session-manager/sessions', cfg.hubUrl), { headers: { Authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000) });
      code = String(res.status);
      await res.text();
    } catch (err) {
      code = err.name === 'TimeoutError' ? 'timeout' : 'network';
    }
    const active = [...(globalFault ? [globalFault.kind] : []), ...sessions.filter((s) => s.fault).map((s) => s.fault.kind)];
    rest.total += 1;
    const bucket = active.length ? rest.during : rest.outside;
    for (const k of active.length ? [...new Set(active)] : ['none']) {
      bucket[k] ??= {};
      bucket[k][code] = (bucket[k][code] ?? 0) + 1;
    }
  };
  timers.push(setInterval(() => void probeRest(), 1000));

  // Memory: each container's working set from the kubelet, every `memoryEverySecs`.
  const sampleMemory = async () => {
    const summary = await kube.statsSummary();
    const t = Date.now();
    for (const pod of summary.pods ?? []) {
      const ns = pod.podRef.namespace;
      if (ns !== cfg.namespace && ns !== cfg.systemNamespace) continue;
      for (const c of pod.containers ?? []) {
        const key = `${ns}/${pod.podRef.name}/${c.name}`;
        const bytes = c.memory?.workingSetBytes;
        if (bytes == null) continue;
        if (!memory.has(key)) memory.set(key, []);
        memory.get(key).push({ t, bytes });
      }
    }
  };
  await sampleMemory().catch((e) => log(`memory: ${e.message}`));
  timers.push(setInterval(() => sampleMemory().catch((e) => log(`memory: ${e.message}`)), cfg.memoryEverySecs * 1000));

  // Pod logs: copied from the node's /var/log/pods every half minute, so a deleted pod's lines
  // are still there for the scan at the end.
  const podLogs = cfg.nodeLogDir && existsSync(cfg.nodeLogDir) ? join(cfg.artifacts, 'pod-logs') : null;
  const copyLogs = () => {
    if (!podLogs) return;
    try {
      mkdirSync(podLogs, { recursive: true });
      const ours = [cfg.namespace, cfg.systemNamespace].filter(Boolean).map((ns) => `${ns}_`);
      for (const dir of readdirSync(cfg.nodeLogDir).filter((d) => ours.some((p) => d.startsWith(p)))) {
        cpSync(join(cfg.nodeLogDir, dir), join(podLogs, dir), { recursive: true, force: true });
      }
    } catch (err) {
      log(`copying pod logs: ${err.message}`);
    }
  };
  timers.push(setInterval(copyLogs, 30_000));

  // ---- faults -------------------------------------------------------------------------------------
  const recoveryBound = cfg.recoverySecs * 1000;

  /** Waits for the session to be down (fake's side) then up again; the record of one fault. */
  async function judge(s, f) {
    const deadline = f.at + f.injectedMs + recoveryBound;
    let downSeen = null;
    let crLeftConnected = null;
    let lost = false;
    const loggedOut = f.expect === 'logged-out';
    while (Date.now() < deadline) {
      await sleep(250);
      const st = cr.get(s.name) ?? {};
      const fk = fake.get(s.phone) ?? {};
      if (!fk.connected && downSeen === null && fk.at > f.at) downSeen = fk.at;
      if (crLeftConnected === null && st.status !== 'connected') crLeftConnected = Date.now();
      if (loggedOut) {
        if (st.status === 'disconnected' && st.lastError?.code === 'LOGGED_OUT_REMOTELY') {
          f.recoveryMs = Date.now() - f.at;
          // It must stay there, not loop back into a QR round or a restart.
          const before = truth.transitions;
          const podBefore = cr.get(s.name)?.restarts ?? 0;
          await sleep(cfg.loggedOutHoldSecs * 1000);
          const st2 = cr.get(s.name) ?? {};
          f.stayed = st2.status === 'disconnected' && (cr.get(s.name)?.restarts ?? 0) === podBefore;
          f.transitionsWhileHeld = truth.transitions - before;
          f.outcome = f.stayed ? 'expected-end' : 'looped';
          return;
        }
        continue;
      }
      if (!fk.present || st.status === 'qr_required' || st.qr) {
        lost = true;
        break;
      }
      const settled = Date.now() >= f.at + f.injectedMs;
      // Recovered: a live browser holds the login again and the CR says so, after the fault
      // showed (or, past 30 s without any downtime seen, the fault cost none).
      if (settled && connectedNow(s) && (downSeen !== null || Date.now() - f.at > 30_000)) {
        f.recoveryMs = downSeen === null ? 0 : Math.max(0, (fk.at ?? Date.now()) - (f.at + f.injectedMs));
        f.outcome = 'reconnected';
        f.backAt = Date.now();
        if (downSeen === null) f.note = 'no downtime seen from the fake';
        break;
      }
    }
    if (f.watchStatusTruth) f.crLeftConnectedAfterMs = crLeftConnected === null ? null : crLeftConnected - f.at;
    if (lost) {
      f.lostLogin = true;
      f.outcome = 'lost-login';
      f.crAtLoss = { status: cr.get(s.name)?.status, qrStatus: cr.get(s.name)?.qrStatus, lastError: cr.get(s.name)?.lastError };
    } else if (!f.outcome) {
      f.outcome = 'not-recovered';
      f.crAtEnd = { status: cr.get(s.name)?.status, lastError: cr.get(s.name)?.lastError, fakeConnected: fake.get(s.phone)?.connected };
    }
  }

  async function sessionFault(s, kind) {
    const f = { kind, session: s.name, at: Date.now() };
    s.fault = f;
    try {
      Object.assign(f, await SESSION_KINDS[kind].inject(ctx, s));
    } catch (err) {
      f.outcome = 'inject-failed';
      f.error = err.message;
      s.fault = null;
      faults.push(f);
      log(`${s.name}: ${kind} could not be injected: ${err.message}`);
      return;
    }
    log(`${s.name}: ${kind}: ${f.detail}`);
    if (f.injectedMs) injected.get(s.name).push({ from: f.at, to: f.at + f.injectedMs });
    await judge(s, f);
    if (f.takesDown) faultWindows.get(s.name).push({ from: f.at, to: f.backAt ?? Date.now() });
    s.fault = null;
    faults.push(f);
    log(`${s.name}: ${kind} → ${f.outcome}${f.recoveryMs != null ? ` in ${f.recoveryMs} ms` : ''}${f.note ? ` (${f.note})` : ''}`);
    if (f.outcome !== 'reconnected') {
      // Back to linked for the rest of the run: an unlink needs a new QR by design; anything
      // else that needed one is a lost login (counted above).
      const from = f.at;
      s.linked = false;
      await link(s, `after ${kind}`).catch((err) => log(`${s.name}: re-link failed: ${err.message}`));
      s.relinks += 1;
      excused.get(s.name).push({ from, to: Date.now() });
    }
  }

  async function globalFaultRun(kind, rng) {
    // Wait for the sessions' own faults to end, so each fault is judged alone (session lanes
    // start no new fault meanwhile; without that the global lane starved and then overlapped).
    globalPending = true;
    await lib.waitUntil('session faults to end', () => !sessions.some((s) => s.fault), 600_000, 250).catch(() => {});
    const g = { kind, at: Date.now() };
    globalFault = g;
    try {
      Object.assign(g, await GLOBAL_KINDS[kind].inject(ctx, rng, rng));
    } catch (err) {
      g.outcome = 'inject-failed';
      g.error = err.message;
      globalFault = null;
      globalPending = false;
      faults.push(g);
      log(`global: ${kind} could not be injected: ${err.message}`);
      return;
    }
    log(`global: ${kind}: ${g.detail}`);
    if (g.affectsSessions) {
      // Every linked session goes down with the service, or (a cluster part restarting) should
      // hold on; each is judged as its own fault, while the part comes back.
      const part = g.done?.then((r) => {
        clusterRestarts.push({ kind, component: g.clusterPart, at: new Date(g.at).toISOString(), ok: r.ok, backMs: r.backMs, said: r.said });
        log(`global: ${kind}: ${r.ok ? `back in ${r.backMs} ms: ${r.said}` : `NOT back: ${r.said}`}`);
      });
      await Promise.all([
        part,
        ...sessions.filter((s) => s.linked).map(async (s) => {
          const f = { kind, session: s.name, at: g.at, injectedMs: g.injectedMs, expect: 'reconnect', takesDown: g.takesDown, detail: g.detail };
          s.fault = f;
          injected.get(s.name).push({ from: f.at, to: f.at + f.injectedMs });
          await judge(s, f);
          if (f.takesDown) faultWindows.get(s.name).push({ from: f.at, to: f.backAt ?? Date.now() });
          s.fault = null;
          faults.push(f);
          log(`${s.name}: ${kind} → ${f.outcome}${f.recoveryMs != null ? ` in ${f.recoveryMs} ms` : ''}`);
          if (f.outcome !== 'reconnected') {
            s.linked = false;
            await link(s, `after ${kind}`).catch((err) => log(`${s.name}: re-link failed: ${err.message}`));
            excused.get(s.name).push({ from: f.at, to: Date.now() });
          }
        }),
      ]);
    } else {
      // A control-plane component: it must come back Ready, sessions must stay connected, and
      // (for a hub) every socket client must be connected again.
      const deadline = g.at + recoveryBound;
      const dropped = new Set();
      while (Date.now() < deadline) {
        await sleep(250);
        for (const s of sessions) if (s.linked && !connectedNow(s)) dropped.add(s.name);
        const pods = await kube.pods(cfg.systemNamespace, `app.kubernetes.io/component=${g.component}`).catch(() => []);
        const pod = pods.find((p) => p.metadata.name === g.pod);
        const ready = pod?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
        const restarted = (pod?.status?.containerStatuses ?? []).some((c) => c.state?.running && c.restartCount > 0 && Date.parse(c.state.running.startedAt) >= g.at - 1000);
        const clientsBack = g.component !== 'hub' || clients.connectedCount() === clients.count;
        if (ready && restarted && clientsBack) {
          g.recoveryMs = Date.now() - g.at;
          g.outcome = 'reconnected';
          break;
        }
      }
      g.outcome ??= 'not-recovered';
      g.sessionsDropped = [...dropped];
      g.session = null;
      faults.push(g);
      log(`global: ${kind} → ${g.outcome}${g.recoveryMs != null ? ` in ${g.recoveryMs} ms` : ''}; sessions that dropped: ${g.sessionsDropped.length}`);
    }
    globalFault = null;
    globalPending = false;
  }

  const sessionKinds = cfg.faults.filter((k) => SESSION_KINDS[k]);
  const globalKinds = cfg.faults.filter((k) => GLOBAL_KINDS[k]);
  const unknown = cfg.faults.filter((k) => !SESSION_KINDS[k] && !GLOBAL_KINDS[k]);
  if (unknown.length) throw new Error(`unknown fault kinds: ${unknown.join(', ')}`);
  const endAt = Date.now() + cfg.minutes * 60_000;
  log(`faults for ${cfg.minutes} min, seed ${cfg.seed}: ${cfg.faults.join(', ')} (${uptimeLine()})`);
  const sessionLane = async (s) => {
    const rng = laneRng(cfg.seed, s.name);
    const nextKind = deck(rng, sessionKinds);
    // Spread the lanes' first faults over the first gap.
    await sleep(between(rng, 0, cfg.gapSecs[1]) * 1000);
    while (Date.now() < endAt && sessionKinds.length) {
      while ((globalFault || globalPending) && Date.now() < endAt) await sleep(500);
      if (Date.now() >= endAt) break;
      await sessionFault(s, nextKind());
      await sleep(between(rng, cfg.gapSecs[0], cfg.gapSecs[1]) * 1000);
    }
  };
  const globalLane = async () => {
    const rng = laneRng(cfg.seed, 'global');
    const nextKind = deck(rng, globalKinds);
    let drawn = 0;
    while (Date.now() < endAt && globalKinds.length) {
      const gap = between(rng, cfg.globalGapSecs[0], cfg.globalGapSecs[1]) * 1000;
      await sleep(globalGapMs(gap, endAt - Date.now(), globalKinds.length - drawn));
      if (Date.now() >= endAt) break;
      drawn += 1;
      await globalFaultRun(nextKind(), rng);
    }
  };
  try {
    await Promise.all([...sessions.map(sessionLane), globalLane()]);

    // ---- the end: everything settles, then every view must equal the CR and the CR the fake ----
    log(`faults done (${faults.length}); settling (${uptimeLine()})`);
    await lib.waitUntil('every session connected again', () => sessions.every(connectedNow), 180_000, 500).catch((e) => log(e.message));
    const settleDeadline = Date.now() + 30_000;
    while (Date.now() < settleDeadline && (clients.mismatches().length || (browser && (await browser.mismatches()).length))) await sleep(1000);
    await sampleMemory().catch(() => {});
    copyLogs();
  } finally {
    for (const t of timers) clearInterval(t);
  }
  const end = Date.now();
  const crVsFake = sessions
    .map((s) => ({ session: s.name, cr: cr.get(s.name)?.status ?? null, crPhone: cr.get(s.name)?.phoneNumber ?? null, fakeConnected: Boolean(fake.get(s.phone)?.connected) }))
    .filter((x) => (x.cr === 'connected') !== x.fakeConnected || (x.cr === 'connected' && x.crPhone?.replace(/\D/g, '') !== sessions.find((s) => s.name === x.session).phone));
  const perSession = Object.fromEntries(
    sessions.map((s) => [s.name, { ...uptime(samples.get(s.name), { excused: excused.get(s.name), injected: injected.get(s.name), faults: faultWindows.get(s.name), end }), crSaidConnectedWhileDownMs: crLies.get(s.name), relinks: s.relinks }]),
  );
  const uptimes = Object.values(perSession);
  const minOf = (k) => Math.min(...uptimes.map((u) => u[k] ?? 1));
  const sessionFaults = faults.filter((f) => f.session);
  const mem = {};
  for (const [k, series] of memory) mem[k] = memoryGrowth(series);
  const figures = {
    startedAt: new Date(started).toISOString(),
    durationMin: Math.round(((end - started) / 60_000) * 10) / 10,
    config: { sessions: cfg.sessions, clients: cfg.clients, browser: cfg.browser, minutes: cfg.minutes, seed: cfg.seed, faults: cfg.faults, recoverySecs: cfg.recoverySecs, gapSecs: cfg.gapSecs, globalGapSecs: cfg.globalGapSecs },
    initialLinkMs: describe(linkMs),
    uptime: { minWholeRun: minOf('wholeRun'), minOutsideInjected: minOf('outsideInjected'), minOutsideFaults: minOf('outsideFaults'), perSession },
    lostLogins: sessionFaults.filter((f) => f.lostLogin).length,
    unlinkLoops: faults.filter((f) => f.outcome === 'looped').length,
    faultsInjected: faults.length,
    autoReconnectRate: (() => {
      const should = faults.filter((f) => f.expect === 'reconnect' && f.outcome !== 'inject-failed');
      return should.length ? should.filter((f) => f.outcome === 'reconnected').length / should.length : null;
    })(),
    byKind: summarizeFaults(faults.filter((f) => f.outcome !== 'inject-failed')),
    podDeleteCrLeftConnectedMs: describe(faults.filter((f) => f.kind === 'pod-delete' && f.crLeftConnectedAfterMs != null).map((f) => f.crLeftConnectedAfterMs)),
    clusterRestarts,
    injectFailures: faults.filter((f) => f.outcome === 'inject-failed').map((f) => ({ kind: f.kind, session: f.session, error: f.error })),
    socketClients: clients.figures(),
    browser: browser ? await browser.figures() : null,
    crVsFakeAtEnd: crVsFake,
    rest,
    memory: mem,
    load: uptimeLine(),
    faults: faults.map(({ at, ...f }) => ({ at: new Date(at).toISOString(), ...f })),
  };
  return {
    figures,
    async close() {
      stopWatch();
      clients?.close();
      await browser?.close().catch(() => {});
      if (cfg.deleteSessions) {
        try {
          kube.kubectl(['delete', 'whatsappsessions', ...sessions.map((s) => s.name), '-n', cfg.namespace, '--timeout=120s']);
        } catch (err) {
          log(`deleting sessions: ${err.message}`);
        }
      }
      kube.stop();
    },
  };
}
