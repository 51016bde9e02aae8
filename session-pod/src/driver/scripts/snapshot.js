// Reads the session state from WhatsApp Web's own modules, the way whatsapp-web.js 1.34.6/1.34.7 do
// (src/Client.js inject(), src/util/Injected/AuthStore/AuthStore.js), and installs listeners
// that wake the agent on every change. Falls back to the older `div[data-ref]` QR markup.
// Called on every poll: must be cheap and idempotent. Returns a plain JSON object.
async () => {
  const out = { loaded: false, state: null, synced: false, qr: null, phone: null, pushName: null,
                loggedOut: false, url: String(location.href) };
  const agent = window.__waAgent || (window.__waAgent = { watching: false, loggedOut: false, keys: null });
  // A logout makes WhatsApp Web navigate to ...?post_logout=1 (whatsapp-web.js watches the same).
  if (out.url.includes('post_logout=1')) agent.loggedOut = true;
  let Socket = null, Conn = null, Cmd = null;
  try {
    if (typeof window.require === 'function') {
      Socket = window.require('WAWebSocketModel').Socket;
      Conn = window.require('WAWebConnModel').Conn;
      Cmd = window.require('WAWebCmd').Cmd;
    }
  } catch (e) { /* modules not defined yet: still loading */ }
  // Like whatsapp-web.js, the app counts as booted once window.Debug.VERSION exists.
  const booted = !!(window.Debug && window.Debug.VERSION);
  if (!booted || !Socket || !Conn) {
    const el = document.querySelector('div[data-ref]');
    if (el && el.getAttribute('data-ref')) { out.qr = el.getAttribute('data-ref'); }
    out.loggedOut = agent.loggedOut;
    return out;
  }
  out.loaded = true;
  if (!agent.watching) {
    agent.watching = true;
    const notify = (kind) => { try { if (window.__waAgentNotify) window.__waAgentNotify(kind); } catch (e) {} };
    Socket.on('change:state', () => notify('state'));
    Socket.on('change:hasSynced', () => notify('synced'));
    Conn.on('change:ref', () => notify('ref'));
    if (Cmd && Cmd.on) {
      Cmd.on('logout', () => { agent.loggedOut = true; notify('logout'); });
      Cmd.on('logout_from_bridge', () => { agent.loggedOut = true; notify('logout'); });
    }
  }
  out.state = Socket.state || null;
  // History loaded (whatsapp-web.js: change:hasSynced = ready): until then the page may block
  // for seconds decrypting it, which the agent must not take for a hang.
  out.synced = !!Socket.hasSynced;
  out.loggedOut = agent.loggedOut;
  const ref = Conn.ref;
  if (ref && (out.state === 'UNPAIRED' || out.state === 'UNPAIRED_IDLE')) {
    if (!agent.keys) {
      // The QR string is ref,noiseKey,identityKey,advSecret,platform (whatsapp-web.js getQR).
      const B64 = window.require('WABase64');
      const reg = await window.require('WAWebSignalStoreApi').waSignalStore.getRegistrationInfo();
      const noise = await window.require('WAWebUserPrefsInfoStore').waNoiseInfo.get();
      // The ADV secret moved: synchronous WAWebUserPrefsMultiDevice (whatsapp-web.js 1.34.7),
      // before that async WAWebAdvSignatureApi (1.34.6). Newest first, the other as fallback.
      let adv;
      try { adv = window.require('WAWebUserPrefsMultiDevice').getADVSecretKey(); }
      catch (e) { adv = window.require('WAWebAdvSignatureApi').getADVSecretKey(); }
      agent.keys = [B64.encodeB64(noise.staticKeyPair.pubKey), B64.encodeB64(reg.identityKeyPair.pubKey),
                    await adv, window.require('WAWebCompanionRegClientUtils').DEVICE_PLATFORM].join(',');
    }
    out.qr = ref + ',' + agent.keys;
  }
  if (out.state === 'CONNECTED') {
    let wid = null;
    try {
      const me = window.require('WAWebUserPrefsMeUser');
      wid = me.getMaybeMePnUser() || me.getMaybeMeLidUser();
    } catch (e) { /* older builds: Conn.wid */ }
    wid = wid || Conn.wid || null;
    if (wid) out.phone = String(wid.user || String(wid._serialized || wid).split('@')[0]);
    out.pushName = Conn.pushname || null;
  }
  return out;
}
