// Shared support of the browser tests: the environment the harness sets, Chromium, screenshots,
// reading the QR off the screen, the fake phone, kubectl and the harness control API.
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import jsQR from 'jsqr';
import { chromium } from 'playwright-core';
import { PNG } from 'pngjs';
import * as rest from '../rest.mjs';

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these tests through harness.mjs (npm test)`);
  return v;
}

export const env = {
  get url() {
    return need('E2E_URL');
  },
  get fakeUrl() {
    return need('E2E_FAKE_URL');
  },
  get namespace() {
    return need('E2E_NAMESPACE');
  },
  get controlUrl() {
    return need('E2E_CONTROL_URL');
  },
  password(user) {
    const p = JSON.parse(need('E2E_USERS'))[user];
    if (!p) throw new Error(`no password for ${user}`);
    return p;
  },
  get artifacts() {
    return need('E2E_ARTIFACTS');
  },
  get fakeTimings() {
    return JSON.parse(need('E2E_FAKE_TIMINGS'));
  },
};

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    // As root and on a closed network: no sandbox, no background connections to Google.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** A fresh browser profile; phone-sized by default, as most users link from a phone-sized screen. */
export async function newPage(browser, viewport = { width: 390, height: 844 }) {
  const context = await browser.newContext({ viewport, locale: 'es-AR' });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  return page;
}

let shotCounter = 0;
/** Saves a screenshot as artifacts/<test>-<nn>-<step>.png. */
export async function shot(page, test, step) {
  mkdirSync(env.artifacts, { recursive: true });
  shotCounter += 1;
  const file = join(env.artifacts, `${test}-${String(shotCounter).padStart(2, '0')}-${step}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

export async function login(page, username, password = env.password(username)) {
  await page.goto(env.url);
  await page.fill('[name=username]', username);
  await page.fill('[name=password]', password);
  await page.click('button[type=submit]');
  await page.getByRole('link', { name: 'WhatsApp' }).waitFor();
}

/** Opens a session page directly by its route. */
export async function openSession(page, instanceId) {
  await page.goto(`${env.url}#/whatsapp/${encodeURIComponent(instanceId)}`);
  await page.getByTestId('session-status').waitFor();
}

export const status = (page) => page.getByTestId('session-status');

/** Waits until the status indicator reads exactly `text` (a string or a RegExp). */
export async function waitForStatus(page, text, timeout = 60_000) {
  const re = typeof text === 'string' ? new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) : text;
  await page.getByTestId('session-status').filter({ hasText: re }).waitFor({ timeout });
}

/** Reads the QR the way a phone would: from the pixels on screen. */
export async function readQrFromScreen(page) {
  const img = page.getByTestId('qr-code');
  await img.waitFor({ state: 'visible' });
  // Wait for the image to be decoded and laid out before taking its picture.
  await page.waitForFunction(() => {
    const el = document.querySelector('[data-testid=qr-code]');
    return el instanceof HTMLImageElement && el.complete && el.naturalWidth > 0;
  });
  const png = PNG.sync.read(await img.screenshot());
  const code = jsQR(new Uint8ClampedArray(png.data), png.width, png.height);
  if (!code?.data) throw new Error('no QR code could be read from the screen');
  return code.data;
}

/** The phone scans `qr` (the fake WhatsApp's control API). */
export async function scan(qr, phone, pushName = 'E2E') {
  const res = await fetch(new URL('_fake/scan', env.fakeUrl), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ qr, phone, pushName }),
  });
  if (!res.ok) throw new Error(`scan answered ${res.status}: ${await res.text()}`);
}

export async function fakeDevices() {
  const res = await fetch(new URL('_fake/devices', env.fakeUrl));
  if (!res.ok) throw new Error(`devices answered ${res.status}`);
  return res.json();
}

export function kubectl(args) {
  const r = spawnSync('kubectl', args, { encoding: 'utf8', env: { ...process.env, KUBECONFIG: need('E2E_KUBECONFIG') }, timeout: 60_000 });
  if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** The session's pod as {name, uid, ready}, or null. */
export function sessionPod(instanceId) {
  const out = kubectl(['get', 'pods', '-n', env.namespace, '-l', `app.kubernetes.io/instance=${instanceId}`, '-o', 'json']);
  const pod = JSON.parse(out).items.find((p) => !p.metadata.deletionTimestamp);
  if (!pod) return null;
  const ready = (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
  return { name: pod.metadata.name, uid: pod.metadata.uid, ready };
}

export function sessionCr(instanceId) {
  return JSON.parse(kubectl(['get', 'whatsappsessions', instanceId, '-n', env.namespace, '-o', 'json']));
}

export async function hubControl(action) {
  const res = await fetch(`${env.controlUrl}/hub/${action}`, { method: 'POST' });
  if (!res.ok) throw new Error(`hub ${action}: ${res.status} ${await res.text()}`);
}

export { sleep, waitUntil } from '../wait.mjs';

export async function restLogin(username) {
  return rest.restLogin(env.url, username, env.password(username));
}

export async function restGet(token, path) {
  return rest.restGet(env.url, token, path);
}
