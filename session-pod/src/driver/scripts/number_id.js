// The WhatsApp id of a number (`<digits>@c.us`), or null when it is not on WhatsApp, as
// whatsapp-web.js 1.34.7 getNumberId asks (src/Client.js; docs/fake-whatsapp.md row M1).
async (number) => {
  const id = String(number).endsWith('@c.us') ? String(number) : String(number) + '@c.us';
  const wid = window.require('WAWebWidFactory').createWid(id);
  const result = await window.require('WAWebQueryExistsJob').queryWidExists(wid);
  if (!result || result.wid === undefined || result.wid === null) return null;
  return String(result.wid._serialized || result.wid);
}
