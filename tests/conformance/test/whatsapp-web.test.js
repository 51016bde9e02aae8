'use strict';
// Conformance: the real whatsapp-web.js from npm (the version pinned in package-lock.json,
// printed below), unmodified, drives Debian's Chromium against the fake WhatsApp Web and gets
// every event an application relies on. Chromium resolves every host name to a local TLS front
// of the fake (https://web.whatsapp.com/ is hard-coded in the library), so nothing leaves the
// machine; the front's records prove that only web.whatsapp.com was asked for.

const assert = require('node:assert/strict');
const dns = require('node:dns');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { describe, it, before, after } = require('node:test');

// This process may resolve nothing but local names: any connection the library (or its
// dependencies) would open to the internet fails here and is recorded.
const lookups = [];
const localLookup = dns.lookup;
dns.lookup = function (hostname, ...rest) {
  lookups.push(hostname);
  if (hostname !== 'localhost' && !/^127\./.test(hostname)) {
    const cb = rest[rest.length - 1];
    const err = Object.assign(new Error(`conformance test: no lookup of ${hostname}`), { code: 'ENOTFOUND' });
    return process.nextTick(cb, err);
  }
  return localLookup.call(this, hostname, ...rest);
};

const { Client, LocalAuth } = require('whatsapp-web.js');
const WWEBJS_VERSION = require('whatsapp-web.js/package.json').version;
const { CHROMIUM, startFake, startTlsFront, waitFor, recordEvents } = require('./support');

// The page generation the newest library reads (docs/fake-whatsapp.md, "Generations").
const GENERATION = process.env.FAKE_WHATSAPP_GENERATION || '2026-04';
const PHONE = '5491122334455';
const PAIRING_PHONE = '5491166778899';
const EVENTS = ['qr', 'code', 'authenticated', 'auth_failure', 'ready', 'change_state', 'disconnected', 'loading_screen'];

