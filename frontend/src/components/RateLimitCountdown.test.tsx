// A rate-limited QR request (429): the page says when the next request is possible, counting
// down, and names the button on screen; that button is disabled until then.
import { act, render, screen } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { StoredAuth } from '../auth';
import { AuthContext } from '../authContext';
import { reportReachable } from '../connectivity';
import { I18nProvider, type Lang } from '../i18n';
import { mockHub, snapshot, type RouteHandler } from '../test/fakeHub';
import { lastSocket, sockets } from '../test/fakeSocket';
import type { SessionSnapshot } from '../types';
import { WhatsAppConnection } from './WhatsAppConnection';

vi.mock('socket.io-client', async () => (await import('../test/fakeSocket')).socketIoModule);

const auth: StoredAuth = { token: 'tok', expiresAtMs: Date.now() + 3600_000, user: { username: 'ana', tenants: ['acme'], role: 'user' } };
const ID = 'acme-main';
const refused = (headers?: Record<string, string>): RouteHandler => () => ({
  status: 429,
  body: { error: 'RATE_LIMITED', message: 'a new QR was requested less than 60s ago' },
  headers,
});

async function mount(snap: SessionSnapshot, qr: RouteHandler, lang: Lang = 'es') {
  mockHub({
    [`GET /api/session-manager/sessions/${ID}`]: () => ({ status: 200, body: snap }),
    [`POST /api/session-manager/sessions/${ID}/qr`]: qr,
  });
  render(
    <I18nProvider lang={lang}>
      <AuthContext.Provider value={{ auth, logout: vi.fn() }}>
        <WhatsAppConnection instance_id={ID} />
      </AuthContext.Provider>
    </I18nProvider>,
  );
  await screen.findByTestId('session-status');
  await act(async () => {});
  return lastSocket();
}

const byName = (name: string) => screen.getByRole('button', { name });
const notice = () => screen.getByTestId('qr-retry');
const tick = (ms: number) => act(async () => vi.advanceTimersByTimeAsync(ms));

describe('rate-limited QR request', () => {
  beforeEach(() => {
    sockets.length = 0;
    reportReachable();
    vi.useFakeTimers({ shouldAdvanceTime: true });
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  it('REST 429 with Retry-After counts down and names "Conectar WhatsApp", disabled until then', async () => {
    // The socket never connects: the request goes over REST.
    await mount(snapshot({ status: 'disconnected' }), refused({ 'Retry-After': '42' }));
    act(() => byName('Conectar WhatsApp').click());
    await act(async () => {});
    expect(notice()).toHaveTextContent('Podrá pedir otro en 42 s: entonces pulse «Conectar WhatsApp».');
    expect(byName('Conectar WhatsApp')).toBeDisabled();
    await tick(1000);
    expect(notice()).toHaveTextContent('Podrá pedir otro en 41 s');
    await tick(40_000);
    expect(notice()).toHaveTextContent('Podrá pedir otro en 1 s');
    expect(byName('Conectar WhatsApp')).toBeDisabled();
    await tick(1000);
    expect(notice()).toHaveTextContent('Ya puede pedir un código QR nuevo: pulse «Conectar WhatsApp».');
    expect(byName('Conectar WhatsApp')).toBeEnabled();
  });

  it('socket connection-error with retryAfter names "Regenerar QR" when that is the button shown (a QR on screen)', async () => {
    const socket = await mount(snapshot({ status: 'qr_required', qr_status: 'generated' }), refused());
    act(() => socket.open());
    act(() => socket.fire('authenticated', { success: true }));
    act(() =>
      socket.fire('qr-code', { instance_id: ID, qr: 'data:image/png;base64,QR1', qr_string: 'ref1,pub,key', expiresAt: new Date(Date.now() + 60_000).toISOString() }),
    );
    act(() => byName('Regenerar QR').click());
    await act(async () => {});
    expect(socket.emitted('request-qr')).toHaveLength(1);
    act(() => socket.fire('connection-error', { instance_id: ID, error: 'RATE_LIMITED', message: 'later', retryAfter: 17 }));
    expect(notice()).toHaveTextContent('Podrá pedir otro en 17 s: entonces pulse «Regenerar QR».');
    expect(byName('Regenerar QR')).toBeDisabled();
    expect(screen.queryByRole('button', { name: 'Conectar WhatsApp' })).toBeNull();
    await tick(17_000);
    expect(notice()).toHaveTextContent('Ya puede pedir un código QR nuevo: pulse «Regenerar QR».');
    expect(byName('Regenerar QR')).toBeEnabled();
  });

  it('in English, with the English button name', async () => {
    await mount(snapshot({ status: 'disconnected' }), refused({ 'Retry-After': '5' }), 'en');
    act(() => byName('Connect WhatsApp').click());
    await act(async () => {});
    expect(notice()).toHaveTextContent('You can ask for another in 5 s: then press “Connect WhatsApp”.');
    await tick(5000);
    expect(notice()).toHaveTextContent('You can ask for a new QR code now: press “Connect WhatsApp”.');
  });

  it('without a wait from the hub: "wait a minute" naming the button, which stays enabled', async () => {
    await mount(snapshot({ status: 'disconnected' }), refused());
    act(() => byName('Conectar WhatsApp').click());
    await act(async () => {});
    expect(notice()).toHaveTextContent('Demasiadas solicitudes de QR. Espere un minuto y pulse «Conectar WhatsApp».');
    expect(byName('Conectar WhatsApp')).toBeEnabled();
  });
});
