// What the users see: M socket.io clients (the real socket.io-client, websocket transport as the
// UI uses behind several hub replicas) and one real browser with a tab per session on the UI.
// Each view is compared with the CR as the soak's own watch sees it: lag = time from the CR's
// change to the view showing it; a transition "not shown" = the CR moved on before the view
// showed it (fine when fast); a final view that differs from the CR = a missed transition.
import { io } from 'socket.io-client';
import { describe, uiLabel } from './stats.mjs';

/** The CR's current truth per session and when it last changed, fed by the sessions watch. */
export class Truth {
  constructor() {
    this.now = new Map(); // instance → {status, phone, since}
    this.transitions = 0;
    this.listeners = [];
  }
  update(name, status, phone, at) {
    const prev = this.now.get(name);
    if (prev && prev.status === status && prev.phone === phone) return;
    this.now.set(name, { status, phone, since: at });
    this.transitions += 1;
    for (const l of this.listeners) l(name, prev, { status, phone, since: at });
  }
}

/** One observer's record: lags of the views it showed and transitions it never showed. */
class Tally {
  constructor() {
    this.lags = [];
    this.notShown = 0;
  }
}

export class SocketClients {
  constructor({ url, token, sessions, count, truth, log }) {
    Object.assign(this, { url, token, sessions, count, truth, log });
    this.clients = [];
    this.tally = new Tally();
    this.reconnects = 0;
    this.errors = {};
    truth.listeners.push((name, prev, next) => {
      for (const c of this.clients) {
        const v = c.view.get(name);
        // The CR moved on: a client whose view never reached the previous state did not show it.
        if (prev && !c.shown.has(`${name}:${prev.since}`) && v?.status !== prev.status) this.tally.notShown += 1;
        // A client the hub told before our own watch heard of it: no lag to speak of.
        if (v?.status === next.status) {
          this.tally.lags.push(0);
          c.shown.add(`${name}:${next.since}`);
        }
      }
    });
  }

  async start() {
    for (let i = 0; i < this.count; i++) {
      this.clients.push(this.connect(i));
      // A steady ramp: 500 handshakes at once would measure the ramp, not the soak.
      if (i % 25 === 24) await new Promise((r) => setTimeout(r, 200));
    }
    const deadline = Date.now() + 120_000;
    while (Date.now() < deadline) {
      const ready = this.clients.filter((c) => c.view.size === this.sessions.length).length;
      if (ready === this.count) return;
      await new Promise((r) => setTimeout(r, 500));
    }
    throw new Error(`socket clients: only ${this.clients.filter((c) => c.view.size === this.sessions.length).length}/${this.count} got every session`);
  }

  connect(i) {
    const socket = io(this.url, { transports: ['websocket'], auth: { token: this.token }, reconnectionDelayMax: 2000, timeout: 10_000 });
    const c = { i, socket, view: new Map(), connects: 0, shown: new Set() };
    socket.on('connect', () => {
      c.connects += 1;
      if (c.connects > 1) this.reconnects += 1;
      for (const s of this.sessions) socket.emit('subscribe-session', { instance_id: s });
    });
    socket.on('session-status', (p) => {
      const at = Date.now();
      const phone = p.phoneNumber ?? null;
      c.view.set(p.instance_id, { status: p.status, phone, at });
      const truth = this.truth.now.get(p.instance_id);
      if (truth && truth.status === p.status && !c.shown.has(`${p.instance_id}:${truth.since}`)) {
        c.shown.add(`${p.instance_id}:${truth.since}`);
        this.tally.lags.push(Math.max(0, at - truth.since));
      }
    });
    socket.on('connection-error', (e) => {
      this.errors[e?.error ?? 'unknown'] = (this.errors[e?.error ?? 'unknown'] ?? 0) + 1;
    });
    return c;
  }

  connectedCount() {
    return this.clients.filter((c) => c.socket.connected).length;
  }

  /** Clients whose final view of a session differs from the CR: [{client, session, view, cr}]. */
  mismatches() {
    const out = [];
    for (const c of this.clients) {
      for (const s of this.sessions) {
        const v = c.view.get(s);
        const t = this.truth.now.get(s);
        if (!t || v?.status !== t.status) out.push({ client: c.i, session: s, view: v?.status ?? null, cr: t?.status ?? null });
      }
    }
    return out;
  }

  figures() {
    return { clients: this.count, connectedAtEnd: this.connectedCount(), reconnects: this.reconnects, connectionErrors: this.errors, viewLagMs: describe(this.tally.lags), transitionsNotShown: this.tally.notShown, finalMismatches: this.mismatches().length };
  }

  close() {
    for (const c of this.clients) c.socket.close();
  }
}

/**
 * One real browser on the UI: logged in, a tab per session on its page (live over socket.io).
 * A MutationObserver in each tab records every label change with the page's clock (same machine).
 */
export class BrowserViews {
  constructor({ lib, sessions, user, password, truth, log }) {
    Object.assign(this, { lib, sessions, user, password, truth, log });
    this.tabs = new Map();
    this.tally = new Tally();
    this.seen = new Map(); // session → last label seen
    this.reloads = 0;
  }

  async start() {
    this.browser = await this.lib.launchBrowser();
    const first = await this.lib.newPage(this.browser, { width: 800, height: 600 });
    await this.lib.login(first, this.user, this.password);
    const context = first.context();
    for (const [i, s] of this.sessions.entries()) {
      const page = i === 0 ? first : await context.newPage();
      // The token lives in each tab's sessionStorage (docs/frontend.md "Where the token lives"):
      // a tab opened afresh logs in, as a user's would.
      if (i > 0) await this.lib.login(page, this.user, this.password);
      await this.lib.openSession(page, s);
      await page.evaluate(() => {
        window.__soak = [];
        const el = () => document.querySelector('[data-testid=session-status]');
        const record = () => window.__soak.push({ label: el()?.textContent?.trim() ?? null, at: Date.now() });
        record();
        new MutationObserver(record).observe(document.body, { subtree: true, childList: true, characterData: true });
      });
      this.tabs.set(s, page);
    }
    this.timer = setInterval(() => this.collect().catch((e) => this.log(`browser collect: ${e.message}`)), 2000);
  }

  async collect() {
    for (const [s, page] of this.tabs) {
      const events = await page.evaluate(() => window.__soak.splice(0));
      for (const ev of events) {
        if (ev.label === this.seen.get(s)) continue;
        this.seen.set(s, ev.label);
        const t = this.truth.now.get(s);
        if (t && uiLabel(t.status, t.phone) === ev.label) this.tally.lags.push(Math.max(0, ev.at - t.since));
      }
    }
  }

  async mismatches() {
    await this.collect();
    const out = [];
    for (const [s, page] of this.tabs) {
      const label = (await page.getByTestId('session-status').textContent())?.trim();
      const t = this.truth.now.get(s);
      const want = t ? uiLabel(t.status, t.phone) : null;
      if (label !== want) out.push({ session: s, view: label, cr: want });
    }
    return out;
  }

  async figures() {
    const mismatches = await this.mismatches();
    return { tabs: this.tabs.size, viewLagMs: describe(this.tally.lags), finalMismatches: mismatches.length, mismatches };
  }

  async close() {
    clearInterval(this.timer);
    await this.browser?.close();
  }
}
