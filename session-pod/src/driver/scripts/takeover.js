// Takes the session back after CONFLICT (opened in another browser), as whatsapp-web.js
// does with takeoverOnConflict.
() => { window.require('WAWebSocketModel').Socket.takeover(); return true; }
