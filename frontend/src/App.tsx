import { useCallback, useEffect, useMemo, useState } from 'react';
import { setUnauthorizedHandler } from './api';
import { clearAuth, loadAuth, saveAuth, type StoredAuth } from './auth';
import { AuthContext } from './authContext';
import { LoginPage } from './components/LoginPage';
import { ServiceBanner } from './components/ServiceBanner';
import { SessionList } from './components/SessionList';
import { WhatsAppConnection } from './components/WhatsAppConnection';
import { useI18n, type Lang } from './i18n';
import { navigate, useRoute } from './router';

// setTimeout cannot wait longer than this; a later expiry is re-checked on the next load.
const MAX_TIMER_MS = 2 ** 31 - 1;

export function App() {
  const { t, lang, setLang } = useI18n();
  const [auth, setAuth] = useState<StoredAuth | null>(() => loadAuth());
  const route = useRoute();

  const logout = useCallback(() => {
    clearAuth();
    setAuth(null);
  }, []);

  useEffect(() => setUnauthorizedHandler(logout), [logout]);

  // Back to the login page the moment the token expires, even with the page left open.
  useEffect(() => {
    if (!auth) return;
    const timer = setTimeout(logout, Math.min(MAX_TIMER_MS, Math.max(0, auth.expiresAtMs - Date.now())));
    return () => clearTimeout(timer);
  }, [auth, logout]);

  const onLoggedIn = useCallback((next: StoredAuth) => {
    saveAuth(next);
    setAuth(next);
    if (!window.location.hash.startsWith('#/whatsapp')) navigate('#/whatsapp');
  }, []);

  const openSingle = useCallback((id: string) => navigate(`#/whatsapp/${encodeURIComponent(id)}`, true), []);
  const authValue = useMemo(() => (auth ? { auth, logout } : null), [auth, logout]);

  return (
    <>
      <a className="skip-link" href="#main">
        {lang === 'es' ? 'Saltar al contenido' : 'Skip to content'}
      </a>
      <header className="topbar">
        <span className="topbar__brand">{t('app.title')}</span>
        {auth && (
          <nav aria-label={lang === 'es' ? 'Principal' : 'Main'} className="topbar__nav">
            <a href="#/whatsapp" aria-current="page">
              {t('nav.whatsapp')}
            </a>
          </nav>
        )}
        <div className="topbar__tools">
          <label className="visually-hidden" htmlFor="lang">
            {t('nav.language')}
          </label>
          <select id="lang" value={lang} onChange={(e) => setLang(e.target.value as Lang)}>
            <option value="es">Español</option>
            <option value="en">English</option>
          </select>
          {auth && (
            <button type="button" className="button--link" onClick={logout}>
              {t('nav.logout')} ({auth.user?.username})
            </button>
          )}
        </div>
      </header>
      <ServiceBanner />
      {!authValue ? (
        <LoginPage onLoggedIn={onLoggedIn} />
      ) : (
        <AuthContext.Provider value={authValue}>
          <main id="main" className="content">
            {route.page === 'session' ? (
              <>
                <a className="back-link" href="#/whatsapp?all">
                  ← {t('session.back')}
                </a>
                <WhatsAppConnection key={route.instanceId} instance_id={route.instanceId} />
              </>
            ) : (
              <SessionList openSingle={route.all ? undefined : openSingle} />
            )}
          </main>
        </AuthContext.Provider>
      )}
    </>
  );
}
