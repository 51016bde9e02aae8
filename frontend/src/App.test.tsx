import { act, render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { App } from './App';
import { expiryMs, loadAuth } from './auth';
import { reportReachable } from './connectivity';
import { I18nProvider } from './i18n';
import { mockHub, signIn, snapshot } from './test/fakeHub';
import { sockets } from './test/fakeSocket';

vi.mock('socket.io-client', async () => (await import('./test/fakeSocket')).socketIoModule);

const renderApp = () =>
  render(
    <I18nProvider>
      <App />
    </I18nProvider>,
  );

describe('expiryMs', () => {
  it('reads RFC 3339, seconds, milliseconds and the JWT exp', () => {
    expect(expiryMs('2030-01-01T00:00:00Z', '')).toBe(Date.parse('2030-01-01T00:00:00Z'));
    expect(expiryMs(1_900_000_000, '')).toBe(1_900_000_000_000);
    expect(expiryMs(1_900_000_000_000, '')).toBe(1_900_000_000_000);
    expect(expiryMs('1900000000', '')).toBe(1_900_000_000_000);
    const jwt = `h.${btoa(JSON.stringify({ exp: 1_900_000_001 }))}.s`;
    expect(expiryMs(undefined, jwt)).toBe(1_900_000_001_000);
  });
});

describe('App', () => {
  beforeEach(() => {
    sockets.length = 0;
    reportReachable();
    window.location.hash = '';
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  it('logs in with the contract fields, keeps the token and shows the WhatsApp navigation', async () => {
    const fetchMock = mockHub({
      'POST /api/auth/login': (init) => {
        const body = JSON.parse(init?.body as string) as { username: string; password: string };
        return body.username === 'ana' && body.password === 'secreto'
          ? { status: 200, body: { token: 'tok-1', expiresAt: new Date(Date.now() + 3600_000).toISOString(), user: { username: 'ana', tenants: ['acme'], role: 'user' } } }
          : { status: 401, body: { error: 'UNAUTHENTICATED', message: 'bad credentials' } };
      },
      'GET /api/session-manager/sessions': () => ({ status: 200, body: [snapshot({ instance_id: 'a1' }), snapshot({ instance_id: 'a2' })] }),
    });
    const { container } = renderApp();
    expect(screen.queryByRole('link', { name: 'WhatsApp' })).toBeNull();
    await userEvent.type(container.querySelector('[name=username]')!, 'ana');
    await userEvent.type(container.querySelector('[name=password]')!, 'mala');
    await userEvent.click(container.querySelector('button[type=submit]')!);
    expect(await screen.findByRole('alert')).toHaveTextContent('Usuario o contraseña incorrectos.');

    await userEvent.clear(container.querySelector('[name=password]')!);
    await userEvent.type(container.querySelector('[name=password]')!, 'secreto');
    await userEvent.click(container.querySelector('button[type=submit]')!);
    expect(await screen.findByRole('link', { name: 'WhatsApp' })).toBeVisible();
    expect(loadAuth()?.token).toBe('tok-1');
    // With this tab only: never in localStorage, which outlives the tab on disk.
    expect(JSON.parse(sessionStorage.getItem('wa.auth') ?? '{}')).toMatchObject({ token: 'tok-1' });
    expect(localStorage.getItem('wa.auth')).toBeNull();
    expect(await screen.findAllByTestId('session-item')).toHaveLength(2);
    const listCall = fetchMock.mock.calls.find(([u]) => u === '/api/session-manager/sessions');
    expect((listCall?.[1] as RequestInit).headers).toMatchObject({ Authorization: 'Bearer tok-1' });
  });

  it('labels the login fields for assistive technology', () => {
    mockHub({});
    renderApp();
    expect(screen.getByLabelText('Usuario')).toHaveAttribute('name', 'username');
    expect(screen.getByLabelText('Contraseña')).toHaveAttribute('name', 'password');
  });

  it('restores a stored login after a reload', async () => {
    signIn();
    mockHub({ 'GET /api/session-manager/sessions': () => ({ status: 200, body: [] }) });
    renderApp();
    expect(screen.getByRole('link', { name: 'WhatsApp' })).toBeInTheDocument();
    expect(await screen.findByText(/No tiene sesiones de WhatsApp/)).toBeInTheDocument();
  });

  it('removes a login an earlier version left in localStorage without using it', () => {
    localStorage.setItem('wa.auth', JSON.stringify({ token: 'old', expiresAtMs: Date.now() + 3600_000, user: { username: 'a', tenants: [], role: 'user' } }));
    mockHub({});
    renderApp();
    expect(screen.getByRole('heading', { name: 'Iniciar sesión' })).toBeInTheDocument();
    expect(localStorage.getItem('wa.auth')).toBeNull();
  });

  it('drops an expired login at load', () => {
    sessionStorage.setItem('wa.auth', JSON.stringify({ token: 't', expiresAtMs: Date.now() - 1, user: { username: 'a', tenants: [], role: 'user' } }));
    mockHub({});
    renderApp();
    expect(screen.getByRole('heading', { name: 'Iniciar sesión' })).toBeInTheDocument();
    expect(sessionStorage.getItem('wa.auth')).toBeNull();
  });

  it('returns to the login page when the token expires with the page open', async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    sessionStorage.setItem('wa.auth', JSON.stringify({ token: 't', expiresAtMs: Date.now() + 5000, user: { username: 'a', tenants: [], role: 'user' } }));
    mockHub({ 'GET /api/session-manager/sessions': () => ({ status: 200, body: [] }) });
    renderApp();
    expect(screen.getByRole('link', { name: 'WhatsApp' })).toBeInTheDocument();
    await act(async () => vi.advanceTimersByTimeAsync(5001));
    expect(screen.getByRole('heading', { name: 'Iniciar sesión' })).toBeInTheDocument();
  });

  it('returns to the login page when the hub answers 401', async () => {
    signIn();
    mockHub({ 'GET /api/session-manager/sessions': () => ({ status: 401, body: { error: 'UNAUTHENTICATED', message: 'expired' } }) });
    renderApp();
    expect(await screen.findByRole('heading', { name: 'Iniciar sesión' })).toBeInTheDocument();
  });

  it('opens the only session directly, with "Conectar WhatsApp"', async () => {
    signIn();
    mockHub({
      'GET /api/session-manager/sessions': () => ({ status: 200, body: [snapshot({ instance_id: 'solo' })] }),
      'GET /api/session-manager/sessions/solo': () => ({ status: 200, body: snapshot({ instance_id: 'solo' }) }),
    });
    renderApp();
    expect(await screen.findByRole('button', { name: 'Conectar WhatsApp' })).toBeVisible();
    expect(window.location.hash).toBe('#/whatsapp/solo');
  });

  it('lists several sessions with their status and opens one', async () => {
    signIn();
    mockHub({
      'GET /api/session-manager/sessions': () => ({
        status: 200,
        body: [snapshot({ instance_id: 'b', status: 'connected', phone_number: '549111' }), snapshot({ instance_id: 'a', status: 'qr_required' })],
      }),
      'GET /api/session-manager/sessions/b': () => ({ status: 200, body: snapshot({ instance_id: 'b', status: 'connected', phone_number: '549111' }) }),
    });
    renderApp();
    const items = await screen.findAllByTestId('session-item');
    expect(items.map((i) => i.getAttribute('data-instance'))).toEqual(['a', 'b']);
    expect(items[0]).toHaveTextContent('Esperando escaneo');
    expect(items[1]).toHaveTextContent('Conectado (+549111)');
    await userEvent.click(screen.getByRole('link', { name: 'b' }));
    expect(await screen.findByRole('heading', { name: 'b' })).toBeInTheDocument();
    expect(await screen.findByRole('button', { name: 'Desconectar' })).toBeInTheDocument();
  });

  it('shows the banner while the hub is unreachable and hides it once it answers', async () => {
    signIn();
    let up = false;
    mockHub({ 'GET /api/session-manager/sessions': () => (up ? { status: 200, body: [] } : 'network-error') });
    vi.useFakeTimers({ shouldAdvanceTime: true });
    renderApp();
    expect(await screen.findByTestId('service-banner')).toHaveTextContent('Servicio temporalmente no disponible');
    up = true;
    await act(async () => vi.advanceTimersByTimeAsync(5000));
    expect(screen.queryByTestId('service-banner')).toBeNull();
  });

  it('switches to English and remembers it', async () => {
    mockHub({});
    renderApp();
    await userEvent.selectOptions(screen.getByLabelText('Idioma'), 'en');
    expect(screen.getByRole('heading', { name: 'Sign in' })).toBeInTheDocument();
    expect(screen.getByLabelText('Username')).toBeInTheDocument();
    expect(localStorage.getItem('wa.lang')).toBe('en');
    expect(document.documentElement.lang).toBe('en');
  });
});
