import { useEffect, useLayoutEffect, useRef, useState } from 'react';
import { useI18n } from '../i18n';

export interface QRCodeDisplayProps {
  /** The QR image (a data: URL); null while one is being generated. */
  qrCode: string | null;
  /** When the QR stops being valid (RFC 3339 or ms since the epoch). */
  expiresAt: string | number | null;
  /** Called once per QR when its countdown reaches zero. */
  onExpired?: () => void;
  /** Called once per QR `refreshLeadSeconds` before expiry, so a fresh one can be requested in time. */
  onRefreshDue?: () => void;
  refreshLeadSeconds?: number;
}

function toMs(expiresAt: string | number | null): number | null {
  if (expiresAt === null) return null;
  const ms = typeof expiresAt === 'number' ? expiresAt : Date.parse(expiresAt);
  return Number.isNaN(ms) ? null : ms;
}

export function QRCodeDisplay({ qrCode, expiresAt, onExpired, onRefreshDue, refreshLeadSeconds = 10 }: QRCodeDisplayProps) {
  const { t } = useI18n();
  const expiresMs = toMs(expiresAt);
  const [now, setNow] = useState(() => Date.now());
  const firedExpired = useRef<number | null>(null);
  const firedRefresh = useRef<number | null>(null);
  const onExpiredRef = useRef(onExpired);
  const onRefreshDueRef = useRef(onRefreshDue);
  // The latest callbacks, without restarting the timers when a parent passes new closures.
  useLayoutEffect(() => {
    onExpiredRef.current = onExpired;
    onRefreshDueRef.current = onRefreshDue;
  });

  useEffect(() => {
    if (!qrCode || expiresMs === null) return;
    // The clock stood still while no QR was shown: catch it up for this QR's countdown.
    // eslint-disable-next-line react-hooks/set-state-in-effect
    setNow(Date.now());
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, [qrCode, expiresMs]);

  const remaining = expiresMs === null ? null : Math.max(0, Math.ceil((expiresMs - now) / 1000));

  useEffect(() => {
    if (!qrCode || expiresMs === null || remaining === null) return;
    if (remaining <= refreshLeadSeconds && remaining > 0 && firedRefresh.current !== expiresMs) {
      firedRefresh.current = expiresMs;
      onRefreshDueRef.current?.();
    }
    if (remaining === 0 && firedExpired.current !== expiresMs) {
      firedExpired.current = expiresMs;
      onExpiredRef.current?.();
    }
  }, [qrCode, expiresMs, remaining, refreshLeadSeconds]);

  if (!qrCode) {
    return (
      <div className="qr qr--generating" role="status" aria-live="polite" data-testid="qr-spinner">
        <span className="spinner" aria-hidden="true" />
        <span>{t('qr.generating')}</span>
      </div>
    );
  }
  if (remaining === 0) {
    return (
      <div className="qr qr--expired" role="alert" data-testid="qr-expired">
        {t('qr.expired')}
      </div>
    );
  }
  return (
    <figure className="qr">
      <img data-testid="qr-code" className="qr__image" src={qrCode} alt={t('qr.alt')} width={264} height={264} />
      <figcaption>
        <p className="qr__instructions">{t('qr.instructions')}</p>
        {remaining !== null && (
          <p className="qr__countdown" data-testid="qr-countdown">
            {t('qr.expiresIn', { s: remaining })}
          </p>
        )}
      </figcaption>
    </figure>
  );
}
