import { useState, type FormEvent } from 'react';
import { ApiError, login } from '../api';
import { authFromLogin, type StoredAuth } from '../auth';
import { errorMessage, useI18n } from '../i18n';

export function LoginPage({ onLoggedIn }: { onLoggedIn: (auth: StoredAuth) => void }) {
  const { t } = useI18n();
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const auth = authFromLogin(await login(username, password));
      if (!auth) throw new ApiError(500, 'BAD_REQUEST', 'login answer without token or expiry');
      onLoggedIn(auth);
    } catch (err) {
      const code = err instanceof ApiError ? err.code : 'unknown';
      if (code === 'UNAUTHENTICATED') setError(t('login.invalid'));
      else if (code === 'RATE_LIMITED') setError(t('login.rateLimited'));
      else setError(errorMessage(t, code));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="login" id="main">
      <form className="card login__form" onSubmit={(e) => void submit(e)} aria-labelledby="login-heading">
        <h1 id="login-heading">{t('login.heading')}</h1>
        <label htmlFor="username">{t('login.username')}</label>
        <input
          id="username"
          name="username"
          autoComplete="username"
          required
          value={username}
          onChange={(e) => setUsername(e.target.value)}
        />
        <label htmlFor="password">{t('login.password')}</label>
        <input
          id="password"
          name="password"
          type="password"
          autoComplete="current-password"
          required
          value={password}
          onChange={(e) => setPassword(e.target.value)}
        />
        {error && (
          <p className="alert" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="button button--primary" disabled={busy}>
          {busy ? t('login.submitting') : t('login.submit')}
        </button>
      </form>
    </main>
  );
}
