// When a refused request may be retried: the hub answers a rate-limited QR request with 429 and
// `Retry-After` (REST) or `retryAfter` (socket.io `connection-error`), DESIGN.md §3–§4.

/**
 * Seconds a `Retry-After` header asks to wait: delta-seconds or an HTTP-date (RFC 9110 §10.2.3).
 * Null when the header is absent or unreadable, so the caller falls back to a generic message.
 */
export function parseRetryAfter(value: string | null | undefined, nowMs: number): number | null {
  if (value === null || value === undefined) return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v);
  // An HTTP-date names its weekday and month; anything else (e.g. "-5") is not one.
  if (!/[A-Za-z]/.test(v)) return null;
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - nowMs) / 1000));
}

/** The moment (ms since the epoch) a retry may succeed, from a wait in seconds. */
export function retryAtMs(retryAfterSec: number | null | undefined, nowMs: number): number | null {
  return typeof retryAfterSec === 'number' && Number.isFinite(retryAfterSec) && retryAfterSec >= 0 ? nowMs + retryAfterSec * 1000 : null;
}

/** Whole seconds left until `untilMs`, rounded up (a wait of 0.2 s still reads "1 s"), never negative. */
export function secondsLeft(untilMs: number, nowMs: number): number {
  return Math.max(0, Math.ceil((untilMs - nowMs) / 1000));
}
