// Issue 28, item 8: the hub's security headers in a real browser. The whole journey (login →
// session → QR → connected) runs under the Content-Security-Policy with zero violations; the
// headers are on the page and on the API; the token is kept with the tab only; and a page of
// another origin cannot frame the UI.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';
import { env, launchBrowser, login, readQrFromScreen, restLogin, scan, shot, waitForStatus } from './lib.mjs';

const SESSION = 'secure-main';
const PHONE = '5491100000028';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** A page whose every CSP violation (and any script error, e.g. a Trusted Types refusal) is recorded. */
async function watchedPage() {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, locale: 'es-AR' });
  const violations = [];
  // A binding survives navigations and reloads, as does the init script that reports to it.
  await context.exposeBinding('__cspViolation', (_source, v) => violations.push(v));
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolation({ directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample, source: e.sourceFile });
    });
  });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  page.on('console', (m) => {
    if (/Content Security Policy|Trusted Type/i.test(m.text())) violations.push({ console: m.text() });
  });
  page.on('pageerror', (err) => violations.push({ pageerror: String(err) }));
  return { context, page, violations };
}

test('login → session → QR → connected under the CSP with no violation; headers on page and API', async () => {
  const { context, page, violations } = await watchedPage();
  const response = await page.goto(env.url);
  const h = response.headers();
  const csp = h['content-security-policy'] ?? '';
  for (const directive of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "require-trusted-types-for 'script'"]) {
    assert.ok(csp.includes(directive), `the page's CSP lacks ${directive}: ${csp}`);
  }
  assert.ok(!/unsafe-inline|unsafe-eval/.test(csp), `the CSP allows inline or eval: ${csp}`);
  assert.equal(h['x-content-type-options'], 'nosniff');
  assert.equal(h['x-frame-options'], 'DENY');
  assert.equal(h['referrer-policy'], 'no-referrer');

  await login(page, 'sol');
  // sol has one session: the app goes straight to it.
  await page.getByRole('heading', { name: SESSION }).waitFor();
  await waitForStatus(page, 'Desconectado');
  await page.getByRole('button', { name: 'Conectar WhatsApp' }).click();
  const qr = await readQrFromScreen(page);
  await waitForStatus(page, 'Esperando escaneo');
  await shot(page, 'security', 'qr');
  await scan(qr, PHONE, 'Sol');
  await waitForStatus(page, `Conectado (+${PHONE})`);
  // The live updates came over socket.io (connect-src 'self' covers ws: to the same origin).
  assert.equal(await page.getByText('Servicio temporalmente no disponible').count(), 0);

  // The token lives with the tab (sessionStorage): a reload keeps the user signed in, and
  // nothing is left in localStorage.
  const stored = await page.evaluate(() => ({ session: sessionStorage.getItem('wa.auth'), local: localStorage.getItem('wa.auth') }));
  assert.ok(stored.session && JSON.parse(stored.session).token, 'the token is in sessionStorage');
  assert.equal(stored.local, null, 'no token in localStorage');
  // A reload revalidates index.html: the hub's 304 must leave the page its policy.
  await page.reload();
  await waitForStatus(page, `Conectado (+${PHONE})`);
  await shot(page, 'security', 'reloaded');

  assert.deepEqual(violations, [], `CSP violations: ${JSON.stringify(violations, null, 1)}`);
  await context.close();

  // The API's answers: nosniff, an empty policy, not cached.
  const token = await restLogin('sol');
  const api = await fetch(new URL('api/session-manager/sessions', env.url), { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(api.status, 200);
  assert.equal(api.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(api.headers.get('content-security-policy'), "default-src 'none'; frame-ancestors 'none'");
  assert.equal(api.headers.get('cache-control'), 'no-store');
});

test('a page of another origin cannot frame the UI', async () => {
  // Another origin: the same host on another port. Its page frames the hub's UI and, as a
  // control, a page of its own origin with the same login field.
  const hub = new URL(env.url);
  const other = createServer((req, res) => {
    res.setHeader('Content-Type', 'text/html');
    if (req.url === '/own') {
      res.end('<!doctype html><input name="username">');
    } else {
      res.end(`<!doctype html><iframe id="hub" src="${hub.href}"></iframe><iframe id="own" src="/own"></iframe>`);
    }
  });
  await new Promise((r) => other.listen(0, hub.hostname, r));
  const { context, page, violations } = await watchedPage();
  try {
    const origin = `http://${hub.hostname}:${other.address().port}`;
    await page.goto(`${origin}/`, { waitUntil: 'load' });
    const frameOf = async (id) => (await page.locator(`#${id}`).elementHandle()).contentFrame();
    const own = await frameOf('own');
    assert.equal(await own.locator('[name=username]').count(), 1, 'control: a frame that may load shows its field');
    const framed = await frameOf('hub');
    // Blocked by frame-ancestors: Chromium puts an error page in the frame, never the UI.
    assert.notEqual(framed.url(), hub.href, 'the UI loaded inside a frame of another origin');
    assert.equal(await framed.locator('[name=username]').count(), 0, 'the login form rendered inside the frame');
    assert.ok(
      violations.some((v) => /frame-ancestors/.test(v.console ?? v.directive ?? '')),
      `no frame-ancestors refusal was reported: ${JSON.stringify(violations)}`,
    );
  } finally {
    await context.close();
    other.close();
  }
});
