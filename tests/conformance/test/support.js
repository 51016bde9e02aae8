'use strict';
// Support for the conformance test: the fake WhatsApp Web (the Rust binary), a TLS front that
// answers for https://web.whatsapp.com/ (the URL whatsapp-web.js hard-codes) and records every
// connection Chromium makes, and small waiting helpers.

const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const CHROMIUM = ['/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((p) => fs.existsSync(p));

/** The fake's binary: FAKE_WHATSAPP_BIN, else `fake-whatsapp` in WA_BIN_DIR or the release target dir. */
function fakeBinary() {
  const candidates = [
    process.env.FAKE_WHATSAPP_BIN,
    process.env.WA_BIN_DIR && path.join(process.env.WA_BIN_DIR, 'fake-whatsapp'),
    path.join(process.env.CARGO_TARGET_DIR || path.join(os.homedir(), '.cache/whatsapp-operator/target'), 'release/fake-whatsapp'),
  ].filter(Boolean);
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) {
    throw new Error(`fake-whatsapp binary not found (tried ${candidates.join(', ')}): cargo build --release -p fake-whatsapp`);
  }
  return found;
}

/** Starts `fake-whatsapp` with `args`; resolves to {url, post, get, stop}. */
async function startFake(args) {
  const child = spawn(fakeBinary(), ['--listen', '127.0.0.1:0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  child.stderr.on('data', (d) => log.push(String(d)));
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('fake-whatsapp did not print its URL within 10 s: ' + log.join(''))), 10_000);
    child.once('exit', (code) => reject(new Error(`fake-whatsapp exited ${code}: ${log.join('')}`)));
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^FAKE_WHATSAPP_URL=(.*)$/.exec(line);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
  });
  const base = new URL(url);
  const call = async (method, p, body) => {
    const r = await fetch(new URL(p, base), {
      method,
      headers: body ? { 'content-type': 'application/json' } : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    return { status: r.status, body: await r.json().catch(() => null) };
  };
  return {
    url,
    port: Number(base.port),
    log,
    post: (p, body) => call('POST', p, body),
    get: async (p) => (await call('GET', p)).body,
    stop: () => new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', resolve);
      child.kill('SIGTERM');
    }),
  };
}

/**
 * An HTTPS server with a self-signed certificate for web.whatsapp.com that forwards every request
 * to the fake. Chromium is pointed at it for every host name (`--host-resolver-rules`), so it is
 * the only place Chromium can reach; `seen` lists each connection's TLS server name, each
 * request's Host, every request for another host (`others`, answered 404, never forwarded) and
 * every failed TLS handshake (`refused`).
 */
async function startTlsFront(fakePort, dir) {
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=web.whatsapp.com',
    '-addext', 'subjectAltName=DNS:web.whatsapp.com'], { stdio: 'ignore' });
  const seen = { serverNames: new Set(), hosts: new Set(), requests: 0, refused: [], others: [] };
  const tls = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (req, res) => {
    seen.requests += 1;
    seen.hosts.add(String(req.headers.host));
    if (req.headers.host !== 'web.whatsapp.com') {
      // Never forwarded: the fake answers for web.whatsapp.com only.
      seen.others.push(`https://${req.headers.host}${req.url}`);
      res.writeHead(404).end();
      return;
    }
    const upstream = http.request({
      host: '127.0.0.1', port: fakePort, method: req.method, path: req.url,
      headers: { ...req.headers, host: `127.0.0.1:${fakePort}` },
    }, (up) => { res.writeHead(up.statusCode, up.headers); up.pipe(res); });
    upstream.on('error', () => { if (!res.headersSent) res.writeHead(502); res.end(); });
    req.pipe(upstream);
  });
  tls.on('secureConnection', (s) => seen.serverNames.add(String(s.servername)));
  tls.on('tlsClientError', (e, s) => {
    // A browser being closed mid-handshake resets its connections: nothing was asked for.
    if (['ECONNRESET', 'EPIPE'].includes(e.code)) return;
    seen.refused.push(`${s.servername || '?'}: ${e.code || e.message}`);
  });
  // One port for everything (the resolver rule maps every host and port here): a TLS handshake
  // starts with byte 0x16 and goes to the HTTPS server; anything else is taken for plain HTTP,
  // recorded from its first lines and answered 404.
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', (first) => {
      if (first[0] === 0x16) {
        socket.pause();
        socket.unshift(first);
        tls.emit('connection', socket);
        return;
      }
      const head = first.toString('latin1');
      const line = head.split('\r\n')[0];
      const host = (/^host:\s*(.*)$/im.exec(head) || [])[1] || '?';
      seen.others.push(`http://${host} ${line}`);
      socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    seen,
    stop: () => new Promise((resolve) => {
      tls.closeAllConnections();
      server.close(resolve);
    }),
  };
}

/** Resolves once `pred()` is truthy (polled every 50 ms), with its value; rejects after `ms`. */
async function waitFor(what, pred, ms = 20_000) {
  const until = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Records every event of `client` in order: [{name, args, at}]. */
function recordEvents(client, names) {
  const events = [];
  for (const name of names) client.on(name, (...args) => events.push({ name, args, at: Date.now() }));
  events.of = (name) => events.filter((e) => e.name === name);
  return events;
}

module.exports = { CHROMIUM, startFake, startTlsFront, waitFor, recordEvents };