describe(`whatsapp-web.js ${WWEBJS_VERSION} (npm, unmodified) against the fake WhatsApp Web, generation ${GENERATION}`, () => {
  let fake, front, dir;

  const newClient = (options) => {
    const client = new Client({
      webVersionCache: { type: 'none' },
      takeoverOnConflict: true,
      takeoverTimeoutMs: 300,
      puppeteer: {
        executablePath: CHROMIUM,
        headless: true,
        acceptInsecureCerts: true,
        args: [
          '--no-sandbox',
          // Every host name, whatever the scheme and port, goes to the front: nothing else is
          // reachable.
          `--host-resolver-rules=MAP * 127.0.0.1:${front.port}`,
          '--ignore-certificate-errors',
          // Fewer background requests of Chromium's own (each would get a 404 from the front).
          '--disable-component-update',
          '--disable-features=NetworkTimeServiceQuerying',
        ],
      },
      ...options,
    });
    return client;
  };
  const pages = () => fake.get('/_fake/pages');
  const devices = () => fake.get('/_fake/devices');

  before(async () => {
    assert.ok(CHROMIUM, 'Debian Chromium (/usr/lib/chromium/chromium) is installed');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wwjs-conformance-'));
    fake = await startFake([
      '--generation', GENERATION,
      '--first-qr-secs', '4', '--next-qr-secs', '2', '--max-qrs', '6',
      '--opening-secs', '0.3', '--pairing-secs', '0.3', '--sync-secs', '1',
    ]);
    front = await startTlsFront(fake.port, dir);
  });

  after(async () => {
    if (front) await front.stop();
    if (fake) await fake.stop();
    // A Chromium the library closes on its own (after an unlink) may still be flushing its
    // profile for a moment.
    if (dir) {
      await waitFor(`${dir} removed`, () => {
        try { fs.rmSync(dir, { recursive: true, force: true }); return true; } catch { return false; }
      }, 10_000);
    }
  });

  it('shows the fake\'s QR, rotating; a scan gives authenticated, loading progress and ready with client.info', async (t) => {
    const client = newClient({ authStrategy: new LocalAuth({ clientId: 'qr', dataPath: dir }) });
    const ev = recordEvents(client, EVENTS);
    // A failed step must not leave its Chromium holding the profile for the next test.
    t.after(() => client.destroy().catch(() => {}));
    await client.initialize();

    const first = await waitFor('the first qr', () => ev.of('qr')[0]);
    const qr1 = first.args[0];
    assert.equal(qr1.split(',').length, 5, `ref,noiseKey,identityKey,advSecret,platform: ${qr1}`);
    assert.ok(!qr1.includes('undefined'), qr1);
    assert.ok((await pages()).some((p) => p.qr === qr1), 'the qr event is the QR the fake shows');

    const second = await waitFor('a rotated qr', () => ev.of('qr')[1], 10_000);
    const qr2 = second.args[0];
    assert.notEqual(qr2, qr1);
    assert.equal(qr2.split(',').slice(1).join(), qr1.split(',').slice(1).join(), 'only the ref rotates');
    assert.ok((await pages()).some((p) => p.qr === qr2));

    const scanned = await fake.post('/_fake/scan', { qr: qr2, phone: PHONE, pushName: 'Ana' });
    assert.equal(scanned.status, 200, JSON.stringify(scanned.body));
    await waitFor('ready', () => ev.of('ready')[0]);

    assert.equal(ev.of('authenticated').length, 1);
    assert.equal(ev.of('auth_failure').length, 0);
    assert.deepEqual(ev.of('qr').map((e) => e.args[0]).filter((q) => !q.includes(',') || q.startsWith('undefined')), [],
      'no QR is announced after the scan');
    const names = ev.map((e) => e.name);
    assert.ok(names.indexOf('authenticated') < names.indexOf('ready'));
    const progress = ev.of('loading_screen').map((e) => e.args[0]);
    assert.ok(progress.includes(100), `loading_screen reached 100: ${JSON.stringify(progress)}`);

    assert.equal(client.info.wid.user, PHONE);
    assert.equal(client.info.wid._serialized, `${PHONE}@c.us`);
    assert.equal(client.info.pushname, 'Ana');
    assert.equal(client.info.platform, 'android');
    assert.equal(await client.getState(), 'CONNECTED');
    assert.equal(await client.getWWebVersion(), '2.3000.1017054665');

  });

  it('restores from LocalAuth without a QR; CONFLICT is taken over; logout() reaches the fake', async (t) => {
    const client = newClient({ authStrategy: new LocalAuth({ clientId: 'qr', dataPath: dir }) });
    const ev = recordEvents(client, EVENTS);
    // A failed step must not leave its Chromium holding the profile for the next test.
    t.after(() => client.destroy().catch(() => {}));
    await client.initialize();
    await waitFor('ready after restore', () => ev.of('ready')[0]);
    assert.equal(ev.of('qr').length, 0, 'no qr when restoring');
    assert.equal(client.info.wid.user, PHONE);

    const conflict = await fake.post('/_fake/conflict', { phone: PHONE });
    assert.equal(conflict.status, 200, JSON.stringify(conflict.body));
    await waitFor('change_state CONFLICT', () => ev.of('change_state').some((e) => e.args[0] === 'CONFLICT'));
    await waitFor('CONNECTED again after the takeover', () =>
      ev.of('change_state').some((e, i, all) => e.args[0] === 'CONNECTED' && all.slice(0, i).some((c) => c.args[0] === 'CONFLICT')));
    assert.ok((await pages()).some((p) => p.alive && p.state === 'CONNECTED' && p.phone === PHONE));
    assert.equal(ev.of('disconnected').length, 0, 'a takeover is not a disconnection');

    assert.ok((await devices()).some((d) => d.phone === PHONE));
    await client.logout();
    assert.ok(!(await devices()).some((d) => d.phone === PHONE), 'the fake forgot the device');
    assert.ok(!fs.existsSync(path.join(dir, 'session-qr')), 'LocalAuth removed the profile');
    assert.equal(ev.of('authenticated').length, 1, 'no authenticated event while logging out');
  });

  it('links with a pairing code; an unlink from the phone gives disconnected', async (t) => {
    const client = newClient({
      authStrategy: new LocalAuth({ clientId: 'code', dataPath: dir }),
      pairWithPhoneNumber: { phoneNumber: PAIRING_PHONE, showNotification: false },
    });
    const ev = recordEvents(client, EVENTS);
    // A failed step must not leave its Chromium holding the profile for the next test.
    t.after(() => client.destroy().catch(() => {}));
    await client.initialize();
    const code = (await waitFor('code', () => ev.of('code')[0])).args[0];
    assert.match(code, /^[A-Z0-9]{8}$/);
    assert.ok((await pages()).some((p) => p.pairingCode === code), 'the code is the one the fake shows');
    assert.equal(ev.of('qr').length, 0, 'no qr when pairing with a phone number');

    const paired = await fake.post('/_fake/pair', { code, pushName: 'Beto' });
    assert.equal(paired.status, 200, JSON.stringify(paired.body));
    await waitFor('ready', () => ev.of('ready')[0]);
    assert.equal(client.info.wid.user, PAIRING_PHONE);
    assert.equal(client.info.pushname, 'Beto');

    const unlinked = await fake.post('/_fake/unlink', { phone: PAIRING_PHONE });
    assert.equal(unlinked.status, 200, JSON.stringify(unlinked.body));
    const gone = await waitFor('disconnected', () => ev.of('disconnected')[0]);
    // The library closes the browser itself after a disconnection.
    await waitFor('Chromium closed', () => client.pupBrowser.process()?.exitCode !== null);
    assert.ok(['LOGOUT', 'UNPAIRED'].includes(gone.args[0]), `disconnected: ${gone.args[0]}`);
    t.diagnostic(`disconnected: ${ev.of('disconnected').map((e) => e.args[0]).join(', ')}`);
    assert.equal(ev.of('authenticated').length, 1, 'no authenticated event while logging out');
  });

  it('checks numbers, sends a text the fake records, and hears messages and acks', async (t) => {
    const MSG_PHONE = '5491133445566';
    const CONTACT = '5491177889900';
    const client = newClient({ authStrategy: new LocalAuth({ clientId: 'msg', dataPath: dir }) });
    const ev = recordEvents(client, [...EVENTS, 'message', 'message_create', 'message_ack']);
    t.after(() => client.destroy().catch(() => {}));
    await client.initialize();
    const qr = (await waitFor('qr', () => ev.of('qr')[0])).args[0];
    const scanned = await fake.post('/_fake/scan', { qr, phone: MSG_PHONE, pushName: 'Caro' });
    assert.equal(scanned.status, 200, JSON.stringify(scanned.body));
    await waitFor('ready', () => ev.of('ready')[0]);

    const declared = await fake.post('/_fake/numbers', { phones: [CONTACT] });
    assert.equal(declared.status, 200, JSON.stringify(declared.body));
    const id = await client.getNumberId(CONTACT);
    assert.equal(id && id._serialized, `${CONTACT}@c.us`);
    assert.equal(await client.getNumberId('5491100009999'), null, 'a number not on WhatsApp');
    assert.equal(await client.isRegisteredUser(`${CONTACT}@c.us`), true);

    const sent = await client.sendMessage(`${CONTACT}@c.us`, 'Hola, ¿cómo estás?');
    assert.ok(sent, 'sendMessage returned the message');
    assert.equal(sent.fromMe, true);
    assert.equal(sent.body, 'Hola, ¿cómo estás?');
    assert.equal(sent.to, `${CONTACT}@c.us`);
    assert.equal(sent.from, `${MSG_PHONE}@c.us`);
    assert.equal(sent.type, 'chat');
    assert.equal(sent.id.fromMe, true);
    assert.equal(sent.id.remote, `${CONTACT}@c.us`);
    assert.match(sent.id.id, /^3EB0[0-9A-F]{16}$/);
    const record = await waitFor('the fake recorded the send', async () =>
      (await fake.get(`/_fake/messages?account=${MSG_PHONE}`)).find((m) => m.key === sent.id._serialized));
    assert.equal(record.body, 'Hola, ¿cómo estás?');
    assert.equal(record.chat, `${CONTACT}@c.us`);
    assert.equal(record.via, 'page');
    const created = await waitFor('message_create for our own send', () =>
      ev.of('message_create').find((e) => e.args[0].id._serialized === sent.id._serialized));
    assert.equal(created.args[0].fromMe, true);
    assert.ok(!ev.of('message').some((e) => e.args[0].id._serialized === sent.id._serialized), 'our own send is not a received message');

    // The server ack (1) comes from the fake's answer; delivered and read from its control API.
    await waitFor('message_ack 1 (server)', () =>
      ev.of('message_ack').some((e) => e.args[0].id._serialized === sent.id._serialized && e.args[1] === 1));
    for (const ack of [2, 3]) {
      const r = await fake.post('/_fake/messages/ack', { id: sent.id.id, ack });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      await waitFor(`message_ack ${ack}`, () =>
        ev.of('message_ack').some((e) => e.args[0].id._serialized === sent.id._serialized && e.args[1] === ack));
    }

    const incoming = await fake.post('/_fake/messages/incoming', { to: MSG_PHONE, from: CONTACT, body: 'Bien, gracias' });
    assert.equal(incoming.status, 200, JSON.stringify(incoming.body));
    const received = await waitFor('message for the injected message', () =>
      ev.of('message').find((e) => e.args[0].id._serialized === incoming.body.key));
    const msg = received.args[0];
    assert.equal(msg.body, 'Bien, gracias');
    assert.equal(msg.from, `${CONTACT}@c.us`);
    assert.equal(msg.to, `${MSG_PHONE}@c.us`);
    assert.equal(msg.fromMe, false);
    assert.equal(msg.type, 'chat');
    assert.ok(ev.of('message_create').some((e) => e.args[0].id._serialized === incoming.body.key), 'message_create too');

    const fromPhone = await fake.post('/_fake/messages/outgoing', { phone: MSG_PHONE, to: CONTACT, body: 'desde el teléfono' });
    assert.equal(fromPhone.status, 200, JSON.stringify(fromPhone.body));
    const own = await waitFor('message_create for the phone\'s message', () =>
      ev.of('message_create').find((e) => e.args[0].id._serialized === fromPhone.body.key));
    assert.equal(own.args[0].fromMe, true);
    assert.equal(own.args[0].body, 'desde el teléfono');
    assert.ok(!ev.of('message').some((e) => e.args[0].id._serialized === fromPhone.body.key));
    await client.logout();
  });

  it('contacted nothing but the fake', () => {
    assert.ok(front.seen.requests > 0, 'Chromium loaded the page through the front');
    assert.ok(front.seen.hosts.has('web.whatsapp.com'));
    assert.deepEqual(front.seen.refused, [], 'every connection was a TLS handshake or plain HTTP');
    // Chromium's own services (component updates, the Google account list, network time: seen
    // update.googleapis.com, accounts.google.com, clients2.google.com) still call home now and
    // then; mapped to the front, they got a 404 and went nowhere. Anything else asked for a host
    // other than web.whatsapp.com: the library or the page.
    const CHROMIUM_SERVICES = /^https?:\/\/([a-z0-9-]+\.)*(google\.com|googleapis\.com|gstatic\.com|gvt1\.com)[/ ]/;
    const unexpected = front.seen.others.filter((u) => !CHROMIUM_SERVICES.test(u));
    assert.deepEqual(unexpected, [], `requests for hosts other than web.whatsapp.com (all: ${JSON.stringify(front.seen.others)})`);
    if (front.seen.others.length) console.log(`# Chromium's own background requests (answered 404 locally): ${front.seen.others.length}`);
    const remote = lookups.filter((h) => h !== 'localhost' && !/^127\./.test(h));
    assert.deepEqual(remote, [], 'the test process looked up no remote host');
  });
});
