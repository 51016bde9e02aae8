// Starts a new QR round after the page stopped offering QRs (UNPAIRED_IDLE), as
// whatsapp-web.js does in onAuthAppStateChangedEvent.
() => { window.require('WAWebCmd').Cmd.refreshQR(); return true; }
