import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'react';
import { io, type Socket } from 'socket.io-client';
import { ApiError, disconnectSession, getSession, requestQr as restRequestQr } from '../api';
import { reportReachable } from '../connectivity';
import type {
  ConnectionErrorEvent,
  LastError,
  QrCodeEvent,
  QrExpiredEvent,
  QrStatus,
  SessionSnapshot,
  SessionStatus,
  SessionStatusEvent,
} from '../types';
import { effectiveStatus } from '../types';
import { backoffDelay } from './backoff';
import { retryAtMs } from './retry';
import { qrDataUrl } from './qrImage';

export interface QrInfo {
  /** A data: URL of the image, or null while it is being rendered. */
  image: string | null;
  qrString: string;
  expiresAt: string | null;
}

export interface LiveError {
  code: string;
  message: string;
  /** When a retry may succeed (ms since the epoch), when the hub said (RATE_LIMITED). */
  retryAt?: number;
}

/** A LiveError, with `retryAt` only when the hub gave a wait. */
function liveError(code: string, message: string, retryAfterSec: number | null | undefined): LiveError {
  const retryAt = retryAtMs(retryAfterSec, Date.now());
  return retryAt === null ? { code, message } : { code, message, retryAt };
}

export interface LiveState {
  loaded: boolean;
  displayName: string | null;
  status: SessionStatus | null;
  qrStatus: QrStatus | null;
  phoneNumber: string | null;
  connectedAt: string | null;
  lastError: LastError | null;
  qr: QrInfo | null;
  qrExpired: boolean;
  socketConnected: boolean;
  error: LiveError | null;
}

export interface LiveSession extends LiveState {
  /** Asks for a fresh QR. `silent` requests (the automatic refresh) never show errors. */
  requestQr: (opts?: { silent?: boolean }) => Promise<void>;
  disconnect: () => Promise<void>;
  clearError: () => void;
}

