// A QR round that nobody scans ends with "QR expirado, genere uno nuevo"; "Regenerar QR" starts a
// new round whose QR works.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { env, launchBrowser, login, newPage, openSession, readQrFromScreen, scan, shot, waitForStatus } from './lib.mjs';

const SESSION = 'acme-second';
const PHONE = '5491100000002';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

test('QR expiry and "Regenerar QR"', async () => {
  const { first, next, max } = env.fakeTimings;
  const roundSecs = first + next * (max - 1);
  const page = await newPage(browser);
  await login(page, 'ana');
  await openSession(page, SESSION);
  await page.getByRole('button', { name: 'Conectar WhatsApp' }).click();
  const firstQr = await readQrFromScreen(page);
  await shot(page, 'expiry', 'qr');

  const expired = page.getByText('QR expirado, genere uno nuevo');
  await expired.waitFor({ timeout: (roundSecs + 30) * 1000 });
  assert.equal(await page.getByTestId('qr-code').count(), 0, 'the expired QR is no longer shown');
  await shot(page, 'expiry', 'expired');

  await page.getByRole('button', { name: 'Regenerar QR' }).click();
  const freshQr = await readQrFromScreen(page);
  assert.notEqual(freshQr.split(',')[0], firstQr.split(',')[0], 'a new QR ref');
  await shot(page, 'expiry', 'regenerated');
  await scan(freshQr, PHONE);
  await waitForStatus(page, `Conectado (+${PHONE})`);
  await shot(page, 'expiry', 'connected');
});
