import { vi } from 'vitest';
import type { SessionSnapshot } from '../types';

export type RouteHandler = (init: RequestInit | undefined) => { status: number; body?: unknown; headers?: Record<string, string> } | 'network-error';

/** Replaces fetch with a table of `METHOD path` handlers; unknown routes answer 404. */
export function mockHub(routes: Record<string, RouteHandler>) {
  const fetchMock = vi.fn((input: RequestInfo | URL, init?: RequestInit) => {
    const url = urlOf(input);
    const key = `${init?.method ?? 'GET'} ${url}`;
    const handler = routes[key];
    const result = handler ? handler(init) : { status: 404, body: { error: 'NOT_FOUND', message: key } };
    if (result === 'network-error') return Promise.reject(new TypeError('Failed to fetch'));
    return Promise.resolve(new Response(result.body === undefined ? '' : JSON.stringify(result.body), {
      status: result.status,
      headers: { 'Content-Type': 'application/json', ...result.headers },
    }));
  });
  vi.stubGlobal('fetch', fetchMock);
  return fetchMock;
}

function urlOf(input: RequestInfo | URL): string {
  if (typeof input === 'string') return input;
  return input instanceof Request ? input.url : input.href;
}

export function calls(fetchMock: ReturnType<typeof mockHub>, key: string): number {
  return fetchMock.mock.calls.filter(([input, init]) => `${init?.method ?? 'GET'} ${urlOf(input)}` === key).length;
}

export function snapshot(over: Partial<SessionSnapshot> = {}): SessionSnapshot {
  return {
    instance_id: 'acme-main',
    tenant: 'acme',
    status: 'disconnected',
    qr_status: 'none',
    qr_string: null,
    qr_expires_at: null,
    phone_number: null,
    connected_at: null,
    updated_at: '2026-01-01T00:00:00Z',
    last_error: null,
    ...over,
  };
}

/** A token the app accepts: stored with an expiry one hour ahead. */
export function signIn(username = 'ana', tenants = ['acme']) {
  sessionStorage.setItem(
    'wa.auth',
    JSON.stringify({ token: 'tok-123', expiresAtMs: Date.now() + 3600_000, user: { username, tenants, role: 'user' } }),
  );
}
