import { useEffect, useRef, useState } from 'react';
import { useAuth } from '../authContext';
import { errorMessage, rateLimitedMessage, useI18n } from '../i18n';
import { useCountdown } from '../live/useCountdown';
import { useSessionLive, type LiveError } from '../live/useSessionLive';
import { QRCodeDisplay } from './QRCodeDisplay';
import { SessionStatusIndicator } from './SessionStatusIndicator';

export interface WhatsAppConnectionProps {
  instance_id: string;
  onConnected?: (phoneNumber: string | null) => void;
  onDisconnected?: () => void;
  onError?: (error: LiveError) => void;
  /** Give up waiting for a first QR after this long (the hub normally reports TIMEOUT itself). */
  qrWaitMs?: number;
}

export function WhatsAppConnection({ instance_id, onConnected, onDisconnected, onError, qrWaitMs = 120_000 }: WhatsAppConnectionProps) {
  const { t } = useI18n();
  const { auth, logout } = useAuth();
  const live = useSessionLive({ instanceId: instance_id, token: auth.token, onUnauthorized: logout });
  const [generating, setGenerating] = useState(false);
  const [expiredLocally, setExpiredLocally] = useState<string | null>(null);
  const [timedOut, setTimedOut] = useState(false);
  const prevStatus = useRef(live.status);

  const connected = live.status === 'connected';
  const connecting = live.status === 'connecting';
  // A QR whose countdown ran out locally stays in the state until the next one replaces it.
  const staleQr = live.qr !== null && expiredLocally === live.qr.qrString;
  const qrShown = live.qr !== null && !staleQr && !live.qrExpired;
  const qrExpired = !generating && (live.qrExpired || staleQr);

  // The spinner lasts from the click until something answers: a new QR, a link, an error.
  const newImage = qrShown ? live.qr!.image : null;
  useEffect(() => {
    // The answer arrives from the hub's socket (an external system), not from this render.
    // eslint-disable-next-line react-hooks/set-state-in-effect
    if (newImage || connected || live.error) setGenerating(false);
  }, [newImage, connected, live.error]);

  useEffect(() => {
    if (!generating) return;
    const timer = setTimeout(() => {
      setGenerating(false);
      setTimedOut(true);
    }, qrWaitMs);
    return () => clearTimeout(timer);
  }, [generating, qrWaitMs]);

  useEffect(() => {
    const before = prevStatus.current;
    prevStatus.current = live.status;
    if (before === live.status) return;
    if (live.status === 'connected') onConnected?.(live.phoneNumber);
    else if (before === 'connected' || (live.status === 'disconnected' && before !== null)) onDisconnected?.();
  }, [live.status, live.phoneNumber, onConnected, onDisconnected]);

  const shownError: LiveError | null = live.error ?? (timedOut ? { code: 'TIMEOUT', message: 'no QR received' } : null);
  useEffect(() => {
    if (shownError) onError?.(shownError);
    // Report each distinct error once.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shownError?.code, shownError?.message]);

  const ask = () => {
    setTimedOut(false);
    // With a valid QR on screen the request may well return that same QR: no spinner then.
    if (!qrShown) setGenerating(true);
    void live.requestQr();
  };
  // Only while the user looks at the page: a hidden tab should not keep QR rounds going.
  const refreshDue = () => {
    if (document.visibilityState === 'visible') void live.requestQr({ silent: true });
  };

  const showConnect = live.loaded && !connected && !connecting && !qrShown && !qrExpired && !generating;
  const showRegenerate = !connected && !generating && (qrShown || qrExpired);
  const showDisconnect = connected || live.status === 'connecting';

  // A refused QR request (429) counts down to when the hub accepts the next one, naming the
  // button the user sees; that button waits too, since pressing it earlier is refused again.
  const rateLimited = shownError?.code === 'RATE_LIMITED';
  const retryLeft = useCountdown(rateLimited ? (shownError?.retryAt ?? null) : null);
  const waitingRetry = retryLeft !== null && retryLeft > 0;
  const askButton = showRegenerate ? t('button.regenerate') : t('button.connect');
  const errorText = shownError
    ? rateLimited
      ? rateLimitedMessage(t, retryLeft, askButton)
      : errorMessage(t, shownError.code)
    : '';

  return (
    <section className="connection" aria-labelledby={`session-${instance_id}`}>
      <h2 id={`session-${instance_id}`} className="connection__title">
        {live.displayName ?? instance_id}
      </h2>
      {/* Unknown until the hub answered: a refused (403/404) session shows no status at all. */}
      {live.loaded && <SessionStatusIndicator status={live.status} phoneNumber={live.phoneNumber} />}
      {live.status === 'error' && live.lastError && (
        <p className="connection__last-error">{t('lastError', { message: live.lastError.message ?? live.lastError.code })}</p>
      )}
      {live.loaded && !live.socketConnected && <p className="connection__note">{t('live.offline')}</p>}
      {shownError && (
        <div className="alert" role="alert" data-testid="connection-error" data-code={shownError.code}>
          <span data-testid={rateLimited ? 'qr-retry' : undefined}>{errorText}</span>
          <button
            type="button"
            className="alert__dismiss"
            aria-label={t('error.dismiss')}
            onClick={() => {
              setTimedOut(false);
              live.clearError();
            }}
          >
            ×
          </button>
        </div>
      )}
      {!connected && (qrShown || generating) && (
        <QRCodeDisplay
          qrCode={qrShown ? live.qr!.image : null}
          expiresAt={qrShown ? live.qr!.expiresAt : null}
          onExpired={() => live.qr && setExpiredLocally(live.qr.qrString)}
          onRefreshDue={refreshDue}
        />
      )}
      {!connected && qrExpired && (
        <p className="qr qr--expired" role="alert" data-testid="qr-expired">
          {t('qr.expired')}
        </p>
      )}
      <div className="connection__actions">
        {showConnect && (
          <button type="button" className="button button--primary" onClick={ask} disabled={waitingRetry}>
            {t('button.connect')}
          </button>
        )}
        {showRegenerate && (
          <button type="button" className="button" onClick={ask} disabled={waitingRetry}>
            {t('button.regenerate')}
          </button>
        )}
        {showDisconnect && (
          <button type="button" className="button button--danger" onClick={() => void live.disconnect()}>
            {t('button.disconnect')}
          </button>
        )}
      </div>
    </section>
  );
}
