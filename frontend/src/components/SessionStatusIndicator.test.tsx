import { render, screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { I18nProvider } from '../i18n';
import type { SessionStatus } from '../types';
import { SessionStatusIndicator } from './SessionStatusIndicator';

function renderStatus(status: SessionStatus | null, phoneNumber?: string | null, lang: 'es' | 'en' = 'es') {
  render(
    <I18nProvider lang={lang}>
      <SessionStatusIndicator status={status} phoneNumber={phoneNumber} />
    </I18nProvider>,
  );
  return screen.getByTestId('session-status');
}

describe('SessionStatusIndicator', () => {
  it.each([
    ['disconnected', 'Desconectado', 'red'],
    ['error', 'Desconectado', 'red'],
    [null, 'Desconectado', 'red'],
    ['init', 'Conectando...', 'yellow'],
    ['connecting', 'Conectando...', 'yellow'],
    ['qr_required', 'Esperando escaneo', 'yellow'],
    ['connected', 'Conectado', 'green'],
  ] as const)('status %s reads "%s" in %s', (status, label, color) => {
    const el = renderStatus(status);
    expect(el).toHaveTextContent(new RegExp(`^${label.replace(/\./g, '\\.')}$`));
    expect(el).toHaveAttribute('data-color', color);
    expect(el).toHaveClass(`status--${color}`);
  });

  it('shows the linked phone number with a leading +', () => {
    expect(renderStatus('connected', '5491122334455')).toHaveTextContent(/^Conectado \(\+5491122334455\)$/);
  });

  it('does not double the + of a number stored with it', () => {
    expect(renderStatus('connected', '+5491122334455')).toHaveTextContent(/^Conectado \(\+5491122334455\)$/);
  });

  it('ignores the phone number while not connected', () => {
    expect(renderStatus('qr_required', '5491122334455')).toHaveTextContent(/^Esperando escaneo$/);
  });

  it('is a polite live region so screen readers hear status changes', () => {
    const el = renderStatus('connecting');
    expect(el).toHaveAttribute('role', 'status');
    expect(el).toHaveAttribute('aria-live', 'polite');
  });

  it('speaks English when selected', () => {
    expect(renderStatus('connected', '54911', 'en')).toHaveTextContent('Connected (+54911)');
  });
});
