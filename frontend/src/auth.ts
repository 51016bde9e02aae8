import type { AuthUser, LoginResponse } from './types';

// Where the token lives (docs/frontend.md "Where the token lives"): in sessionStorage, i.e.
// with this tab only. A reload keeps the user signed in; closing the tab ends the login, other
// tabs log in on their own, and the token is never written to disk for the next person at the
// machine or kept past the tab. Script on the page could read it from any storage (the
// strict Content-Security-Policy the hub sends is what keeps script out); the app drops it at
// its expiry, since the hub would answer 401 anyway.
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
  sessionStorage.setItem(KEY, JSON.stringify(auth));
}

export function clearAuth(): void {
  sessionStorage.removeItem(KEY);
}

/** The stored login if it has not expired yet; an expired one is removed. */
export function loadAuth(now: number = Date.now()): StoredAuth | null {
  // Earlier versions kept the login in localStorage: a token found there is removed, unused.
  localStorage.removeItem(KEY);
  const raw = sessionStorage.getItem(KEY);
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
