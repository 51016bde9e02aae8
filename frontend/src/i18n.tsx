import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';

// A small dictionary instead of an i18n library: the UI has few strings and two languages,
// and the Spanish labels are part of the contract (docs/design.md §5), so they live here verbatim.
const es = {
  'app.title': 'LeadMaster',
  'nav.whatsapp': 'WhatsApp',
  'nav.logout': 'Cerrar sesión',
  'nav.language': 'Idioma',
  'login.heading': 'Iniciar sesión',
  'login.username': 'Usuario',
  'login.password': 'Contraseña',
  'login.submit': 'Entrar',
  'login.submitting': 'Entrando…',
  'login.invalid': 'Usuario o contraseña incorrectos.',
  'login.rateLimited': 'Demasiados intentos fallidos. Espere un minuto y vuelva a intentarlo.',
  'sessions.heading': 'Sesiones de WhatsApp',
  'sessions.empty': 'No tiene sesiones de WhatsApp asignadas. Pida a un administrador que cree una.',
  'sessions.loading': 'Cargando sesiones…',
  'sessions.tenant': 'Cliente',
  'sessions.open': 'Abrir',
  'session.back': 'Volver a la lista',
  'status.disconnected': 'Desconectado',
  'status.connecting': 'Conectando...',
  'status.waitingScan': 'Esperando escaneo',
  'status.connected': 'Conectado',
  'status.label': 'Estado',
  'button.connect': 'Conectar WhatsApp',
  'button.regenerate': 'Regenerar QR',
  'button.disconnect': 'Desconectar',
  'qr.alt': 'Código QR para vincular WhatsApp',
  'qr.generating': 'Generando código QR…',
  'qr.expiresIn': 'El código caduca en {s} s',
  'qr.expired': 'QR expirado, genere uno nuevo',
  'qr.instructions': 'Abra WhatsApp en su teléfono › Dispositivos vinculados › Vincular un dispositivo, y escanee el código.',
  'banner.unavailable': 'Servicio temporalmente no disponible',
  'banner.retrying': 'Reintentando automáticamente…',
  'live.offline': 'Actualizaciones en directo interrumpidas; consultando el estado cada pocos segundos.',
  'error.UNAUTHENTICATED': 'Su sesión ha caducado. Inicie sesión de nuevo.',
  'error.FORBIDDEN': 'No tiene permiso para esta sesión de WhatsApp. Pida acceso a un administrador.',
  'error.NOT_FOUND': 'Esta sesión de WhatsApp no existe. Vuelva a la lista y elija otra.',
  'error.RATE_LIMITED': 'Demasiadas solicitudes de QR. Espere un minuto y pulse «{button}».',
  'qr.retryIn': 'Ya se pidió un código QR hace muy poco. Podrá pedir otro en {s} s: entonces pulse «{button}».',
  'qr.retryNow': 'Ya puede pedir un código QR nuevo: pulse «{button}».',
  'error.TIMEOUT': 'El servicio tardó demasiado en responder. Vuelva a pulsar «Conectar WhatsApp».',
  'error.UNAVAILABLE': 'Servicio temporalmente no disponible. Se reintentará automáticamente.',
  'error.BAD_REQUEST': 'Solicitud no válida. Recargue la página y vuelva a intentarlo.',
  'error.CONFLICT': 'El nombre de la sesión es ambiguo. Pida a un administrador que lo revise.',
  'error.unknown': 'Error inesperado ({code}). Vuelva a intentarlo.',
  'error.dismiss': 'Cerrar aviso',
  'lastError': 'Último error: {message}',
} as const;

export type MessageKey = keyof typeof es;

