// Logs this linked device out of WhatsApp (whatsapp-web.js Client.logout()). Not awaited:
// the page navigates away while logging out; the agent watches the state instead.
() => { const p = window.require('WAWebSocketModel').Socket.logout(); if (p && p.catch) p.catch(() => {}); return true; }
