import { act, render, screen } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { I18nProvider } from '../i18n';
import { QRCodeDisplay } from './QRCodeDisplay';

const PNG = 'data:image/png;base64,iVBORw0KGgo=';

describe('QRCodeDisplay', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2026-01-01T00:00:00Z'));
  });
  afterEach(() => vi.useRealTimers());

  const show = (props: Partial<Parameters<typeof QRCodeDisplay>[0]>) =>
    render(
      <I18nProvider lang="es">
        <QRCodeDisplay qrCode={PNG} expiresAt="2026-01-01T00:00:30Z" {...props} />
      </I18nProvider>,
    );

  it('shows a spinner and no QR while one is being generated', () => {
    show({ qrCode: null, expiresAt: null });
    expect(screen.getByTestId('qr-spinner')).toHaveTextContent('Generando código QR…');
    expect(screen.getByTestId('qr-spinner')).toHaveAttribute('role', 'status');
    expect(screen.queryByTestId('qr-code')).toBeNull();
  });

  it('shows the QR image with an accessible name and the seconds left', () => {
    show({});
    const img = screen.getByTestId('qr-code');
    expect(img).toHaveAttribute('src', PNG);
    expect(img).toHaveAccessibleName('Código QR para vincular WhatsApp');
    expect(screen.getByTestId('qr-countdown')).toHaveTextContent('El código caduca en 30 s');
  });

  it('counts down every second', () => {
    show({});
    act(() => {
      vi.advanceTimersByTime(1000);
    });
    expect(screen.getByTestId('qr-countdown')).toHaveTextContent('caduca en 29 s');
    act(() => {
      vi.advanceTimersByTime(15_000);
    });
    expect(screen.getByTestId('qr-countdown')).toHaveTextContent('caduca en 14 s');
  });

  it('asks for a refresh once, 10 s before expiry', () => {
    const onRefreshDue = vi.fn();
    show({ onRefreshDue });
    act(() => {
      vi.advanceTimersByTime(19_000);
    });
    expect(onRefreshDue).not.toHaveBeenCalled();
    act(() => {
      vi.advanceTimersByTime(1000);
    });
    expect(onRefreshDue).toHaveBeenCalledTimes(1);
    act(() => {
      vi.advanceTimersByTime(5000);
    });
    expect(onRefreshDue).toHaveBeenCalledTimes(1);
  });

  it('asks again for the next QR', () => {
    const onRefreshDue = vi.fn();
    const { rerender } = show({ onRefreshDue });
    act(() => {
      vi.advanceTimersByTime(21_000);
    });
    expect(onRefreshDue).toHaveBeenCalledTimes(1);
    rerender(
      <I18nProvider lang="es">
        <QRCodeDisplay qrCode={PNG + 'A'} expiresAt="2026-01-01T00:00:50Z" onRefreshDue={onRefreshDue} />
      </I18nProvider>,
    );
    act(() => {
      vi.advanceTimersByTime(19_000);
    });
    expect(onRefreshDue).toHaveBeenCalledTimes(2);
  });

  it('reports expiry once and hides the stale QR', () => {
    const onExpired = vi.fn();
    show({ onExpired });
    act(() => {
      vi.advanceTimersByTime(29_000);
    });
    expect(onExpired).not.toHaveBeenCalled();
    expect(screen.getByTestId('qr-code')).toBeInTheDocument();
    act(() => {
      vi.advanceTimersByTime(1000);
    });
    expect(onExpired).toHaveBeenCalledTimes(1);
    expect(screen.queryByTestId('qr-code')).toBeNull();
    expect(screen.getByRole('alert')).toHaveTextContent('QR expirado, genere uno nuevo');
    act(() => {
      vi.advanceTimersByTime(5000);
    });
    expect(onExpired).toHaveBeenCalledTimes(1);
  });

  it('accepts the expiry as milliseconds', () => {
    show({ expiresAt: Date.parse('2026-01-01T00:00:12Z') });
    expect(screen.getByTestId('qr-countdown')).toHaveTextContent('caduca en 12 s');
  });
});
