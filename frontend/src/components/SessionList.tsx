import { useEffect, useState } from 'react';
import { ApiError, listSessions } from '../api';
import { useAuth } from '../authContext';
import { errorMessage, useI18n } from '../i18n';
import { effectiveStatus, type SessionSnapshot } from '../types';
import { SessionStatusIndicator } from './SessionStatusIndicator';

export interface SessionListProps {
  /** Open the only session directly (the usual case: one WhatsApp number per customer). */
  openSingle?: (instanceId: string) => void;
  pollIntervalMs?: number;
}

export function SessionList({ openSingle, pollIntervalMs = 5000 }: SessionListProps) {
  const { t } = useI18n();
  const { auth } = useAuth();
  const [sessions, setSessions] = useState<SessionSnapshot[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let cancelled = false;
    let first = true;
    const load = async () => {
      try {
        const list = await listSessions(auth.token);
        if (cancelled) return;
        list.sort((a, b) => a.instance_id.localeCompare(b.instance_id));
        setSessions(list);
        setError(null);
        if (first && list.length === 1) openSingle?.(list[0].instance_id);
        first = false;
      } catch (err) {
        // An unreachable hub is shown by the banner; keep the last list on screen meanwhile.
        if (!cancelled && err instanceof ApiError && err.status !== 0) setError(errorMessage(t, err.code));
      }
    };
    void load();
    const timer = setInterval(() => void load(), pollIntervalMs);
    return () => {
      cancelled = true;
      clearInterval(timer);
    };
  }, [auth.token, openSingle, pollIntervalMs, t]);

  return (
    <section aria-labelledby="sessions-heading">
      <h1 id="sessions-heading">{t('sessions.heading')}</h1>
      {error && (
        <p className="alert" role="alert">
          {error}
        </p>
      )}
      {sessions === null && !error && <p role="status">{t('sessions.loading')}</p>}
      {sessions?.length === 0 && <p>{t('sessions.empty')}</p>}
      {sessions && sessions.length > 0 && (
        <ul className="session-list">
          {sessions.map((s) => (
            <li key={s.instance_id} className="card session-list__item" data-testid="session-item" data-instance={s.instance_id}>
              <a className="session-list__link" href={`#/whatsapp/${encodeURIComponent(s.instance_id)}`}>
                {s.display_name ?? s.instance_id}
              </a>
              <span className="session-list__tenant">
                {t('sessions.tenant')}: {s.tenant}
              </span>
              <SessionStatusIndicator status={effectiveStatus(s.status, s.updated_at)} phoneNumber={s.phone_number} live={false} />
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
