// A user of tenant A never sees tenant B's sessions: not in the UI, not over REST, not over
// socket.io — not even that they exist (another tenant's session is answered as no session).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { io } from 'socket.io-client';
import { env, launchBrowser, login, newPage, restGet, restLogin, shot } from './lib.mjs';

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

const ids = (body) => (Array.isArray(body) ? body : body.sessions).map((s) => s.instance_id).sort();

test('the UI lists only the own tenant and refuses another tenant\'s session', async () => {
  const page = await newPage(browser);
  await login(page, 'bruno');
  // bruno has one session: the app opens it.
  await page.getByRole('heading', { name: 'globex-main' }).waitFor();
  await page.goto(`${env.url}#/whatsapp?all`);
  await page.getByTestId('session-item').first().waitFor();
  assert.deepEqual(await page.getByTestId('session-item').evaluateAll((els) => els.map((e) => e.getAttribute('data-instance'))), ['globex-main']);
  assert.doesNotMatch(await page.textContent('body'), /acme|initech/);
  await shot(page, 'tenants', 'bruno-list');

  // A refused session shows no status indicator (220fb3a), only the error: open it by its route.
  await page.goto(`${env.url}#/whatsapp/acme-main`);
  const alert = page.getByTestId('connection-error');
  await alert.waitFor();
  assert.equal(await alert.getAttribute('data-code'), 'NOT_FOUND');
  assert.match(await alert.textContent(), /no existe/);
  assert.equal(await page.getByTestId('qr-code').count(), 0);
  await shot(page, 'tenants', 'bruno-not-found');
});

test('REST answers each user with its own tenant only', async () => {
  const bruno = await restLogin('bruno');
  const ana = await restLogin('ana');
  assert.deepEqual(ids((await restGet(bruno, '/api/session-manager/sessions')).body), ['globex-main']);
  assert.deepEqual(ids((await restGet(ana, '/api/session-manager/sessions')).body), ['acme-main', 'acme-second']);
  assert.equal((await restGet(bruno, '/api/session-manager/sessions/acme-main')).status, 404);
  const post = await fetch(new URL('api/session-manager/sessions/acme-main/qr', env.url), {
    method: 'POST',
    headers: { Authorization: `Bearer ${bruno}`, 'Content-Type': 'application/json' },
    body: '{}',
  });
  assert.equal(post.status, 404);
});

test('socket.io refuses a subscription to another tenant\'s session', async () => {
  const bruno = await restLogin('bruno');
  const socket = io(env.url, { path: '/socket.io', auth: { token: bruno }, transports: ['websocket'], reconnection: false });
  try {
    const events = [];
    socket.onAny((name, payload) => events.push([name, payload]));
    await new Promise((res, rej) => {
      socket.once('connect', res);
      socket.once('connect_error', rej);
    });
    socket.emit('authenticate', { token: bruno });
    const error = await new Promise((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`no connection-error; got ${JSON.stringify(events)}`)), 10_000);
      socket.on('connection-error', (e) => {
        clearTimeout(timer);
        res(e);
      });
      socket.emit('subscribe-session', { instance_id: 'acme-main' });
    });
    assert.equal(error.error, 'NOT_FOUND');
    assert.ok(!events.some(([name, p]) => (name === 'session-status' || name === 'qr-code') && p?.instance_id === 'acme-main'));
  } finally {
    socket.close();
  }
});
