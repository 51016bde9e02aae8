// Figures (run by `npm run figures` through harness.mjs): for 5 sessions, the time from clicking
// "Conectar WhatsApp" to the QR on screen, and from the scan to "Conectado"; p50 of each.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { env, launchBrowser, login, newPage, openSession, readQrFromScreen, scan, waitForStatus } from './tests/lib.mjs';

const p50 = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const browser = await launchBrowser();
const clickToQr = [];
const scanToConnected = [];
try {
  const page = await newPage(browser);
  await login(page, 'fiona');
  for (let n = 1; n <= 5; n++) {
    await openSession(page, `figures-${n}`);
    const button = page.getByRole('button', { name: 'Conectar WhatsApp' });
    await button.waitFor();
    const t0 = performance.now();
    await button.click();
    await page.getByTestId('qr-code').waitFor({ state: 'visible', timeout: 120_000 });
    const t1 = performance.now();
    const qr = await readQrFromScreen(page);
    const t2 = performance.now();
    await scan(qr, `54911000001${n}0`);
    await waitForStatus(page, `Conectado (+54911000001${n}0)`);
    const t3 = performance.now();
    clickToQr.push(Math.round(t1 - t0));
    scanToConnected.push(Math.round(t3 - t2));
    console.error(`[figures] session ${n}: click→QR ${Math.round(t1 - t0)} ms, scan→Conectado ${Math.round(t3 - t2)} ms`);
  }
} finally {
  await browser.close();
}
const figures = {
  clickToQrMs: { samples: clickToQr, p50: p50(clickToQr) },
  scanToConnectedMs: { samples: scanToConnected, p50: p50(scanToConnected) },
};
writeFileSync(join(env.artifacts, 'figures.json'), JSON.stringify(figures, null, 2));
