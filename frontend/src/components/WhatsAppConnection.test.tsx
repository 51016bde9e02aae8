import { act, render, screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { StoredAuth } from '../auth';
import { AuthContext } from '../authContext';
import { reportReachable } from '../connectivity';
import { I18nProvider } from '../i18n';
import { mockHub, snapshot } from '../test/fakeHub';
import { lastSocket, sockets } from '../test/fakeSocket';
import type { SessionSnapshot } from '../types';
import { WhatsAppConnection, type WhatsAppConnectionProps } from './WhatsAppConnection';

vi.mock('socket.io-client', async () => (await import('../test/fakeSocket')).socketIoModule);

const auth: StoredAuth = { token: 'tok', expiresAtMs: Date.now() + 3600_000, user: { username: 'ana', tenants: ['acme'], role: 'user' } };
const ID = 'acme-main';

async function mount(snap: SessionSnapshot, props: Partial<WhatsAppConnectionProps> = {}, logout = vi.fn()) {
  mockHub({
    [`GET /api/session-manager/sessions/${ID}`]: () => ({ status: 200, body: snap }),
    [`POST /api/session-manager/sessions/${ID}/qr`]: () => ({ status: 200, body: snap }),
    [`POST /api/session-manager/sessions/${ID}/disconnect`]: () => ({ status: 200, body: { ok: true } }),
  });
  render(
    <I18nProvider lang="es">
      <AuthContext.Provider value={{ auth, logout }}>
        <WhatsAppConnection instance_id={ID} {...props} />
      </AuthContext.Provider>
    </I18nProvider>,
  );
  await screen.findByTestId('session-status');
  await act(async () => {});
  const socket = lastSocket();
  act(() => socket.open());
  act(() => socket.fire('authenticated', { success: true }));
  return socket;
}

const qrEvent = (n: number, expiresAt = new Date(Date.now() + 60_000).toISOString()) => ({
  instance_id: ID,
  qr: `data:image/png;base64,QR${n}`,
  qr_string: `ref${n},pub,key`,
  expiresAt,
});

const button = (name: string | RegExp) => screen.queryByRole('button', { name });

describe('WhatsAppConnection', () => {
  beforeEach(() => {
    sockets.length = 0;
    reportReachable();
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  it('offers only "Conectar WhatsApp" when disconnected', async () => {
    await mount(snapshot({ status: 'disconnected' }));
    expect(screen.getByTestId('session-status')).toHaveTextContent('Desconectado');
    expect(button('Conectar WhatsApp')).toBeInTheDocument();
    expect(button('Regenerar QR')).toBeNull();
    expect(button('Desconectar')).toBeNull();
    expect(screen.queryByTestId('qr-code')).toBeNull();
  });

  it('a session that never ran (init, no updatedAt) reads "Desconectado" and can be connected', async () => {
    await mount(snapshot({ status: 'init', qr_status: 'none', updated_at: null }));
    expect(screen.getByTestId('session-status')).toHaveTextContent(/^Desconectado$/);
    expect(button('Conectar WhatsApp')).toBeInTheDocument();
  });

  it('a starting agent (init with updatedAt) reads "Conectando..."', async () => {
    await mount(snapshot({ status: 'init', qr_status: 'none', updated_at: '2026-01-01T00:00:00Z' }));
    expect(screen.getByTestId('session-status')).toHaveTextContent(/^Conectando\.\.\.$/);
  });

  it('titles the page with the display name when the hub sends one', async () => {
    await mount(snapshot({ display_name: 'Ventas Acme' }));
    expect(screen.getByRole('heading', { name: 'Ventas Acme' })).toBeInTheDocument();
  });

  it('connect: spinner, then the pushed QR, then "Conectado (+549…)" with only "Desconectar"', async () => {
    const onConnected = vi.fn();
    const socket = await mount(snapshot({ status: 'disconnected' }), { onConnected });
    await userEvent.click(button('Conectar WhatsApp')!);
    expect(socket.emitted('request-qr')).toEqual([[{ instance_id: ID }]]);
    expect(screen.getByTestId('qr-spinner')).toBeInTheDocument();
    expect(button('Conectar WhatsApp')).toBeNull();

    act(() => socket.fire('session-status', { instance_id: ID, status: 'qr_required', qr_status: 'generated', connectedAt: null, phoneNumber: null, updatedAt: null }));
    act(() => socket.fire('qr-code', qrEvent(1)));
    expect(screen.getByTestId('qr-code')).toHaveAttribute('src', 'data:image/png;base64,QR1');
    expect(screen.queryByTestId('qr-spinner')).toBeNull();
    expect(screen.getByTestId('session-status')).toHaveTextContent('Esperando escaneo');
    expect(button('Regenerar QR')).toBeInTheDocument();

    act(() => socket.fire('session-status', { instance_id: ID, status: 'connecting', qr_status: 'used', connectedAt: null, phoneNumber: null, updatedAt: null }));
    expect(screen.getByTestId('session-status')).toHaveTextContent('Conectando...');
    expect(screen.queryByTestId('qr-code')).toBeNull();

    act(() =>
      socket.fire('session-status', { instance_id: ID, status: 'connected', qr_status: 'used', connectedAt: 'x', phoneNumber: '5491155556666', updatedAt: null }),
    );
    expect(screen.getByTestId('session-status')).toHaveTextContent('Conectado (+5491155556666)');
    expect(screen.getByTestId('session-status')).toHaveAttribute('data-color', 'green');
    expect(onConnected).toHaveBeenCalledWith('5491155556666');
    expect(button('Desconectar')).toBeInTheDocument();
    expect(button('Conectar WhatsApp')).toBeNull();
    expect(button('Regenerar QR')).toBeNull();
  });

  it('a connected session shows no QR and disconnects on request', async () => {
    const onDisconnected = vi.fn();
    const socket = await mount(snapshot({ status: 'connected', qr_status: 'used', phone_number: '5491100001111' }), { onDisconnected });
    expect(screen.getByTestId('session-status')).toHaveTextContent('Conectado (+5491100001111)');
    expect(screen.queryByTestId('qr-code')).toBeNull();
    await userEvent.click(button('Desconectar')!);
    act(() => socket.fire('session-status', { instance_id: ID, status: 'disconnected', qr_status: 'none', connectedAt: null, phoneNumber: null, updatedAt: null }));
    expect(screen.getByTestId('session-status')).toHaveTextContent('Desconectado');
    expect(onDisconnected).toHaveBeenCalled();
    expect(button('Conectar WhatsApp')).toBeInTheDocument();
  });

  it('qr-expired: message and "Regenerar QR", which asks again', async () => {
    const socket = await mount(snapshot({ status: 'qr_required', qr_status: 'generated' }));
    act(() => socket.fire('qr-code', qrEvent(1)));
    act(() => socket.fire('qr-expired', { instance_id: ID, message: 'QR expirado, genere uno nuevo' }));
    expect(screen.queryByTestId('qr-code')).toBeNull();
    expect(screen.getByTestId('qr-expired')).toHaveTextContent('QR expirado, genere uno nuevo');
    await userEvent.click(button('Regenerar QR')!);
    expect(socket.emitted('request-qr')).toHaveLength(1);
    expect(screen.getByTestId('qr-spinner')).toBeInTheDocument();
    act(() => socket.fire('qr-code', qrEvent(2)));
    expect(screen.getByTestId('qr-code')).toHaveAttribute('src', 'data:image/png;base64,QR2');
    expect(screen.queryByTestId('qr-expired')).toBeNull();
  });

  it('a QR whose countdown ends is replaced by the expiry message', async () => {
    const socket = await mount(snapshot({ status: 'qr_required' }));
    vi.useFakeTimers({ shouldAdvanceTime: true });
    act(() => socket.fire('qr-code', qrEvent(1, new Date(Date.now() + 3000).toISOString())));
    expect(screen.getByTestId('qr-code')).toBeInTheDocument();
    await act(async () => vi.advanceTimersByTimeAsync(4000));
    expect(screen.queryByTestId('qr-code')).toBeNull();
    expect(screen.getByTestId('qr-expired')).toHaveTextContent('QR expirado, genere uno nuevo');
    expect(button('Regenerar QR')).toBeInTheDocument();
  });

  it('auto-refresh 10 s before expiry asks the hub over REST, silently', async () => {
    const socket = await mount(snapshot({ status: 'qr_required' }));
    vi.useFakeTimers({ shouldAdvanceTime: true });
    const fetchMock = globalThis.fetch as unknown as ReturnType<typeof mockHub>;
    act(() => socket.fire('qr-code', qrEvent(1, new Date(Date.now() + 15_000).toISOString())));
    const posts = () => fetchMock.mock.calls.filter(([u, i]) => (u as string).endsWith('/qr') && (i as RequestInit)?.method === 'POST').length;
    await act(async () => vi.advanceTimersByTimeAsync(4000));
    expect(posts()).toBe(0);
    await act(async () => vi.advanceTimersByTimeAsync(2000));
    expect(posts()).toBe(1);
    expect(screen.queryByTestId('connection-error')).toBeNull();
  });

  it.each([
    ['FORBIDDEN', 'No tiene permiso'],
    ['NOT_FOUND', 'no existe'],
    ['RATE_LIMITED', 'Demasiadas solicitudes de QR'],
    ['TIMEOUT', 'tardó demasiado'],
    ['UNAVAILABLE', 'Servicio temporalmente no disponible'],
    ['BAD_REQUEST', 'Solicitud no válida'],
    ['SOMETHING_NEW', 'Error inesperado (SOMETHING_NEW)'],
  ])('connection-error %s shows an actionable message', async (code, text) => {
    const onError = vi.fn();
    const socket = await mount(snapshot({ status: 'disconnected' }), { onError });
    act(() => socket.fire('connection-error', { instance_id: ID, error: code, message: 'm' }));
    const alert = screen.getByTestId('connection-error');
    expect(alert).toHaveAttribute('role', 'alert');
    expect(alert).toHaveTextContent(text);
    expect(onError).toHaveBeenCalledWith({ code, message: 'm' });
    await userEvent.click(within(alert).getByRole('button', { name: 'Cerrar aviso' }));
    expect(screen.queryByTestId('connection-error')).toBeNull();
  });

  it('connection-error UNAUTHENTICATED signs the user out', async () => {
    const logout = vi.fn();
    const socket = await mount(snapshot({ status: 'disconnected' }), {}, logout);
    act(() => socket.fire('connection-error', { error: 'UNAUTHENTICATED', message: 'expired' }));
    expect(logout).toHaveBeenCalled();
  });

  it('tells the user when live updates are interrupted', async () => {
    const socket = await mount(snapshot({ status: 'disconnected' }));
    expect(screen.queryByText(/Actualizaciones en directo interrumpidas/)).toBeNull();
    act(() => socket.drop());
    expect(screen.getByText(/Actualizaciones en directo interrumpidas/)).toBeInTheDocument();
  });

  it('spinner gives way to a TIMEOUT message when no QR ever comes', async () => {
    await mount(snapshot({ status: 'disconnected' }), { qrWaitMs: 50 });
    await userEvent.click(button('Conectar WhatsApp')!);
    expect(screen.getByTestId('qr-spinner')).toBeInTheDocument();
    expect(await screen.findByTestId('connection-error')).toHaveTextContent('tardó demasiado');
    expect(screen.queryByTestId('qr-spinner')).toBeNull();
    expect(button('Conectar WhatsApp')).toBeInTheDocument();
  });
});

describe('WhatsAppConnection refused by the hub', () => {
  afterEach(() => vi.unstubAllGlobals());
  it('shows the FORBIDDEN message and no status or buttons', async () => {
    sockets.length = 0;
    reportReachable();
    mockHub({ [`GET /api/session-manager/sessions/${ID}`]: () => ({ status: 403, body: { error: 'FORBIDDEN', message: 'other tenant' } }) });
    render(
      <I18nProvider lang="es">
        <AuthContext.Provider value={{ auth, logout: vi.fn() }}>
          <WhatsAppConnection instance_id={ID} />
        </AuthContext.Provider>
      </I18nProvider>,
    );
    expect(await screen.findByTestId('connection-error')).toHaveTextContent('No tiene permiso');
    expect(screen.queryByTestId('session-status')).toBeNull();
    expect(screen.queryByRole('button', { name: /Conectar|Desconectar|Regenerar/ })).toBeNull();
  });
});
