// The main journey: link a session from the browser, survive a reload and a pod restart without
// a new QR, then log out.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  fakeDevices,
  launchBrowser,
  login,
  newPage,
  readQrFromScreen,
  scan,
  sessionCr,
  sessionPod,
  shot,
  kubectl,
  env,
  waitForStatus,
  waitUntil,
} from './lib.mjs';

const SESSION = 'acme-main';
const PHONE = '5491100000001';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

test('link from the browser, reload, pod restart, disconnect', async () => {
  const page = await newPage(browser);
  await login(page, 'ana');
  await shot(page, 'flow', 'list');
  // ana has two sessions: the list shows both, with their status.
  await page.getByTestId('session-item').nth(1).waitFor();
  assert.deepEqual(
    await page.getByTestId('session-item').evaluateAll((els) => els.map((e) => e.getAttribute('data-instance'))),
    ['acme-main', 'acme-second'],
  );
  await page.getByRole('link', { name: SESSION, exact: true }).click();
  await waitForStatus(page, 'Desconectado');
  await shot(page, 'flow', 'session-stopped');

  await page.getByRole('button', { name: 'Conectar WhatsApp' }).click();
  const qr = await readQrFromScreen(page);
  await shot(page, 'flow', 'qr');
  await waitForStatus(page, 'Esperando escaneo');
  assert.match(await page.getByTestId('qr-countdown').textContent(), /El código caduca en \d+ s/);

  await scan(qr, PHONE, 'Ana');
  await waitForStatus(page, `Conectado (+${PHONE})`);
  assert.equal(await page.getByTestId('qr-code').count(), 0, 'no QR once connected');
  await shot(page, 'flow', 'connected');

  await page.reload();
  await waitForStatus(page, `Conectado (+${PHONE})`);
  assert.equal(await page.getByTestId('qr-code').count(), 0, 'no QR after reload');
  await shot(page, 'flow', 'reloaded');

  // Delete the pod: the StatefulSet makes a new one, which restores the login from the PVC.
  const old = sessionPod(SESSION);
  assert.ok(old, 'the session has a pod');
  kubectl(['delete', 'pod', old.name, '-n', env.namespace, '--wait=false']);
  let qrSeen = false;
  const watchQr = setInterval(() => {
    page
      .getByTestId('qr-code')
      .count()
      .then((n) => {
        if (n > 0) qrSeen = true;
      })
      .catch(() => {});
  }, 200);
  try {
    await waitUntil('a new ready pod', () => {
      const now = sessionPod(SESSION);
      return now && now.uid !== old.uid && now.ready;
    }, 120_000, 500);
    await waitUntil('the agent to report connected again', () => sessionCr(SESSION).status?.status === 'connected', 120_000, 500);
    await waitForStatus(page, `Conectado (+${PHONE})`);
  } finally {
    clearInterval(watchQr);
  }
  assert.equal(qrSeen, false, 'no QR shown while the pod restarted');
  await shot(page, 'flow', 'after-pod-restart');

  await page.getByRole('button', { name: 'Desconectar' }).click();
  await waitForStatus(page, 'Desconectado', 60_000);
  await shot(page, 'flow', 'disconnected');
  await page.getByRole('button', { name: 'Conectar WhatsApp' }).waitFor();
  const devices = await fakeDevices();
  const list = Array.isArray(devices) ? devices : (devices.devices ?? []);
  assert.ok(!list.some((d) => d.phone === PHONE && d.connected), 'the phone no longer has a connected device');
});
