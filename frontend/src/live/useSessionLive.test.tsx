import { act, renderHook, waitFor } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { isHubReachable, reportReachable } from '../connectivity';
import { calls, mockHub, snapshot } from '../test/fakeHub';
import { lastSocket, socketIoModule, sockets } from '../test/fakeSocket';
import { backoffDelay } from './backoff';
import { useSessionLive } from './useSessionLive';

vi.mock('socket.io-client', async () => (await import('../test/fakeSocket')).socketIoModule);

const GET = 'GET /api/session-manager/sessions/acme-main';

async function flush() {
  await act(async () => {
    await vi.advanceTimersByTimeAsync(0);
  });
}

describe('backoffDelay', () => {
  it('doubles from the base up to the cap', () => {
    const mid = () => 0.5; // no jitter
    expect([0, 1, 2, 3, 4, 5].map((n) => backoffDelay(n, 1000, 10_000, mid))).toEqual([1000, 2000, 4000, 8000, 10_000, 10_000]);
  });
  it('jitters by at most ±20 %', () => {
    expect(backoffDelay(1, 1000, 10_000, () => 0)).toBe(1600);
    expect(backoffDelay(1, 1000, 10_000, () => 1)).toBe(2400);
  });
});

describe('useSessionLive', () => {
  let fetchMock: ReturnType<typeof mockHub>;
  let hubUp: boolean;
  let snap = snapshot();

  beforeEach(() => {
    vi.useFakeTimers();
    vi.spyOn(Math, 'random').mockReturnValue(0.5);
    sockets.length = 0;
    socketIoModule.io.mockClear();
    reportReachable();
    hubUp = true;
    snap = snapshot({ status: 'qr_required', qr_status: 'none' });
    fetchMock = mockHub({
      [GET]: () => (hubUp ? { status: 200, body: snap } : 'network-error'),
      'POST /api/session-manager/sessions/acme-main/qr': () => ({ status: 429, body: { error: 'RATE_LIMITED', message: 'later' } }),
      'POST /api/session-manager/sessions/acme-main/disconnect': () => ({ status: 200, body: { ok: true } }),
    });
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  const start = async (onUnauthorized = vi.fn()) => {
    const hook = renderHook(() => useSessionLive({ instanceId: 'acme-main', token: 'tok', onUnauthorized }));
    await flush();
    return hook;
  };

  it('loads the REST snapshot, then connects with the token, authenticates and subscribes', async () => {
    const { result } = await start();
    expect(result.current.loaded).toBe(true);
    expect(result.current.status).toBe('qr_required');
    const socket = lastSocket();
    expect(socket.options).toMatchObject({ path: '/socket.io', auth: { token: 'tok' }, reconnection: false });
    expect(socket.connect).toHaveBeenCalledTimes(1);
    act(() => socket.open());
    expect(result.current.socketConnected).toBe(true);
    expect(socket.emitted('authenticate')).toEqual([[{ token: 'tok' }]]);
    expect(socket.emitted('subscribe-session')).toEqual([]);
    act(() => socket.fire('authenticated', { success: true }));
    expect(socket.emitted('subscribe-session')).toEqual([[{ instance_id: 'acme-main' }]]);
    // The hub also answers the handshake token: still one subscription per connection.
    act(() => socket.fire('authenticated', { success: true }));
    expect(socket.emitted('subscribe-session')).toHaveLength(1);
  });

  it('applies pushed status, QR, expiry and ignores other sessions', async () => {
    const { result } = await start();
    const socket = lastSocket();
    act(() => socket.open());
    act(() =>
      socket.fire('qr-code', { instance_id: 'acme-main', qr: 'data:image/png;base64,AA', qr_string: 'ref1,k,e', expiresAt: '2030-01-01T00:00:00Z' }),
    );
    expect(result.current.qr).toEqual({ image: 'data:image/png;base64,AA', qrString: 'ref1,k,e', expiresAt: '2030-01-01T00:00:00Z' });
    act(() => socket.fire('qr-code', { instance_id: 'other', qr: 'x', qr_string: 'other', expiresAt: null }));
    expect(result.current.qr?.qrString).toBe('ref1,k,e');
    act(() => socket.fire('qr-expired', { instance_id: 'acme-main', message: 'QR expirado, genere uno nuevo' }));
    expect(result.current.qr).toBeNull();
    expect(result.current.qrExpired).toBe(true);
    act(() =>
      socket.fire('session-status', {
        instance_id: 'acme-main',
        status: 'connected',
        qr_status: 'used',
        connectedAt: '2026-01-01T00:00:00Z',
        phoneNumber: '5491100000000',
        updatedAt: null,
      }),
    );
    expect(result.current.status).toBe('connected');
    expect(result.current.phoneNumber).toBe('5491100000000');
    expect(result.current.qrExpired).toBe(false);
  });

  it('reconnects with exponential back-off and polls REST while the socket is down', async () => {
    hubUp = true;
    await start();
    const socket = lastSocket();
    act(() => socket.open());
    const before = calls(fetchMock, GET);

    act(() => socket.drop());
    await flush();
    expect(calls(fetchMock, GET)).toBe(before + 1); // an immediate refresh on loss
    expect(socket.connect).toHaveBeenCalledTimes(1);

    // attempt 0 after 1 s
    await act(async () => vi.advanceTimersByTimeAsync(999));
    expect(socket.connect).toHaveBeenCalledTimes(1);
    await act(async () => vi.advanceTimersByTimeAsync(1));
    expect(socket.connect).toHaveBeenCalledTimes(2);
    // it fails: attempt 1 after 2 s
    act(() => socket.fail());
    await act(async () => vi.advanceTimersByTimeAsync(1999));
    expect(socket.connect).toHaveBeenCalledTimes(2);
    await act(async () => vi.advanceTimersByTimeAsync(1));
    expect(socket.connect).toHaveBeenCalledTimes(3);
    // attempt 2 after 4 s
    act(() => socket.fail());
    await act(async () => vi.advanceTimersByTimeAsync(3999));
    expect(socket.connect).toHaveBeenCalledTimes(3);
    await act(async () => vi.advanceTimersByTimeAsync(1));
    expect(socket.connect).toHaveBeenCalledTimes(4);

    // Meanwhile the snapshot was polled every 3 s (7 s elapsed → 2 polls + the immediate one).
    expect(calls(fetchMock, GET)).toBe(before + 3);

    // Back: polling stops, the back-off starts over, the session is subscribed again.
    act(() => socket.open());
    act(() => socket.fire('authenticated', { success: true }));
    expect(socket.emitted('subscribe-session')).toHaveLength(1);
    const atReconnect = calls(fetchMock, GET);
    await act(async () => vi.advanceTimersByTimeAsync(30_000));
    expect(calls(fetchMock, GET)).toBe(atReconnect);
    act(() => socket.drop());
    await act(async () => vi.advanceTimersByTimeAsync(1000));
    expect(socket.connect).toHaveBeenCalledTimes(5);
  });

  it('keeps the page current from polling while the socket is down', async () => {
    const { result } = await start();
    const socket = lastSocket();
    act(() => socket.fail());
    snap = snapshot({ status: 'connected', qr_status: 'used', phone_number: '5491133334444' });
    await act(async () => vi.advanceTimersByTimeAsync(3000));
    expect(result.current.status).toBe('connected');
    expect(result.current.phoneNumber).toBe('5491133334444');
  });

  it('marks the hub unreachable when polling fails and reachable again when it answers', async () => {
    await start();
    const socket = lastSocket();
    hubUp = false;
    act(() => socket.fail());
    await act(async () => vi.advanceTimersByTimeAsync(3000));
    expect(isHubReachable()).toBe(false);
    hubUp = true;
    await act(async () => vi.advanceTimersByTimeAsync(3000));
    expect(isHubReachable()).toBe(true);
  });

  it('renders the QR itself from a polled snapshot', async () => {
    snap = snapshot({ status: 'qr_required', qr_status: 'generated', qr_string: 'ref9,pub,key', qr_expires_at: '2030-01-01T00:00:00Z' });
    const { result } = await start();
    expect(result.current.qr?.qrString).toBe('ref9,pub,key');
    vi.useRealTimers();
    await waitFor(() => expect(result.current.qr?.image).toMatch(/^data:image\/png;base64,/), { timeout: 5000 });
  });

  it('shows a connection-error for this session and signs out on UNAUTHENTICATED', async () => {
    const onUnauthorized = vi.fn();
    const { result } = await start(onUnauthorized);
    const socket = lastSocket();
    act(() => socket.open());
    act(() => socket.fire('connection-error', { instance_id: 'acme-main', error: 'RATE_LIMITED', message: 'slow down' }));
    expect(result.current.error).toEqual({ code: 'RATE_LIMITED', message: 'slow down' });
    act(() => socket.fire('connection-error', { error: 'UNAUTHENTICATED', message: 'bad token' }));
    expect(onUnauthorized).toHaveBeenCalledTimes(1);
  });

  it('requests a QR over the socket when connected and over REST otherwise; silent requests show no error', async () => {
    const { result } = await start();
    const socket = lastSocket();
    act(() => socket.open());
    await act(() => result.current.requestQr());
    expect(socket.emitted('request-qr')).toEqual([[{ instance_id: 'acme-main' }]]);
    act(() => socket.drop());
    await act(() => result.current.requestQr({ silent: true }));
    expect(result.current.error).toBeNull();
    await act(() => result.current.requestQr());
    expect(result.current.error?.code).toBe('RATE_LIMITED');
    expect(calls(fetchMock, 'POST /api/session-manager/sessions/acme-main/qr')).toBe(2);
  });

  it('disconnect posts the logout request and refreshes the snapshot', async () => {
    const { result } = await start();
    snap = snapshot({ status: 'disconnected' });
    await act(() => result.current.disconnect());
    expect(calls(fetchMock, 'POST /api/session-manager/sessions/acme-main/disconnect')).toBe(1);
    expect(result.current.status).toBe('disconnected');
  });

  it('closes the socket and stops every timer on unmount', async () => {
    const { unmount } = await start();
    const socket = lastSocket();
    act(() => socket.fail());
    unmount();
    expect(socket.disconnect).toHaveBeenCalled();
    const n = calls(fetchMock, GET);
    await act(async () => vi.advanceTimersByTimeAsync(60_000));
    expect(calls(fetchMock, GET)).toBe(n);
    expect(socket.connect).toHaveBeenCalledTimes(1);
  });
});
