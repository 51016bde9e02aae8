// Sends a text to a `<digits>@c.us` chat with the message id the agent chose, the way
// whatsapp-web.js 1.34.7 sendMessage does (src/util/Injected/Utils.js getChat and sendMessage;
// docs/fake-whatsapp.md rows M2-M4), but without marking the chat seen: read receipts are the
// user's. When the page already holds a message with this key (a send repeated after a crash)
// that message is answered and nothing is sent. Returns {id, to, timestamp, ack, existed} once
// the page has added the message; its server ack may come later (change:ack).
async (chatId, body, id) => {
  const req = (name) => window.require(name);
  const { Msg, Chat } = req('WAWebCollections');
  const chatWid = req('WAWebWidFactory').createWid(chatId);
  const me = req('WAWebUserPrefsMeUser');
  const from = me.getMaybeMePnUser();
  if (!from) throw new Error('the page has no own number (not linked)');
  const key = new (req('WAWebMsgKey'))({ from, to: chatWid, id, selfDir: 'out' });
  const answer = (msg, existed) => ({
    id: String(key._serialized), to: String(chatWid._serialized),
    timestamp: Number(msg.t) || 0, ack: typeof msg.ack === 'number' ? msg.ack : 0, existed,
  });
  const existing = Msg.get(key._serialized);
  if (existing) return answer(existing, true);
  const chat = Chat.get(chatWid) ||
    (await req('WAWebFindChatAction').findOrCreateLatestChat(chatWid))?.chat;
  if (!chat) throw new Error('no chat for ' + chatWid._serialized);
  const message = Object.assign({
    id: key, ack: 0, body, from, to: chat.id, local: true, self: 'out',
    t: Math.floor(Date.now() / 1000), isNewMsg: true, type: 'chat',
  }, req('WAWebGetEphemeralFieldsMsgActionsUtils').getEphemeralFields(chat));
  const [added] = req('WAWebSendMsgChatAction').addAndSendMsgToChat(chat, message);
  await added;
  const msg = Msg.get(key._serialized);
  if (!msg) throw new Error('the page did not add the message ' + key._serialized);
  return answer(msg, false);
}
