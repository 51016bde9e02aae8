// The hub restarts while the page is open: the banner appears, then the page recovers by itself
// (no reload) and live updates work again.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { hubControl, launchBrowser, login, newPage, readQrFromScreen, scan, shot, waitForStatus } from './lib.mjs';

const PHONE = '5491100000003';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  // Never leave the hub down for whoever runs next.
  await hubControl('start').catch(() => {});
});

test('hub restart: banner, then recovery without a reload', async () => {
  const page = await newPage(browser);
  await login(page, 'bruno');
  await page.getByRole('heading', { name: 'globex-main' }).waitFor();
  await waitForStatus(page, 'Desconectado');
  // A marker that a reload would erase.
  await page.evaluate(() => {
    window.__e2eNoReload = true;
  });
  const banner = page.getByText('Servicio temporalmente no disponible');
  assert.equal(await banner.count(), 0);

  await hubControl('stop');
  await banner.waitFor({ timeout: 30_000 });
  await shot(page, 'hub-restart', 'banner');

  await hubControl('start');
  await banner.waitFor({ state: 'detached', timeout: 60_000 });
  // The socket is back too (the "live updates interrupted" note is gone).
  await page.getByText(/Actualizaciones en directo interrumpidas/).waitFor({ state: 'detached', timeout: 60_000 });
  assert.equal(await page.evaluate(() => window.__e2eNoReload), true, 'the page was not reloaded');
  await shot(page, 'hub-restart', 'recovered');

  // Live again: the whole link works on the same page.
  await page.getByRole('button', { name: 'Conectar WhatsApp' }).click();
  await scan(await readQrFromScreen(page), PHONE);
  await waitForStatus(page, `Conectado (+${PHONE})`);
  assert.equal(await page.evaluate(() => window.__e2eNoReload), true);
  await shot(page, 'hub-restart', 'connected');
});
