/**
 * Delay before reconnect attempt `attempt` (0-based): doubles from `baseMs` up to `maxMs`, with
 * ±20 % jitter so that many browsers do not hit a restarted hub in the same instant.
 */
export function backoffDelay(attempt: number, baseMs = 1000, maxMs = 10_000, random: () => number = Math.random): number {
  const raw = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt));
  return Math.round(raw * (0.8 + 0.4 * random()));
}