const en: Record<MessageKey, string> = {
  'app.title': 'LeadMaster',
  'nav.whatsapp': 'WhatsApp',
  'nav.logout': 'Log out',
  'nav.language': 'Language',
  'login.heading': 'Sign in',
  'login.username': 'Username',
  'login.password': 'Password',
  'login.submit': 'Sign in',
  'login.submitting': 'Signing in…',
  'login.invalid': 'Wrong username or password.',
  'login.rateLimited': 'Too many failed attempts. Wait a minute and try again.',
  'sessions.heading': 'WhatsApp sessions',
  'sessions.empty': 'You have no WhatsApp sessions. Ask an administrator to create one.',
  'sessions.loading': 'Loading sessions…',
  'sessions.tenant': 'Customer',
  'sessions.open': 'Open',
  'session.back': 'Back to the list',
  'status.disconnected': 'Disconnected',
  'status.connecting': 'Connecting...',
  'status.waitingScan': 'Waiting for scan',
  'status.connected': 'Connected',
  'status.label': 'Status',
  'button.connect': 'Connect WhatsApp',
  'button.regenerate': 'New QR code',
  'button.disconnect': 'Disconnect',
  'qr.alt': 'QR code to link WhatsApp',
  'qr.generating': 'Generating QR code…',
  'qr.expiresIn': 'The code expires in {s} s',
  'qr.expired': 'QR code expired, generate a new one',
  'qr.instructions': 'Open WhatsApp on your phone › Linked devices › Link a device, and scan the code.',
  'banner.unavailable': 'Service temporarily unavailable',
  'banner.retrying': 'Retrying automatically…',
  'live.offline': 'Live updates interrupted; checking the status every few seconds.',
  'error.UNAUTHENTICATED': 'Your login has expired. Please sign in again.',
  'error.FORBIDDEN': 'You may not access this WhatsApp session. Ask an administrator for access.',
  'error.NOT_FOUND': 'This WhatsApp session does not exist. Go back to the list and pick another.',
  'error.RATE_LIMITED': 'Too many QR requests. Wait a minute, then press “{button}”.',
  'qr.retryIn': 'A QR code was requested moments ago. You can ask for another in {s} s: then press “{button}”.',
  'qr.retryNow': 'You can ask for a new QR code now: press “{button}”.',
  'error.TIMEOUT': 'The service took too long to answer. Press “Connect WhatsApp” again.',
  'error.UNAVAILABLE': 'Service temporarily unavailable. It will be retried automatically.',
  'error.BAD_REQUEST': 'Invalid request. Reload the page and try again.',
  'error.CONFLICT': 'The session name is ambiguous. Ask an administrator to check it.',
  'error.unknown': 'Unexpected error ({code}). Please try again.',
  'error.dismiss': 'Dismiss',
  'lastError': 'Last error: {message}',
};

export const dictionaries = { es, en } as const;
export type Lang = keyof typeof dictionaries;
const LANG_KEY = 'wa.lang';

export type Translate = (key: MessageKey, vars?: Record<string, string | number>) => string;

export function translate(lang: Lang, key: MessageKey, vars?: Record<string, string | number>): string {
  const text: string = dictionaries[lang][key] ?? es[key];
  return vars ? text.replace(/\{(\w+)\}/g, (_, name: string) => String(vars[name] ?? `{${name}}`)) : text;
}

/** The message for a `connection-error` / REST error code, falling back to a generic one. */
export function errorMessage(t: Translate, code: string, vars?: Record<string, string | number>): string {
  const key = `error.${code}` as MessageKey;
  return key in es ? t(key, vars) : t('error.unknown', { code });
}

/**
 * What a rate-limited QR request tells the user: when the next request is possible (`left`
 * seconds, a countdown) and which button on screen to press then. Without a wait from the hub,
 * the generic "wait a minute".
 */
export function rateLimitedMessage(t: Translate, left: number | null, button: string): string {
  if (left === null) return t('error.RATE_LIMITED', { button });
  return left > 0 ? t('qr.retryIn', { s: left, button }) : t('qr.retryNow', { button });
}

interface I18nValue {
  lang: Lang;
  setLang: (lang: Lang) => void;
  t: Translate;
}

const I18nContext = createContext<I18nValue>({
  lang: 'es',
  setLang: () => {},
  t: (key, vars) => translate('es', key, vars),
});

function initialLang(): Lang {
  const saved = typeof localStorage !== 'undefined' ? localStorage.getItem(LANG_KEY) : null;
  return saved === 'en' || saved === 'es' ? saved : 'es';
}

export function I18nProvider({ children, lang: forced }: { children: ReactNode; lang?: Lang }) {
  const [lang, setLangState] = useState<Lang>(forced ?? initialLang);
  const setLang = useCallback((next: Lang) => {
    localStorage.setItem(LANG_KEY, next);
    setLangState(next);
  }, []);
  useEffect(() => {
    document.documentElement.lang = lang;
  }, [lang]);
  const value = useMemo<I18nValue>(
    () => ({ lang, setLang, t: (key, vars) => translate(lang, key, vars) }),
    [lang, setLang],
  );
  return <I18nContext.Provider value={value}>{children}</I18nContext.Provider>;
}

export function useI18n(): I18nValue {
  return useContext(I18nContext);
}
