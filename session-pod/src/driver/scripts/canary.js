// Checks, without linking or changing anything, that what the other driver scripts rely on is
// still there on this WhatsApp Web (`wa-session canary`). One entry per assumption:
// {name, ok, detail}. Replace it together with the scripts it describes (WA_DRIVER_DIR).
async () => {
  const checks = [];
  const check = async (name, fn) => {
    try {
      const detail = await fn();
      checks.push({ name, ok: true, detail: String(detail) });
    } catch (e) {
      checks.push({ name, ok: false, detail: String((e && e.message) || e) });
    }
  };
  const fnOf = (obj, path) => {
    const f = path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj);
    if (typeof f !== 'function') throw new Error(path + ' is not a function');
  };
  const mod = (name) => window.require(name);
  const STATES = ['CONFLICT', 'CONNECTED', 'DEPRECATED_VERSION', 'OPENING', 'PAIRING', 'PROXYBLOCK',
    'SMB_TOS_BLOCK', 'TIMEOUT', 'TOS_BLOCK', 'UNLAUNCHED', 'UNPAIRED', 'UNPAIRED_IDLE'];

  await check('booted', () => {
    if (!(window.Debug && window.Debug.VERSION)) throw new Error('window.Debug.VERSION is not set');
    return 'window.Debug.VERSION ' + window.Debug.VERSION;
  });
  await check('module loader', () => {
    if (typeof window.require !== 'function') throw new Error('window.require is not a function');
    return 'window.require';
  });
  await check('socket state', () => {
    const S = mod('WAWebSocketModel').Socket;
    if (!STATES.includes(S.state)) throw new Error('Socket.state ' + JSON.stringify(S.state) + ' is not a known WAState');
    ['on', 'off'].forEach((f) => fnOf(S, f));
    return 'WAWebSocketModel.Socket.state ' + S.state + ', on/off';
  });
  await check('logout and takeover', () => {
    const S = mod('WAWebSocketModel').Socket;
    fnOf(S, 'logout');
    fnOf(S, 'takeover');
    return 'Socket.logout(), Socket.takeover()';
  });
  await check('qr ref', () => {
    const C = mod('WAWebConnModel').Conn;
    fnOf(C, 'on');
    if (typeof C.ref !== 'string' || !C.ref) throw new Error('Conn.ref is ' + JSON.stringify(C.ref));
    return 'WAWebConnModel.Conn.ref, change:ref';
  });
  await check('qr keys', async () => {
    const reg = await mod('WAWebSignalStoreApi').waSignalStore.getRegistrationInfo();
    const noise = await mod('WAWebUserPrefsInfoStore').waNoiseInfo.get();
    const B64 = mod('WABase64');
    const parts = [B64.encodeB64(noise.staticKeyPair.pubKey), B64.encodeB64(reg.identityKeyPair.pubKey)];
    let where;
    try { parts.push(mod('WAWebUserPrefsMultiDevice').getADVSecretKey()); where = 'WAWebUserPrefsMultiDevice'; }
    catch (e) { parts.push(await mod('WAWebAdvSignatureApi').getADVSecretKey()); where = 'WAWebAdvSignatureApi'; }
    parts.push(mod('WAWebCompanionRegClientUtils').DEVICE_PLATFORM);
    const empty = parts.findIndex((p) => typeof p !== 'string' || !p);
    if (empty >= 0) throw new Error('QR part ' + (empty + 2) + ' is ' + JSON.stringify(parts[empty]));
    return 'noise key, identity key, ADV secret (' + where + '), platform ' + parts[3];
  });
  await check('refresh qr and logout events', () => {
    const Cmd = mod('WAWebCmd').Cmd;
    fnOf(Cmd, 'refreshQR');
    fnOf(Cmd, 'on');
    return 'WAWebCmd.Cmd.refreshQR(), Cmd.on(logout|logout_from_bridge)';
  });
  await check('own number', () => {
    const me = mod('WAWebUserPrefsMeUser');
    fnOf(me, 'getMaybeMePnUser');
    return 'WAWebUserPrefsMeUser.getMaybeMePnUser()';
  });
  await check('pairing code', () => {
    const api = mod('WAWebAltDeviceLinkingApi');
    ['setPairingType', 'initializeAltDeviceLinking', 'startAltLinkingFlow'].forEach((f) => fnOf(api, f));
    return 'WAWebAltDeviceLinkingApi.setPairingType/initializeAltDeviceLinking/startAltLinkingFlow';
  });
  // Messages (messages_watch.js, number_id.js, send_text.js): a page whose message events
  // cannot be heard looks healthy while every incoming message is lost.
  await check('message events', () => {
    const { Msg, Chat } = mod('WAWebCollections');
    ['on', 'off', 'get'].forEach((f) => fnOf(Msg, f));
    fnOf(Chat, 'get');
    return 'WAWebCollections.Msg.on(add|change:ack)/off/get, Chat.get';
  });
  await check('number check', () => {
    fnOf(mod('WAWebWidFactory'), 'createWid');
    fnOf(mod('WAWebQueryExistsJob'), 'queryWidExists');
    return 'WAWebWidFactory.createWid(), WAWebQueryExistsJob.queryWidExists()';
  });
  await check('send text', () => {
    const W = mod('WAWebWidFactory');
    const MsgKey = mod('WAWebMsgKey');
    fnOf(MsgKey, 'newId');
    fnOf(mod('WAWebFindChatAction'), 'findOrCreateLatestChat');
    fnOf(mod('WAWebGetEphemeralFieldsMsgActionsUtils'), 'getEphemeralFields');
    fnOf(mod('WAWebSendMsgChatAction'), 'addAndSendMsgToChat');
    // The agent recognises a repeated send by the key its id makes: check the key's shape.
    const key = new MsgKey({ from: W.createWid('1@c.us'), to: W.createWid('2@c.us'), id: 'CANARY', selfDir: 'out' });
    if (String(key._serialized) !== 'true_2@c.us_CANARY') throw new Error('MsgKey._serialized is ' + JSON.stringify(key._serialized));
    return 'WAWebMsgKey (true_<chat>_<id>), WAWebFindChatAction, WAWebGetEphemeralFieldsMsgActionsUtils, WAWebSendMsgChatAction.addAndSendMsgToChat()';
  });
  return { version: (window.Debug && window.Debug.VERSION) || null, checks };
}
