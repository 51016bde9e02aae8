import { reportReachable, reportUnreachable } from './connectivity';
import { parseRetryAfter } from './live/retry';
import type { LoginResponse, SessionSnapshot } from './types';

/** An error answered by the hub (`{"error": CODE, "message"}`) or a failure to reach it. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Seconds after which a retry may succeed (429 with `Retry-After`), else null. */
    readonly retryAfterSec: number | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const codeForStatus: Record<number, string> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHENTICATED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  409: 'CONFLICT',
  429: 'RATE_LIMITED',
  502: 'UNAVAILABLE',
  503: 'UNAVAILABLE',
  504: 'TIMEOUT',
};

/** Called on any 401 so the app can return to the login page. */
let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(handler: () => void) {
  onUnauthorized = handler;
}

async function request<T>(path: string, init: { method?: string; body?: unknown; token?: string | null } = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (init.body !== undefined) headers['Content-Type'] = 'application/json';
  if (init.token) headers.Authorization = `Bearer ${init.token}`;
  let res: Response;
  try {
    res = await fetch(path, {
      method: init.method ?? 'GET',
      headers,
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
  } catch (err) {
    // fetch only rejects when no HTTP answer came back: the hub is down or unreachable.
    reportUnreachable();
    throw new ApiError(0, 'UNAVAILABLE', err instanceof Error ? err.message : String(err));
  }
  // A proxy in front of a stopped hub answers 502/504; the hub itself answers 503 when it
  // cannot reach Kubernetes. Both mean "not available right now" for the user.
  if (res.status === 502 || res.status === 503 || res.status === 504) reportUnreachable();
  else reportReachable();

  const text = await res.text();
  let body: unknown = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (!res.ok) {
    const err = (body ?? {}) as { error?: string; message?: string };
    const code = err.error ?? codeForStatus[res.status] ?? `HTTP_${res.status}`;
    if (res.status === 401 && init.token) onUnauthorized();
    throw new ApiError(res.status, code, err.message ?? res.statusText, parseRetryAfter(res.headers.get('Retry-After'), Date.now()));
  }
  return body as T;
}

export function login(username: string, password: string): Promise<LoginResponse> {
  return request('/api/auth/login', { method: 'POST', body: { username, password } });
}

export async function listSessions(token: string): Promise<SessionSnapshot[]> {
  const body = await request<SessionSnapshot[] | { sessions: SessionSnapshot[] }>('/api/session-manager/sessions', { token });
  return Array.isArray(body) ? body : (body?.sessions ?? []);
}

const sessionPath = (id: string) => `/api/session-manager/sessions/${encodeURIComponent(id)}`;

export function getSession(token: string, id: string): Promise<SessionSnapshot> {
  return request(sessionPath(id), { token });
}

export function requestQr(token: string, id: string): Promise<SessionSnapshot> {
  return request(`${sessionPath(id)}/qr`, { method: 'POST', token, body: {} });
}

export function disconnectSession(token: string, id: string): Promise<{ ok: boolean }> {
  return request(`${sessionPath(id)}/disconnect`, { method: 'POST', token, body: {} });
}
