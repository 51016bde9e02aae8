// Installs, once per page, the listeners that report WhatsApp Web's messages to the agent, the
// way whatsapp-web.js 1.34.7 hears them (src/Client.js attachEventListeners: `Msg.on('add')`
// with `isNewMsg`, `Msg.on('change:ack')`; docs/fake-whatsapp.md rows M6-M8). Each event goes
// to the agent as JSON through the `__waAgentMessage` binding. Called on every poll while the
// page is linked: cheap and idempotent; it reinstalls the listeners when the collection was
// replaced or they are no longer on it. Returns {attached, installed, detail}.
() => {
  const agent = window.__waAgent || (window.__waAgent = { watching: false, loggedOut: false, keys: null });
  let Msg;
  try {
    Msg = window.require('WAWebCollections').Msg;
  } catch (e) {
    return { attached: false, installed: false, detail: 'WAWebCollections: ' + String((e && e.message) || e) };
  }
  if (!Msg || typeof Msg.on !== 'function' || typeof Msg.off !== 'function') {
    return { attached: false, installed: false, detail: 'WAWebCollections.Msg has no on/off' };
  }
  // Backbone keeps listeners in _events[name] as {callback} (the fake: {cb}); without that
  // shape the listeners cannot be seen, and are trusted while the collection is the same.
  const listening = (name, fn) => {
    const list = Msg._events && Msg._events[name];
    if (!Msg._events) return true;
    return Array.isArray(list) && list.some((l) => l && (l.callback === fn || l.cb === fn ||
      (l.callback && l.callback._callback === fn) || (l.cb && l.cb._original === fn)));
  };
  const w = agent.messages;
  if (w && w.collection === Msg && listening('add', w.onAdd) && listening('change:ack', w.onAck)) {
    return { attached: true, installed: false, detail: 'WAWebCollections.Msg add, change:ack' };
  }
  if (w && w.collection) {
    try { w.collection.off('add', w.onAdd); w.collection.off('change:ack', w.onAck); } catch (e) { /* gone */ }
  }
  const send = (ev) => {
    try { if (window.__waAgentMessage) window.__waAgentMessage(JSON.stringify(ev)); } catch (e) { /* agent gone */ }
  };
  const wid = (x) => (x == null ? null : String(x._serialized || x));
  const onAdd = (msg) => {
    if (!msg || !msg.isNewMsg || !msg.id) return;
    const remote = wid(msg.id.remote) || wid(msg.from) || '';
    send({
      kind: 'message', id: wid(msg.id), from: wid(msg.from), to: wid(msg.to),
      body: typeof msg.body === 'string' ? msg.body : '', t: Number(msg.t) || 0,
      fromMe: !!msg.id.fromMe, type: String(msg.type || ''), isGroup: remote.endsWith('@g.us'),
      ack: typeof msg.ack === 'number' ? msg.ack : 0,
    });
  };
  const onAck = (msg, ack) => {
    if (!msg || !msg.id || typeof ack !== 'number') return;
    send({ kind: 'ack', id: wid(msg.id), ack });
  };
  Msg.on('add', onAdd);
  Msg.on('change:ack', onAck);
  agent.messages = { collection: Msg, onAdd, onAck };
  return { attached: true, installed: true, detail: 'WAWebCollections.Msg add, change:ack' };
}
