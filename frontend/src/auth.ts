import type { AuthUser, LoginResponse } from './types';

// The login is kept in localStorage so a reload keeps the user signed in, but only until the
// token's expiry: past it the hub would answer 401 anyway, so the app drops it first.
const KEY = 'wa.auth';

export interface StoredAuth {
  token: string;
  /** Expiry in milliseconds since the epoch. */
  expiresAtMs: number;
  user: AuthUser;
}

/** Accepts RFC 3339 text, seconds or milliseconds since the epoch; falls back to the JWT's `exp`. */
export function expiryMs(expiresAt: string | number | undefined | null, token: string): number | null {
  if (typeof expiresAt === 'number' && Number.isFinite(expiresAt)) {
    return expiresAt < 1e12 ? expiresAt * 1000 : expiresAt;
  }
  if (typeof expiresAt === 'string' && expiresAt !== '') {
    if (/^\d+$/.test(expiresAt)) return expiryMs(Number(expiresAt), token);
    const parsed = Date.parse(expiresAt);
    if (!Number.isNaN(parsed)) return parsed;
  }
  try {
    const payload = token.split('.')[1];
    const claims = JSON.parse(atob(payload.replace(/-/g, '+').replace(/_/g, '/'))) as { exp?: number };
    return typeof claims.exp === 'number' ? claims.exp * 1000 : null;
  } catch {
    return null;
  }
}

export function authFromLogin(res: LoginResponse): StoredAuth | null {
  const expiresAtMs = expiryMs(res.expiresAt, res.token);
  if (!res.token || expiresAtMs === null) return null;
  return { token: res.token, expiresAtMs, user: res.user };
}

export function saveAuth(auth: StoredAuth): void {
  localStorage.setItem(KEY, JSON.stringify(auth));
}

export function clearAuth(): void {
  localStorage.removeItem(KEY);
}

/** The stored login if it has not expired yet; an expired one is removed. */
export function loadAuth(now: number = Date.now()): StoredAuth | null {
  const raw = localStorage.getItem(KEY);
  if (!raw) return null;
  try {
    const auth = JSON.parse(raw) as StoredAuth;
    if (typeof auth.token === 'string' && typeof auth.expiresAtMs === 'number' && auth.expiresAtMs > now) {
      return auth;
    }
  } catch {
    // Unreadable entry: treat as signed out.
  }
  clearAuth();
  return null;
}
