// The fake WhatsApp Web app. It reproduces the shapes automation reads from the real page
// (whatsapp-web.js 1.34.6 and 1.34.7: window.Debug.VERSION, window.require(...) modules, and the
// older div[data-ref] markup) and gets its truth from the fake server by long polling, so that the
// control API's scans, unlinks and conflicts reach the page live. The server says which generation
// of the page's internals to serve (`--generation`). See docs/fake-whatsapp.md.
(function () {
  'use strict';

  // ---- Backbone-style events: on/off/once/trigger, space-separated names, cb(model, value). ----
  class Events {
    constructor() { this._events = {}; }
    on(names, cb, ctx) {
      if (typeof cb !== 'function') return this;
      for (const name of String(names).split(/\s+/).filter(Boolean)) {
        (this._events[name] = this._events[name] || []).push({ cb, ctx });
      }
      return this;
    }
    once(names, cb, ctx) {
      const self = this;
      const wrapped = function () { self.off(names, wrapped); return cb.apply(this, arguments); };
      wrapped._original = cb;
      return this.on(names, wrapped, ctx);
    }
    off(names, cb) {
      if (names === undefined || names === null) {
        if (!cb) { this._events = {}; return this; }
        names = Object.keys(this._events).join(' ');
      }
      for (const name of String(names).split(/\s+/).filter(Boolean)) {
        const list = this._events[name];
        if (!list) continue;
        this._events[name] = cb ? list.filter((l) => l.cb !== cb && l.cb._original !== cb) : [];
      }
      return this;
    }
    trigger(name) {
      const args = Array.prototype.slice.call(arguments, 1);
      for (const l of (this._events[name] || []).slice()) {
        try { l.cb.apply(l.ctx || this, args); } catch (e) { console.error('listener for', name, 'failed', e); }
      }
      for (const l of (this._events.all || []).slice()) {
        try { l.cb.apply(l.ctx || this, [name].concat(args)); } catch (e) { console.error(e); }
      }
      return this;
    }
    emit() { return this.trigger.apply(this, arguments); }
    listenTo(obj, name, cb) { obj.on(name, cb, this); return this; }
    stopListening(obj, name, cb) { if (obj) obj.off(name, cb); return this; }
  }

  // A model whose attributes are also properties (Socket.state, Conn.ref) and whose changes fire
  // `change:<attr>` (model, value) then `change` (model), like the real page's models.
  class Model extends Events {
    constructor(attrs) {
      super();
      this.attributes = {};
      for (const key of Object.keys(attrs)) {
        this.attributes[key] = attrs[key];
        Object.defineProperty(this, key, {
          get: () => this.attributes[key],
          set: (v) => this.set(key, v),
          enumerable: true,
        });
      }
    }
    get(key) { return this.attributes[key]; }
    set(key, value) {
      const changes = typeof key === 'object' && key !== null ? key : { [key]: value };
      const changed = [];
      for (const k of Object.keys(changes)) {
        if (this.attributes[k] !== changes[k]) { this.attributes[k] = changes[k]; changed.push(k); }
      }
      for (const k of changed) this.trigger('change:' + k, this, this.attributes[k]);
      if (changed.length) this.trigger('change', this);
      return this;
    }
    serialize() { return JSON.parse(JSON.stringify(this.attributes)); }
    toJSON() { return this.serialize(); }
  }

  // ---- State shared with the server ----
  let pageId = null;
  let appliedVersion = 0;
  let keys = null;
  let stored = null; // the device credential in the profile
  // Set from the server's hello before window.Debug.VERSION exists (before anyone reads modules).
  let generation = '2026-04';
  let withoutModules = []; // test hook: modules this page pretends not to have
  let offlineProgress = 0;
  let progressStarted = false;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function action(name, extra) {
    const r = await fetch('/_page/action', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(Object.assign({ page: pageId, action: name }, extra || {})),
    });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.error || ('action ' + name + ' failed: ' + r.status));
    return body;
  }

  const Socket = new Model({ state: 'OPENING', hasSynced: false, stream: 'DISCONNECTED' });
  Socket.logout = function () { return action('logout'); };
  Socket.takeover = function () { return action('takeover'); };
  Socket.reconnect = function () { return Promise.resolve(); };
  Socket.poke = function () { return Promise.resolve(); };

  const Conn = new Model({
    ref: undefined, wid: undefined, pushname: undefined, platform: undefined,
    battery: undefined, plugged: undefined, isSMB: false,
  });

  const Cmd = new Events();
  Cmd.refreshQR = function () { return action('refreshQR'); };

  function b64ToBytes(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  function bytesToB64(buf) {
    const bytes = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
    let bin = '';
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin);
  }
  // A WhatsApp id (`WAWebWidFactory.createWid`): `<user>@<server>`, with the predicates
  // whatsapp-web.js calls on chat ids.
  class Wid {
    constructor(user, server) { this.server = server; this.user = user; this._serialized = user + '@' + server; }
    isLid() { return this.server === 'lid'; }
    isGroup() { return this.server === 'g.us'; }
    isUser() { return this.server === 'c.us' || this.server === 'lid'; }
    isStatus() { return this.user === 'status' && this.server === 'broadcast'; }
    isNewsletter() { return this.server === 'newsletter'; }
    isBroadcast() { return this.server === 'broadcast'; }
    equals(o) { return !!o && String(o._serialized || o) === this._serialized; }
    toString() { return this._serialized; }
    toJid() { return this._serialized; }
  }
  function wid(user, server) { return new Wid(user, server); }
  function createWid(id) {
    const s = String(id && id._serialized ? id._serialized : id);
    const at = s.indexOf('@');
    if (at <= 0) throw new Error('createWid: invalid wid ' + JSON.stringify(s));
    return new Wid(s.slice(0, at), s.slice(at + 1));
  }
  const needKeys = () => { if (!keys) throw new Error('registration not loaded'); return keys; };

  let pairingType = null;
  let altLinkingReady = false;
  // A collection (Msg, Chat, ...) as whatsapp-web.js' attachEventListeners touches it: events, and
  // models in an internal Map (it hooks WAWebCallCollection's Map.set to see incoming calls).
  class Collection extends Events {
    constructor() { super(); this._index = new Map(); this.modelClass = Model; }
    get(id) { return this._index.get(String(id && id._serialized ? id._serialized : id)); }
    getModelsArray() { return Array.from(this._index.values()); }
    find(id) { return Promise.resolve(this.get(id)); }
    get length() { return this._index.size; }
    // Adds a model (once per id) and fires `add` (model, collection), as the real collections do.
    add(model) {
      const key = String(model.id && model.id._serialized ? model.id._serialized : model.id);
      if (this._index.has(key)) return this._index.get(key);
      this._index.set(key, model);
      // Like Backbone, a collection re-fires its models' events (Msg.on('change:ack', ...)).
      if (typeof model.on === 'function') model.on('all', (name, ...args) => this.trigger(name, ...args));
      this.trigger('add', model, this);
      return model;
    }
  }
  const collections = { Msg: new Collection(), Chat: new Collection(), Contact: new Collection(), GroupMetadata: new Collection() };

  const common = {
    WAWebSocketModel: { Socket },
    WAWebConnModel: { Conn },
    WAWebCmd: { Cmd },
    WAWebOfflineHandler: { OfflineMessageHandler: { getOfflineDeliveryProgress: () => offlineProgress } },
    WABase64: { encodeB64: bytesToB64, decodeB64: b64ToBytes },
    WAWebCompanionRegClientUtils: {
      get DEVICE_PLATFORM() { return needKeys().platform; },
    },
    WAWebUserPrefsInfoStore: {
      waNoiseInfo: { get: async () => ({ staticKeyPair: { pubKey: b64ToBytes(needKeys().noisePubKey), privKey: new Uint8Array(32) } }) },
    },
    WAWebSignalStoreApi: {
      waSignalStore: {
        getRegistrationInfo: async () => ({
          registrationId: 1,
          identityKeyPair: { pubKey: b64ToBytes(needKeys().identityPubKey), privKey: new Uint8Array(32) },
        }),
      },
    },
    WAWebUserPrefsMeUser: {
      getMaybeMePnUser: () => Conn.wid,
      getMaybeMeLidUser: () => undefined,
      getMeUser: () => Conn.wid,
    },
    WAWebMiscBrowserUtils: { info: () => ({ name: 'Chrome', os: 'Linux', version: navigator.userAgent }) },
    WAWebAltDeviceLinkingApi: {
      setPairingType: (t) => { pairingType = t; },
      initializeAltDeviceLinking: async () => { altLinkingReady = true; },
      startAltLinkingFlow: async (phone, _showNotification) => {
        if (pairingType !== 'ALT_DEVICE_LINKING' || !altLinkingReady) {
          throw new Error('alt device linking not initialised');
        }
        const r = await action('startAltLinkingFlow', { phone: String(phone) });
        return r.code;
      },
      initializeQRLinking: async () => { pairingType = null; },
    },
    // Touched by whatsapp-web.js after login (attachEventListeners); messages and chats are
    // added by the messages section below.
    WAWebCollections: collections,
    WAWebSyncGatingUtils: { isPlaceholderMessageResendEnabled: () => false },
    WAWebCallCollection: new Collection(),
  };
  // ---- Messages (docs/fake-whatsapp.md rows M1-M9): chats, the message key, sending, acks ----
  class MsgKey {
    constructor({ from, to, id, participant, selfDir }) {
      this.fromMe = selfDir === 'out';
      this.remote = this.fromMe ? to : from;
      this.id = id;
      if (participant) this.participant = participant;
      this._serialized = this.fromMe + '_' + this.remote._serialized + '_' + id;
    }
    toString() { return this._serialized; }
    // Web-made ids: 3EB0 + 16 upper-case hex digits.
    static newId() {
      const bytes = crypto.getRandomValues(new Uint8Array(8));
      return Promise.resolve('3EB0' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('').toUpperCase());
    }
  }
  const msgModel = (attrs) => new Model(Object.assign({
    id: undefined, body: '', type: 'chat', t: 0, from: undefined, to: undefined, author: undefined,
    ack: 0, isNewMsg: false, self: 'in', local: false, star: false, notifyName: '',
  }, attrs));
  collections.Msg.modelClass = Model;
  // The chat with `wid`, created on first use (a contact's chat, as opening one on the real page).
  function chatFor(w) {
    const existing = collections.Chat.get(w);
    if (existing) return { chat: existing, created: false };
    const chat = new Model({ id: w, t: 0, unreadCount: 0, archive: false, isReadOnly: false, name: undefined });
    chat.msgs = new Collection();
    return { chat: collections.Chat.add(chat), created: true };
  }
  // A message the server told about (snapshot.messages): the page's own from another device,
  // the phone's, a contact's, or the history (isNew false).
  function addRecord(record, isNew) {
    const me = Conn.wid;
    const other = createWid(record.chat);
    const key = new MsgKey({ from: record.fromMe ? me : other, to: record.fromMe ? other : me, id: record.id, selfDir: record.fromMe ? 'out' : 'in' });
    if (collections.Msg.get(key._serialized)) return;
    const msg = msgModel({
      id: key, body: record.body, t: record.t, ack: record.ack, isNewMsg: isNew,
      from: record.fromMe ? me : other, to: record.fromMe ? other : me, self: record.fromMe ? 'out' : 'in',
    });
    const { chat } = chatFor(other);
    chat.t = Math.max(chat.t, record.t);
    collections.Msg.add(msg);
    chat.msgs.add(msg);
  }
  function applyMessages(list) {
    for (const m of list || []) {
      try {
        if (m.kind === 'msg') addRecord(m.record, m.isNew);
        else if (m.kind === 'ack') { const msg = collections.Msg.get(m.key); if (msg && m.ack > msg.ack) msg.set('ack', m.ack); }
      } catch (e) { console.error('message from the server not applied', m, e); }
    }
  }
  Object.assign(common, {
    WAWebWidFactory: {
      createWid,
      createWidFromWidLike: createWid,
      asUserWidOrThrow: (w) => { const x = createWid(w); if (!x.isUser()) throw new Error('not a user wid: ' + x); return x; },
    },
    WAWebQueryExistsJob: {
      queryWidExists: async (w) => {
        const x = createWid(w);
        const r = await action('queryExists', { phone: x.user });
        return r.exists ? { wid: x } : null;
      },
    },
    WAWebFindChatAction: { findOrCreateLatestChat: async (w) => chatFor(createWid(w)) },
    WAWebChatGetters: {
      getIsNewsletter: (c) => c.id.server === 'newsletter',
      getIsBroadcast: (c) => c.id.server === 'broadcast',
      getIsGroup: (c) => c.id.server === 'g.us',
    },
    WALinkify: {
      findLink: (text) => { const m = /https?:\/\/\S+/.exec(String(text || '')); return m ? { href: m[0], url: m[0] } : null; },
      findLinks: (text) => (String(text || '').match(/https?:\/\/\S+/g) || []).map((href) => ({ href, url: href })),
    },
    WAWebMsgKey: MsgKey,
    WAWebGetEphemeralFieldsMsgActionsUtils: { getEphemeralFields: () => ({}) },
    WAWebStreamModel: { Stream: { markAvailable() {}, markUnavailable() {} } },
    WAWebUpdateUnreadChatAction: { sendSeen: async ({ chat }) => { chat.attributes.unreadCount = 0; } },
    WAWebSendMsgChatAction: {
      // [added, sent]: the message is in Msg (firing `add`) once the first resolves; the second
      // resolves once the server acknowledged it (ack 1, `change:ack`) or refused it (ack -1).
      addAndSendMsgToChat: (chat, message) => {
        const msg = msgModel(Object.assign({}, message));
        const added = Promise.resolve().then(() => {
          collections.Msg.add(msg);
          chat.msgs.add(msg);
          chat.t = msg.t;
          return msg;
        });
        const sent = added.then(async () => {
          try {
            const r = await action('sendMessage', { id: msg.id.id, chat: chat.id._serialized, body: String(msg.body) });
            if (r.ack > msg.ack) msg.set('ack', r.ack);
            return { messageSendResult: 'OK' };
          } catch (e) {
            msg.set('ack', -1);
            return { messageSendResult: 'ERROR', error: String(e && e.message || e) };
          }
        });
        return [added, sent];
      },
    },
  });

  // What moved or changed shape between generations (docs/fake-whatsapp.md, "Generations").
  const byGeneration = {
    '2026-03': {
      modules: {
        WAWebAdvSignatureApi: { getADVSecretKey: async () => needKeys().advSecretKey },
      },
      progressEvent: 'offline_progress_update',
    },
    '2026-04': {
      modules: {
        // The function moved (and became synchronous); the old module is still there without it
        // (whatsapp-web.js 1.34.7 still spreads it into AuthStore.RegistrationUtils).
        WAWebAdvSignatureApi: {},
        WAWebUserPrefsMultiDevice: { getADVSecretKey: () => needKeys().advSecretKey },
        WAWebLaunchSocketUtils: { refreshQR: () => Cmd.refreshQR() },
      },
      progressEvent: 'offline_progress_update_from_bridge',
    },
  };
  const gen = () => byGeneration[generation] || byGeneration['2026-04'];
  // The real loader throws for a module it does not know; so does this one.
  window.require = function (name) {
    if (withoutModules.includes(name)) throw new Error('Requiring unknown module "' + name + '"');
    const own = gen().modules;
    if (Object.prototype.hasOwnProperty.call(own, name)) return own[name];
    if (Object.prototype.hasOwnProperty.call(common, name)) return common[name];
    throw new Error('Requiring unknown module "' + name + '"');
  };
  // Loading progress of the messages received while offline, announced on Cmd as the page
  // downloads them (between CONNECTED and hasSynced); getOfflineDeliveryProgress() reads it.
  function setOfflineProgress(percent) {
    offlineProgress = percent;
    Cmd.trigger(gen().progressEvent);
  }

  // ---- The device credential in the profile (IndexedDB, like the real page's keys) ----
  const DB = 'wawc', STORE = 'user', KEY = 'fake-device-credential';
  function openDb() {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open(DB, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }
  async function readCredential() {
    try {
      const db = await openDb();
      const value = await new Promise((resolve, reject) => {
        const req = db.transaction(STORE, 'readonly').objectStore(STORE).get(KEY);
        req.onsuccess = () => resolve(req.result);
        req.onerror = () => reject(req.error);
      });
      db.close();
      return typeof value === 'string' ? value : null;
    } catch (e) {
      console.error('cannot read the profile', e);
      return null;
    }
  }
  async function writeCredential(value) {
    const db = await openDb();
    await new Promise((resolve, reject) => {
      // Strict durability: the login must survive the browser being killed right after linking.
      const tx = db.transaction(STORE, 'readwrite', { durability: 'strict' });
      const store = tx.objectStore(STORE);
      if (value === null) store.delete(KEY); else store.put(value, KEY);
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
    db.close();
    if (value === null) localStorage.removeItem('last-wid-md');
  }

  // ---- Rendering: the markup automation used before the module API ----
  const app = document.getElementById('app');
  let rendered = null;

  function drawQr(canvas, qr) {
    // Not a decodable QR: a pattern derived from the string, so that each ref looks different.
    const ctx = canvas.getContext('2d');
    const n = 33, cell = canvas.width / n;
    let h = 2166136261;
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.fillStyle = '#111';
    for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) {
      h ^= qr.charCodeAt((x + y * n) % qr.length); h = Math.imul(h, 16777619);
      if (h & 1) ctx.fillRect(x * cell, y * cell, cell, cell);
    }
  }

  function renderQr(snap) {
    let box = document.querySelector('div[data-ref]');
    if (!box || rendered !== 'qr') {
      app.innerHTML = '<div class="landing-main"><div><h1>Use WhatsApp on your computer</h1>' +
        '<ol><li>Open WhatsApp on your phone</li><li>Tap Menu or Settings and select Linked devices</li>' +
        '<li>Point your phone to this screen to capture the QR code</li></ol><div id="link-code"></div></div>' +
        '<div class="qr-wrapper"><div data-ref=""><canvas aria-label="Scan this QR code to link a device!" role="img" width="264" height="264"></canvas></div></div></div>';
      box = document.querySelector('div[data-ref]');
      rendered = 'qr';
    }
    // Update the attribute in place: observers of data-ref see an attribute mutation per QR.
    if (snap.qr && box.getAttribute('data-ref') !== snap.qr) {
      box.setAttribute('data-ref', snap.qr);
      drawQr(box.querySelector('canvas'), snap.qr);
    }
    const idle = snap.state === 'UNPAIRED_IDLE';
    box.classList.toggle('expired', idle);
    const retry = box.querySelector(':scope > span');
    if (idle && !retry) {
      const span = document.createElement('span');
      const button = document.createElement('button');
      button.textContent = 'Click to reload QR code';
      button.addEventListener('click', () => { Cmd.refreshQR().catch((e) => console.error(e)); });
      span.appendChild(button);
      box.appendChild(span);
    } else if (!idle && retry) {
      retry.remove();
    }
    const code = document.getElementById('link-code');
    if (code) {
      code.textContent = snap.pairingCode ? snap.pairingCode.slice(0, 4) + '-' + snap.pairingCode.slice(4) : '';
      if (snap.pairingCode) code.setAttribute('data-link-code', snap.pairingCode); else code.removeAttribute('data-link-code');
    }
  }

  function render(snap) {
    switch (snap.state) {
      case 'UNPAIRED':
      case 'UNPAIRED_IDLE':
        if (snap.qr) { renderQr(snap); return; }
        break;
      case 'CONNECTED':
        if (rendered !== 'chats') {
          app.innerHTML = '<div id="side"><header><div title="Profile"></div></header>' +
            '<div class="search"><span data-icon="search"></span><div contenteditable="true" role="textbox" title="Search input textbox"></div></div>' +
            '<div id="pane-side" aria-label="Chat list" role="grid"></div></div><div id="main"><h2></h2><p></p></div>';
          rendered = 'chats';
        }
        document.querySelector('#main h2').textContent = snap.me ? snap.me.pushName : '';
        document.querySelector('#main p').textContent = snap.me ? '+' + snap.me.phone : '';
        return;
      case 'CONFLICT':
        if (rendered !== 'conflict') {
          app.innerHTML = '<div class="conflict" role="dialog"><p>WhatsApp is open on another window. ' +
            'Click "Use here" to use WhatsApp in this window.</p><button type="button">Use here</button></div>';
          app.querySelector('button').addEventListener('click', () => { Socket.takeover().catch((e) => console.error(e)); });
          rendered = 'conflict';
        }
        return;
      default:
        break;
    }
    if (rendered !== 'startup') {
      app.innerHTML = '<div id="initial_startup"><progress value="0" max="100"></progress><div>Loading your chats</div></div>';
      rendered = 'startup';
    }
  }

  // ---- Applying the server's view ----
  async function apply(snap) {
    if (snap.v <= appliedVersion) return;
    appliedVersion = snap.v;
    if (snap.crash) { crashRenderer(); return; }
    if (snap.hang) { for (;;) { /* the test asked this page to stop responding */ } }
    if (snap.busySeq > busyDone) {
      // The test asked this page to be busy for a while (its main thread answers nothing
      // meanwhile, as the real page's does while it boots or decrypts its history), once.
      busyDone = snap.busySeq;
      const end = performance.now() + snap.busyMs;
      while (performance.now() < end) { /* busy */ }
    }
    if (snap.bloatMb > bloated.length) bloat(snap.bloatMb);
    keys = snap.keys;
    if (snap.credential !== stored && (snap.credential !== null || stored !== null)) {
      try {
        await writeCredential(snap.credential);
        stored = snap.credential;
      } catch (e) { console.error('cannot write the profile', e); }
    }
    if (snap.me) localStorage.setItem('last-wid-md', JSON.stringify(snap.me.phone + ':1@c.us'));
    for (const ev of snap.events) Cmd.trigger(ev);
    // Conn first: listeners of change:state read Conn.ref / Conn.wid when the state moves.
    // The ref stays once the server stops offering QRs (scanned, connected): the real page does
    // not announce an undefined ref, which whatsapp-web.js would turn into a QR "undefined,...".
    Conn.set({
      ref: snap.ref || Conn.ref,
      wid: snap.me ? wid(snap.me.phone, 'c.us') : undefined,
      pushname: snap.me ? snap.me.pushName : undefined,
      platform: snap.me ? 'android' : undefined,
      battery: snap.me ? 100 : undefined,
      plugged: snap.me ? true : undefined,
    });
    Socket.set({ stream: snap.state === 'CONNECTED' ? 'CONNECTED' : 'DISCONNECTED' });
    Socket.set('state', snap.state);
    // Announced whatever the poll's timing: a page that polled late may see CONNECTED and
    // hasSynced in one snapshot, and the real page still reports its progress from 0.
    if (snap.state === 'CONNECTED' && !Socket.hasSynced && !progressStarted) {
      progressStarted = true;
      setOfflineProgress(0);
    }
    // hasSynced only ever becomes true in a page's life: a logout navigates to a new page
    // instead (flipping it back would fire change:hasSynced, which automation takes for a login).
    if (snap.hasSynced && !Socket.hasSynced) {
      setOfflineProgress(100);
      Socket.set('hasSynced', true);
    }
    if (snap.state === 'CONNECTED') applyMessages(snap.messages);
    render(snap);
    if (snap.navigate) {
      // Like the real page after a logout: reload to /?post_logout=1 once the listeners ran.
      setTimeout(() => location.replace(snap.navigate), 100);
      return 'navigating';
    }
  }

  // Test hook (/_fake/hang {ms}): the last busy spell this page ran (each runs once).
  let busyDone = 0;

  // Test hook (/_fake/bloat): memory the page holds, 1 MiB ArrayBuffers written through so the
  // pages are resident. Outside the V8 heap limit (--max-old-space-size): only the process's
  // memory limit stops it.
  const bloated = [];
  function bloat(mb) {
    while (bloated.length < mb) bloated.push(new Uint8Array(1 << 20).fill(1));
  }

  function crashRenderer() {
    // Splitting a 256 Mi-character string asks V8 for an array beyond its maximum size, a fatal
    // error ("Fatal JavaScript invalid size error"): the renderer process dies within seconds,
    // which Chromium reports as a crashed target ("Aw, Snap!", Inspector.targetCrashed).
    'x'.repeat(2 ** 28).split('');
  }

  // Like the real page, a page that cannot reach the server for a few seconds shows TIMEOUT and
  // goes back to the server's state once it answers again (`/_fake/offline`).
  const TIMEOUT_AFTER_MS = 3000;
  async function pollLoop() {
    let failingSince = null;
    let timedOut = null;
    for (;;) {
      let snap;
      try {
        const r = await fetch('/_page/poll?page=' + encodeURIComponent(pageId) + '&since=' + appliedVersion, { cache: 'no-store' });
        if (r.status === 404) { location.reload(); return; } // the server forgot us (restarted)
        if (!r.ok) throw new Error('poll: ' + r.status);
        snap = await r.json();
      } catch (e) {
        failingSince ??= Date.now();
        if (timedOut === null && Date.now() - failingSince >= TIMEOUT_AFTER_MS && Socket.state === 'CONNECTED') {
          timedOut = Socket.state;
          Socket.set({ stream: 'DISCONNECTED' });
          Socket.set('state', 'TIMEOUT');
        }
        await sleep(500);
        continue;
      }
      failingSince = null;
      if (timedOut !== null) {
        Socket.set({ stream: 'CONNECTED' });
        Socket.set('state', timedOut);
        timedOut = null;
      }
      if (await apply(snap) === 'navigating') return;
    }
  }

  async function boot() {
    stored = await readCredential();
    let hello;
    for (;;) {
      try {
        const r = await fetch('/_page/hello', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ credential: stored }),
        });
        if (r.ok) { hello = await r.json(); break; }
      } catch (e) { /* server not up yet */ }
      await sleep(500);
    }
    pageId = hello.page;
    if (hello.generation) generation = hello.generation;
    if (Array.isArray(hello.withoutModules)) withoutModules = hello.withoutModules;
    keys = hello.snapshot.keys;
    window.addEventListener('pagehide', () => {
      navigator.sendBeacon('/_page/bye?page=' + encodeURIComponent(pageId));
    });
    // The app has booted: what whatsapp-web.js waits for before reading the modules.
    window.Debug = { VERSION: '2.3000.1017054665' };
    if (await apply(hello.snapshot) === 'navigating') return;
    pollLoop();
  }

  boot();
})();