export interface LiveOptions {
  instanceId: string;
  token: string;
  onUnauthorized?: () => void;
  /** REST polling period while the socket is down. */
  pollIntervalMs?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

const initial: LiveState = {
  loaded: false,
  displayName: null,
  status: null,
  qrStatus: null,
  phoneNumber: null,
  connectedAt: null,
  lastError: null,
  qr: null,
  qrExpired: false,
  socketConnected: false,
  error: null,
};

/** QR fields implied by a status change: a linked or finished session shows no QR. */
function qrAfterStatus(state: LiveState, status: SessionStatus | null, qrStatus: QrStatus | null): Pick<LiveState, 'qr' | 'qrExpired'> {
  if (status === 'connected' || status === 'connecting' || qrStatus === 'used') return { qr: null, qrExpired: false };
  if (qrStatus === 'expired') return { qr: null, qrExpired: true };
  if (status === 'disconnected' || status === 'error' || qrStatus === 'none') return { qr: null, qrExpired: state.qrExpired };
  return { qr: state.qr, qrExpired: state.qrExpired };
}

/**
 * Live state of one session: a REST snapshot first, then socket.io pushes (docs/design.md §4).
 * The socket reconnects with exponential back-off of its own (socket.io's built-in reconnection
 * gives up after a rejected handshake); while it is down the snapshot is polled over REST so the
 * page stays current, and the polling stops as soon as the socket is back.
 */
export function useSessionLive({
  instanceId,
  token,
  onUnauthorized,
  pollIntervalMs = 3000,
  backoffBaseMs = 1000,
  backoffMaxMs = 10_000,
}: LiveOptions): LiveSession {
  const [state, setState] = useState<LiveState>(initial);
  const socketRef = useRef<Socket | null>(null);
  const unauthorizedRef = useRef(onUnauthorized);
  // The latest callback, without re-subscribing when a parent passes a new closure.
  useLayoutEffect(() => {
    unauthorizedRef.current = onUnauthorized;
  });

  const applySnapshot = useCallback((snap: SessionSnapshot) => {
    const qrString = snap.qr_status === 'generated' && snap.qr_string ? snap.qr_string : null;
    const status = effectiveStatus(snap.status, snap.updated_at);
    setState((s) => {
      const next: LiveState = {
        ...s,
        loaded: true,
        displayName: snap.display_name ?? s.displayName,
        status,
        qrStatus: snap.qr_status ?? null,
        phoneNumber: snap.phone_number ?? null,
        connectedAt: snap.connected_at ?? null,
        lastError: snap.last_error ?? null,
        ...qrAfterStatus(s, status, snap.qr_status ?? null),
      };
      if (qrString && next.status !== 'connected') {
        const same = s.qr?.qrString === qrString;
        next.qr = same ? { ...s.qr!, expiresAt: snap.qr_expires_at ?? s.qr!.expiresAt } : { image: null, qrString, expiresAt: snap.qr_expires_at };
        next.qrExpired = false;
      }
      return next;
    });
    if (qrString) {
      qrDataUrl(qrString)
        .then((image) =>
          setState((s) => (s.qr && s.qr.qrString === qrString && !s.qr.image ? { ...s, qr: { ...s.qr, image } } : s)),
        )
        .catch(() => {
          // The text is still shown by the next socket push; nothing useful to tell the user.
        });
    }
  }, []);

  const handleApiError = useCallback((err: unknown, silent: boolean) => {
    if (!(err instanceof ApiError)) return;
    if (err.code === 'UNAUTHENTICATED') {
      unauthorizedRef.current?.();
      return;
    }
    // Unreachable hub is shown by the global banner; no second message for it.
    if (silent || err.status === 0) return;
    setState((s) => ({ ...s, error: liveError(err.code, err.message, err.retryAfterSec) }));
  }, []);

  const refresh = useCallback(
    async (silent: boolean) => {
      try {
        applySnapshot(await getSession(token, instanceId));
      } catch (err) {
        handleApiError(err, silent);
      }
    },
    [applySnapshot, handleApiError, instanceId, token],
  );

  useEffect(() => {
    let disposed = false;
    let attempt = 0;
    // The hub answers both a handshake token and `authenticate` with `authenticated`; subscribe
    // once per connection.
    let subscribed = false;
    let reconnectTimer: ReturnType<typeof setTimeout> | undefined;
    let pollTimer: ReturnType<typeof setInterval> | undefined;
    // A new instance (or token) starts from a clean view before subscribing to it.
    // eslint-disable-next-line react-hooks/set-state-in-effect
    setState(initial);

    const startPolling = () => {
      if (pollTimer !== undefined || disposed) return;
      pollTimer = setInterval(() => void refresh(true), pollIntervalMs);
    };
    const stopPolling = () => {
      if (pollTimer !== undefined) clearInterval(pollTimer);
      pollTimer = undefined;
    };
    const scheduleReconnect = () => {
      if (reconnectTimer !== undefined || disposed) return;
      const delay = backoffDelay(attempt++, backoffBaseMs, backoffMaxMs);
      reconnectTimer = setTimeout(() => {
        reconnectTimer = undefined;
        if (!disposed) socket.connect();
      }, delay);
    };
    const mine = (id: string | undefined) => id === undefined || id === instanceId;

    const socket = io({
      path: '/socket.io',
      auth: { token },
      reconnection: false,
      autoConnect: false,
    });
    socketRef.current = socket;

    socket.on('connect', () => {
      attempt = 0;
      subscribed = false;
      stopPolling();
      reportReachable();
      setState((s) => ({ ...s, socketConnected: true }));
      socket.emit('authenticate', { token });
    });
    socket.on('authenticated', () => {
      if (subscribed) return;
      subscribed = true;
      socket.emit('subscribe-session', { instance_id: instanceId });
    });
    socket.on('disconnect', (reason: string) => {
      setState((s) => ({ ...s, socketConnected: false }));
      if (disposed || reason === 'io client disconnect') return;
      void refresh(true);
      startPolling();
      scheduleReconnect();
    });
    socket.on('connect_error', (err: Error & { data?: { error?: string } }) => {
      setState((s) => ({ ...s, socketConnected: false }));
      if (disposed) return;
      if (err?.data?.error === 'UNAUTHENTICATED' || err?.message === 'UNAUTHENTICATED') {
        unauthorizedRef.current?.();
        return;
      }
      startPolling();
      scheduleReconnect();
    });
    socket.on('session-status', (ev: SessionStatusEvent) => {
      if (!mine(ev.instance_id)) return;
      const status = effectiveStatus(ev.status, ev.updatedAt);
      setState((s) => ({
        ...s,
        loaded: true,
        status,
        qrStatus: ev.qr_status ?? null,
        phoneNumber: ev.phoneNumber ?? null,
        connectedAt: ev.connectedAt ?? null,
        lastError: ev.lastError === undefined ? s.lastError : ev.lastError,
        ...qrAfterStatus(s, status, ev.qr_status ?? null),
      }));
    });
    socket.on('qr-code', (ev: QrCodeEvent) => {
      if (!mine(ev.instance_id)) return;
      setState((s) => ({
        ...s,
        qr: { image: ev.qr, qrString: ev.qr_string, expiresAt: ev.expiresAt },
        qrExpired: false,
        error: null,
      }));
    });
    socket.on('qr-expired', (ev: QrExpiredEvent) => {
      if (!mine(ev.instance_id)) return;
      setState((s) => ({ ...s, qr: null, qrExpired: true }));
    });
    socket.on('connection-error', (ev: ConnectionErrorEvent) => {
      if (!mine(ev.instance_id)) return;
      if (ev.error === 'UNAUTHENTICATED') {
        unauthorizedRef.current?.();
        return;
      }
      setState((s) => ({ ...s, error: liveError(ev.error, ev.message, ev.retryAfter) }));
    });

    // First paint from REST (fast, and tells 403/404 plainly), then live updates.
    void refresh(false).then(() => {
      if (!disposed) socket.connect();
    });

    return () => {
      disposed = true;
      if (reconnectTimer !== undefined) clearTimeout(reconnectTimer);
      stopPolling();
      socket.off();
      socket.disconnect();
      socketRef.current = null;
    };
  }, [instanceId, token, pollIntervalMs, backoffBaseMs, backoffMaxMs, refresh]);

  const requestQr = useCallback(
    async ({ silent = false }: { silent?: boolean } = {}) => {
      if (!silent) setState((s) => ({ ...s, error: null, qrExpired: false }));
      const socket = socketRef.current;
      if (!silent && socket?.connected) {
        socket.emit('request-qr', { instance_id: instanceId });
        return;
      }
      try {
        const snap = await restRequestQr(token, instanceId);
        // A silent refresh leaves the screen to the pushes: its answer may still describe the
        // round being replaced, which would flash an expiry the user has nothing to do about.
        if (!silent) applySnapshot(snap);
      } catch (err) {
        handleApiError(err, silent);
      }
    },
    [applySnapshot, handleApiError, instanceId, token],
  );

  const disconnect = useCallback(async () => {
    setState((s) => ({ ...s, error: null }));
    try {
      await disconnectSession(token, instanceId);
    } catch (err) {
      handleApiError(err, false);
      return;
    }
    await refresh(true);
  }, [handleApiError, instanceId, refresh, token]);

  const clearError = useCallback(() => setState((s) => ({ ...s, error: null })), []);

  return { ...state, requestQr, disconnect, clearError };
}
