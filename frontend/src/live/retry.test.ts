import { describe, expect, it } from 'vitest';
import { parseRetryAfter, retryAtMs, secondsLeft } from './retry';

const NOW = Date.parse('2026-12-05T03:00:00Z');

describe('parseRetryAfter', () => {
  it('reads delta-seconds, as the hub sends them', () => {
    expect(parseRetryAfter('42', NOW)).toBe(42);
    expect(parseRetryAfter(' 0 ', NOW)).toBe(0);
  });
  it('reads an HTTP-date as the seconds until then, never negative', () => {
    expect(parseRetryAfter('Sat, 05 Dec 2026 03:00:30 GMT', NOW)).toBe(30);
    expect(parseRetryAfter('Sat, 05 Dec 2026 02:59:00 GMT', NOW)).toBe(0);
  });
  it('is null when absent or unreadable, so the UI falls back to "wait a minute"', () => {
    expect(parseRetryAfter(null, NOW)).toBeNull();
    expect(parseRetryAfter(undefined, NOW)).toBeNull();
    expect(parseRetryAfter('soon', NOW)).toBeNull();
    expect(parseRetryAfter('-5', NOW)).toBeNull();
  });
});

describe('retryAtMs and secondsLeft', () => {
  it('turn a wait into a deadline and count down to it in whole seconds, rounding up', () => {
    const at = retryAtMs(42, NOW)!;
    expect(at).toBe(NOW + 42_000);
    expect(secondsLeft(at, NOW)).toBe(42);
    expect(secondsLeft(at, NOW + 200)).toBe(42);
    expect(secondsLeft(at, NOW + 1000)).toBe(41);
    expect(secondsLeft(at, NOW + 41_900)).toBe(1);
    expect(secondsLeft(at, NOW + 42_000)).toBe(0);
    expect(secondsLeft(at, NOW + 99_000)).toBe(0);
  });
  it('no wait from the hub means no deadline', () => {
    expect(retryAtMs(undefined, NOW)).toBeNull();
    expect(retryAtMs(null, NOW)).toBeNull();
    expect(retryAtMs(Number.NaN, NOW)).toBeNull();
    expect(retryAtMs(-1, NOW)).toBeNull();
  });
});
