// Figures (run by `npm run figures` through harness.mjs): for $FIGURES_SAMPLES sessions (10), the
// time from clicking "Conectar WhatsApp" to the QR on screen, and from the scan to "Conectado";
// p50 of each. The scan → "Conectado" time is also split where the CR says `connected` (a
// `kubectl get -w` of the session, stamped as its lines arrive): scan → CR connected is the fake
// phone's pairing (PAIRING → CONNECTED, FAKE_WHATSAPP_PAIRING_SECS, 1 s by default) plus the
// agent; CR connected → painted is the hub's watch, its push and the render.
//
// Start and stop points are taken where the user would notice them, not around Playwright's own
// work:
// - click: a capturing listener records Date.now() when the click event is dispatched in the page
//   (Playwright's actionability checks before the click are not counted);
// - QR on screen: the first animation frame in which the <img data-testid=qr-code> is decoded
//   (complete, naturalWidth > 0) and laid out with a non-zero size;
// - scan: Date.now() in this process right before the phone's scan request to the fake;
// - "Conectado": the first animation frame in which the status indicator reads
//   "Conectado (+<phone>)".
// Page and test share the machine clock, so the differences are comparable. Each session is
// stopped (and its pod gone) before the next one starts, so later samples do not pay for the
// Chromium of earlier ones on a small machine.
import { execSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { env, kubectl, launchBrowser, login, newPage, openSession, readQrFromScreen, scan, waitUntil } from './tests/lib.mjs';

const SAMPLES = Number(process.env.FIGURES_SAMPLES ?? 10);
// The fake's PAIRING → CONNECTED time (its --pairing-secs; the harness passes the environment on).
const PAIRING_SECS = Number(process.env.FAKE_WHATSAPP_PAIRING_SECS ?? 1);

/** Watches the session's CR; `at(state)` resolves with Date.now() when a line reads `state`. */
function watchCr(id) {
  const child = spawn('kubectl', ['get', 'whatsappsessions', id, '-n', env.namespace, '--watch', '-o', 'jsonpath={.status.status}{"\\n"}'], {
    env: { ...process.env, KUBECONFIG: process.env.E2E_KUBECONFIG },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const seen = new Map();
  const waiters = [];
  let buf = '';
  child.stdout.on('data', (chunk) => {
    const now = Date.now();
    buf += chunk.toString();
    const lines = buf.split('\n');
    buf = lines.pop();
    for (const line of lines) if (!seen.has(line.trim())) seen.set(line.trim(), now);
    for (const w of waiters) if (seen.has(w.state)) w.resolve(seen.get(w.state));
  });
  return {
    at: (state) => (seen.has(state) ? Promise.resolve(seen.get(state)) : new Promise((resolve) => waiters.push({ state, resolve }))),
    stop: () => child.kill(),
  };
}

const p50 = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const load = () => execSync('uptime', { encoding: 'utf8' }).trim();

// Each resolves with the page's Date.now() in the first animation frame where its condition holds.
async function qrPaintedAt(page) {
  const handle = await page.waitForFunction(
    () => {
      const el = document.querySelector('[data-testid=qr-code]');
      if (!(el instanceof HTMLImageElement) || !el.complete || el.naturalWidth === 0) return null;
      const r = el.getBoundingClientRect();
      return r.width > 0 && r.height > 0 ? Date.now() : null;
    },
    null,
    { polling: 'raf', timeout: 120_000 },
  );
  return handle.jsonValue();
}

async function statusReadsAt(page, text) {
  const handle = await page.waitForFunction(
    (want) => (document.querySelector('[data-testid=session-status]')?.textContent?.trim() === want ? Date.now() : null),
    text,
    { polling: 'raf', timeout: 60_000 },
  );
  return handle.jsonValue();
}

const browser = await launchBrowser();
const samples = [];
try {
  const page = await newPage(browser);
  await login(page, 'fiona');
  for (let n = 1; n <= SAMPLES; n++) {
    const id = `figures-${n}`;
    const phone = `54911000001${n}0`;
    await openSession(page, id);
    const button = page.getByRole('button', { name: 'Conectar WhatsApp' });
    await button.waitFor();
    await page.evaluate(() => {
      window.__clickAt = null;
      document.addEventListener('click', () => { window.__clickAt ??= Date.now(); }, { capture: true, once: true });
    });
    const loadBefore = load();
    await button.click();
    const qrAt = await qrPaintedAt(page);
    const clickAt = await page.evaluate(() => window.__clickAt);
    if (typeof clickAt !== 'number') throw new Error('the click was not seen by the page');
    const qr = await readQrFromScreen(page);
    const cr = watchCr(id);
    // The watch's first line (the current state, qr_required) says it is established.
    await cr.at('qr_required');
    const scanAt = Date.now();
    await scan(qr, phone);
    const connectedAt = await statusReadsAt(page, `Conectado (+${phone})`);
    const crConnectedAt = await cr.at('connected');
    cr.stop();
    const sample = {
      session: id,
      clickToQrMs: qrAt - clickAt,
      scanToConnectedMs: connectedAt - scanAt,
      scanToCrConnectedMs: crConnectedAt - scanAt,
      crConnectedToPaintedMs: connectedAt - crConnectedAt,
      load: loadBefore,
    };
    samples.push(sample);
    console.error(
      `[figures] ${id}: click→QR ${sample.clickToQrMs} ms, scan→Conectado ${sample.scanToConnectedMs} ms ` +
        `(scan→CR connected ${sample.scanToCrConnectedMs} ms incl. the fake's ${PAIRING_SECS} s pairing, CR→painted ${sample.crConnectedToPaintedMs} ms) (${loadBefore})`,
    );

    // Stop this session and wait for its pod to go before the next sample.
    kubectl(['patch', 'whatsappsessions', id, '-n', env.namespace, '--type=merge', '-p', '{"spec":{"desiredState":"Stopped"}}']);
    // Gone entirely, not just terminating: a terminating pod's Chromium still uses CPU.
    await waitUntil(`${id}'s pod to be gone`, () => kubectl(['get', 'pods', '-n', env.namespace, '-l', `app.kubernetes.io/instance=${id}`, '-o', 'name']).trim() === '', 120_000, 500);
  }
} finally {
  await browser.close();
}
const clickToQr = samples.map((s) => s.clickToQrMs);
const scanToConnected = samples.map((s) => s.scanToConnectedMs);
const part = (key) => ({ samples: samples.map((s) => s[key]), p50: p50(samples.map((s) => s[key])) });
const figures = {
  clickToQrMs: { samples: clickToQr, p50: p50(clickToQr) },
  scanToConnectedMs: { samples: scanToConnected, p50: p50(scanToConnected) },
  scanToCrConnectedMs: part('scanToCrConnectedMs'),
  crConnectedToPaintedMs: part('crConnectedToPaintedMs'),
  fakePairingSecs: PAIRING_SECS,
  samples,
  loadAfter: load(),
};
writeFileSync(join(env.artifacts, 'figures.json'), JSON.stringify(figures, null, 2));
