// Requests an 8-character pairing code for a phone number instead of a QR
// (whatsapp-web.js Client.requestPairingCode). Argument: the phone number, digits only.
async (phone) => {
  const api = window.require('WAWebAltDeviceLinkingApi');
  api.setPairingType('ALT_DEVICE_LINKING');
  await api.initializeAltDeviceLinking();
  return await api.startAltLinkingFlow(phone, true);
}
