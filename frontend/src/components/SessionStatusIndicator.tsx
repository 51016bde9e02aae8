import { useI18n, type MessageKey } from '../i18n';
import type { SessionStatus } from '../types';

export type StatusColor = 'red' | 'yellow' | 'green';

/** Colour and label of a session status (docs/design.md §5). Unknown or absent status reads as disconnected. */
export function statusView(status: SessionStatus | null | undefined): { color: StatusColor; key: MessageKey } {
  switch (status) {
    case 'connected':
      return { color: 'green', key: 'status.connected' };
    case 'qr_required':
      return { color: 'yellow', key: 'status.waitingScan' };
    case 'init':
    case 'connecting':
      return { color: 'yellow', key: 'status.connecting' };
    default:
      return { color: 'red', key: 'status.disconnected' };
  }
}

/** "+5491122334455" whether or not the agent stored the leading "+". */
export function formatPhone(phone: string): string {
  return phone.startsWith('+') ? phone : `+${phone}`;
}

export interface SessionStatusIndicatorProps {
  status: SessionStatus | null | undefined;
  phoneNumber?: string | null;
  /** Announce changes to screen readers (off in lists, where many would talk at once). */
  live?: boolean;
}

export function SessionStatusIndicator({ status, phoneNumber, live = true }: SessionStatusIndicatorProps) {
  const { t } = useI18n();
  const { color, key } = statusView(status);
  const label = color === 'green' && phoneNumber ? `${t(key)} (${formatPhone(phoneNumber)})` : t(key);
  return (
    <span
      className={`status status--${color}`}
      data-color={color}
      data-testid="session-status"
      role={live ? 'status' : undefined}
      aria-live={live ? 'polite' : undefined}
    >
      <span className="status__dot" aria-hidden="true" />
      <span className="status__label">{label}</span>
    </span>
  );
}
