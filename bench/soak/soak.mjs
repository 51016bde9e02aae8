#!/usr/bin/env node
// The soak's command-line side (bench/soak/run.sh starts it with the installed demo's
// demo.env in the environment): reads the SOAK_* settings, runs tests/e2e/soak/engine.mjs,
// scans the containers' logs, prints the figures and writes them with the command to
// bench/results/ (SOAK_OUT).
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { soak } from '../../tests/e2e/soak/engine.mjs';
import { ALL_KINDS } from '../../tests/e2e/soak/faults.mjs';
import { scanLogs } from '../../tests/e2e/soak/logscan.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const need = (k) => {
  if (!process.env[k]) throw new Error(`${k} is not set: run bench/soak/run.sh`);
  return process.env[k];
};
const num = (k, d) => Number(process.env[k] ?? d);
const range = (k, d) => (process.env[k] ?? d).split('-').map(Number);
const artifacts = resolve(process.env.SOAK_ARTIFACTS ?? join(here, 'artifacts'));
rmSync(artifacts, { recursive: true, force: true });
mkdirSync(artifacts, { recursive: true });
// lib.mjs (the e2e tests' browser helpers) reads these.
process.env.E2E_URL = need('HUB_URL');
process.env.E2E_ARTIFACTS = artifacts;

const cfg = {
  kubeconfig: need('KUBECONFIG'),
  hubUrl: need('HUB_URL'),
  fakeUrl: need('FAKE_WHATSAPP_URL'),
  namespace: need('DEMO_NAMESPACE'),
  systemNamespace: process.env.SOAK_SYSTEM_NAMESPACE ?? 'whatsapp-system',
  tenant: need('DEMO_NAMESPACE'),
  user: need('DEMO_USER'),
  password: need('DEMO_PASSWORD'),
  prefix: 'soak',
  phoneBase: 10000,
  sessions: num('SOAK_SESSIONS', 10),
  clients: num('SOAK_CLIENTS', 500),
  browser: process.env.SOAK_BROWSER !== '0',
  minutes: num('SOAK_MINUTES', 30),
  seed: num('SOAK_SEED', 1),
  faults: (process.env.SOAK_FAULTS ?? ALL_KINDS.join(',')).split(',').map((s) => s.trim()).filter(Boolean),
  // Between two faults of one session, and between two global faults (seconds).
  gapSecs: range('SOAK_GAP_SECS', '20-60'),
  globalGapSecs: range('SOAK_GLOBAL_GAP_SECS', '90-180'),
  offlineSecs: range('SOAK_OFFLINE_SECS', '30-90'),
  recoverySecs: num('SOAK_RECOVERY_SECS', 180),
  loggedOutHoldSecs: num('SOAK_LOGGED_OUT_HOLD_SECS', 15),
  // Above the session container's limit (SOAK_SESSION_MEMORY) with Chromium's own use added.
  oomMb: num('SOAK_OOM_MB', 1024),
  linkParallel: num('SOAK_LINK_PARALLEL', 3),
  memoryEverySecs: num('SOAK_MEMORY_EVERY_SECS', 30),
  nodeLogDir: process.env.SOAK_NODE_LOG_DIR,
  // The cluster kinds (apiserver-restart, …) run `devcluster restart` on this state dir.
  devclusterStateDir: process.env.SOAK_DEVCLUSTER_STATE_DIR,
  devclusterBin: process.env.SOAK_DEVCLUSTER_BIN,
  artifacts,
  deleteSessions: false,
};

const run = await soak(cfg);
const { figures } = run;
await run.close();
figures.command = `SOAK_MINUTES=${cfg.minutes} SOAK_SESSIONS=${cfg.sessions} SOAK_CLIENTS=${cfg.clients} SOAK_SEED=${cfg.seed}${process.env.SOAK_FAULTS ? ` SOAK_FAULTS=${process.env.SOAK_FAULTS}` : ''} bench/soak/run.sh`;
try {
  figures.warnAndErrorLogLines = scanLogs(join(artifacts, 'pod-logs'));
} catch (err) {
  figures.warnAndErrorLogLines = `not scanned: ${err.message}`;
}
const out = resolve(process.env.SOAK_OUT ?? join(here, '../results/soak.json'));
writeFileSync(out, `${JSON.stringify(figures, null, 1)}\n`);
const pct = (x) => (x == null ? 'n/a' : `${(x * 100).toFixed(3)} %`);
console.log(`soak: ${figures.durationMin} min, ${cfg.sessions} sessions, ${cfg.clients} socket clients, seed ${cfg.seed}`);
console.log(`  faults ${figures.faultsInjected}; lost logins ${figures.lostLogins}; unlink loops ${figures.unlinkLoops}; auto-reconnect ${pct(figures.autoReconnectRate)}`);
console.log(`  uptime (min over sessions): whole run ${pct(figures.uptime.minWholeRun)}, outside injected outages ${pct(figures.uptime.minOutsideInjected)}, outside fault windows ${pct(figures.uptime.minOutsideFaults)}`);
for (const [kind, k] of Object.entries(figures.byKind)) {
  console.log(`  ${kind.padEnd(15)} ${k.injected} injected, ${k.reconnected} reconnected, ${k.expectedEnd} expected end, ${k.failed} failed; recovery p50 ${k.recoveryMs.p50} p99 ${k.recoveryMs.p99} max ${k.recoveryMs.max} ms`);
}
for (const r of figures.clusterRestarts) console.log(`  ${r.kind.padEnd(18)} ${r.ok ? `back in ${r.backMs} ms` : `NOT back: ${r.said}`}`);
console.log(`  socket clients: final mismatches ${figures.socketClients.finalMismatches}, lag p50/p99/max ${figures.socketClients.viewLagMs.p50}/${figures.socketClients.viewLagMs.p99}/${figures.socketClients.viewLagMs.max} ms, reconnects ${figures.socketClients.reconnects}`);
if (figures.browser) console.log(`  browser: final mismatches ${figures.browser.finalMismatches}, lag p50/p99/max ${figures.browser.viewLagMs.p50}/${figures.browser.viewLagMs.p99}/${figures.browser.viewLagMs.max} ms`);
console.log(`  CR ≠ fake at the end: ${figures.crVsFakeAtEnd.length}; REST during faults: ${JSON.stringify(figures.rest.during)}`);
console.log(`  written to ${out}`);
process.exit(0);
