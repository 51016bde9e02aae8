// The original plan's own Playwright test, its steps unchanged: only the URL and the credentials
// come from the environment (E2E_URL, E2E_USER, E2E_PASSWORD). The plan scanned by hand; here the
// "phone" is the fake WhatsApp's control API, reading the QR from the screen.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launchBrowser, newPage, readQrFromScreen, scan, shot } from './lib.mjs';

const URL = process.env.E2E_URL;
const USER = process.env.E2E_USER;
const PASSWORD = process.env.E2E_PASSWORD;

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

test('WhatsApp connection flow (original plan)', async () => {
  assert.ok(URL && USER && PASSWORD, 'E2E_URL, E2E_USER and E2E_PASSWORD must be set');
  const page = await newPage(browser, { width: 1280, height: 800 });

  await page.goto(URL);
  await page.fill('[name=username]', USER);
  await page.fill('[name=password]', PASSWORD);
  await page.click('button[type=submit]');
  await page.click('text=WhatsApp');
  await page.click('button:has-text("Conectar")');
  await page.waitForSelector('[data-testid=qr-code]', { state: 'visible', timeout: 90_000 });
  await shot(page, 'plan', 'qr');

  await scan(await readQrFromScreen(page), '5491100000009');

  await page.waitForSelector('text=Conectado', { state: 'visible', timeout: 60_000 });
  await shot(page, 'plan', 'connected');
  // `text=Conectado` also matches "Desconectado"; make sure it is the linked state.
  assert.match(await page.getByTestId('session-status').textContent(), /^Conectado \(\+5491100000009\)$/);
});
