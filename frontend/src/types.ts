// Wire types of the hub (docs/design.md §3 and §4).

export type SessionStatus = 'init' | 'qr_required' | 'connecting' | 'connected' | 'disconnected' | 'error';
export type QrStatus = 'none' | 'generated' | 'expired' | 'used';

export interface LastError {
  code: string;
  message?: string;
  at?: string;
}

/** REST snapshot of one session. */
export interface SessionSnapshot {
  instance_id: string;
  tenant: string;
  /** Additive fields some hubs send (the project's hub does). */
  namespace?: string;
  display_name?: string | null;
  status: SessionStatus | null;
  qr_status: QrStatus | null;
  qr_string: string | null;
  qr_expires_at: string | null;
  phone_number: string | null;
  connected_at: string | null;
  updated_at: string | null;
  last_error: LastError | null;
}

export interface AuthUser {
  username: string;
  tenants: string[];
  role: string;
}

export interface LoginResponse {
  token: string;
  expiresAt: string | number;
  user: AuthUser;
}

// socket.io payloads, server → client.
export interface SessionStatusEvent {
  instance_id: string;
  status: SessionStatus | null;
  qr_status: QrStatus | null;
  connectedAt: string | null;
  phoneNumber: string | null;
  updatedAt: string | null;
  lastError?: LastError | null;
}

export interface QrCodeEvent {
  instance_id: string;
  qr: string;
  qr_string: string;
  expiresAt: string;
}

export interface QrExpiredEvent {
  instance_id: string;
  message: string;
}

export interface ConnectionErrorEvent {
  instance_id?: string;
  error: string;
  message: string;
  /** RATE_LIMITED: seconds until a new QR round may be requested. */
  retryAfter?: number;
}

/**
 * The hub reports `init` for a session whose agent never wrote a status (e.g. created Stopped
 * and never started). That is not "connecting": nothing runs yet, so it reads as disconnected.
 */
export function effectiveStatus(status: SessionStatus | null | undefined, updatedAt: string | null | undefined): SessionStatus | null {
  if (status === 'init' && !updatedAt) return null;
  return status ?? null;
}
