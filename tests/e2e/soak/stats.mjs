// Pure arithmetic of the soak's figures: a seeded PRNG for the fault schedule, percentiles,
// uptime from samples, and the summary of faults. No I/O here, so it is unit-tested
// (stats.test.mjs) without a cluster.

/** mulberry32: a small seeded PRNG; the same seed gives the same fault schedule. */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A lane's own generator: lanes do not consume each other's numbers, so one slow recovery does
 *  not change what another lane draws. */
export function laneRng(seed, lane) {
  let h = 2166136261 ^ seed;
  for (const ch of String(lane)) h = Math.imul(h ^ ch.charCodeAt(0), 16777619);
  return prng(h >>> 0);
}

export const between = (rng, lo, hi) => lo + (hi - lo) * rng();
export const pick = (rng, xs) => xs[Math.floor(rng() * xs.length) % xs.length];

/**
 * Draws from `xs` as from a shuffled deck: every kind once (in a seeded order), then a fresh
 * shuffle. Independent picks left kinds undrawn: a 30-minute soak runs only ~5 global faults,
 * and seed 1's first four picks never drew `hub-kill`.
 */
export function deck(rng, xs) {
  let hand = [];
  return () => {
    if (!hand.length) {
      hand = [...xs];
      for (let i = hand.length - 1; i > 0; i--) {
        const j = Math.floor(rng() * (i + 1)) % (i + 1);
        [hand[i], hand[j]] = [hand[j], hand[i]];
      }
    }
    return hand.pop();
  };
}

/**
 * The wait before the next global fault: the drawn gap, but while the first round of the deck
 * is not through, at most half the time left per kind still undrawn (the other half is for the
 * faults themselves: waiting for the session lanes, the outage, the judging), so every kind is
 * drawn before the end however long the faults take.
 */
export function globalGapMs(drawnMs, leftMs, undrawn) {
  if (undrawn <= 0) return drawnMs;
  return Math.max(0, Math.min(drawnMs, leftMs / (2 * undrawn)));
}

/** Nearest-rank percentile (p in 0..100) of numbers; null for none. */
export function percentile(xs, p) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length - 1, Math.max(0, rank - 1))];
}

export function describe(xs) {
  return xs.length
    ? { n: xs.length, p50: percentile(xs, 50), p99: percentile(xs, 99), max: xs.reduce((a, b) => (b > a ? b : a), -Infinity) }
    : { n: 0, p50: null, p99: null, max: null };
}

/** Whether `t` lies in one of the [from, to) windows (`to` null: still open). */
export function inWindows(windows, t) {
  return windows.some((w) => t >= w.from && (w.to == null || t < w.to));
}

/**
 * Connected-uptime of one session from the fake's samples [{t, connected}] (ms, sorted): each
 * sample stands for the time until the next one. `excused` windows (the session should be down:
 * unlinked until re-linked) count neither way. Three figures:
 * - `wholeRun`: all the rest;
 * - `outsideInjected`: without the `injected` windows (the fault itself holds the session down:
 *   an outage of the service);
 * - `outsideFaults`: without the `faults` windows either (a fault that takes the browser down by
 *   its nature, from its injection until the session is back: that time is judged as the
 *   fault's recovery, per kind) — what is left is downtime no fault explains: a drop during a
 *   fault the session should ride through (a cluster part or the operator restarting), or none.
 */
export function uptime(samples, { excused = [], injected = [], faults = [], end } = {}) {
  const sums = { whole: [0, 0], outside: [0, 0], unexplained: [0, 0] };
  const add = (k, dt, up) => {
    sums[k][0] += dt;
    if (up) sums[k][1] += dt;
  };
  for (let i = 0; i < samples.length; i++) {
    const { t, connected } = samples[i];
    const next = i + 1 < samples.length ? samples[i + 1].t : (end ?? t);
    const dt = Math.max(0, next - t);
    if (inWindows(excused, t)) continue;
    add('whole', dt, connected);
    if (inWindows(injected, t)) continue;
    add('outside', dt, connected);
    if (inWindows(faults, t)) continue;
    add('unexplained', dt, connected);
  }
  const ratio = ([all, up]) => (all > 0 ? up / all : null);
  return { wholeRun: ratio(sums.whole), outsideInjected: ratio(sums.outside), outsideFaults: ratio(sums.unexplained), observedMs: sums.whole[0] };
}

/** Per fault kind: count, reconnected, lost logins, recovery times. */
export function summarizeFaults(faults) {
  const byKind = {};
  for (const f of faults) {
    const k = (byKind[f.kind] ??= { injected: 0, reconnected: 0, expectedEnd: 0, failed: 0, lostLogins: 0, recoveryMs: [] });
    k.injected += 1;
    if (f.outcome === 'reconnected') k.reconnected += 1;
    else if (f.outcome === 'expected-end') k.expectedEnd += 1;
    else k.failed += 1;
    if (f.lostLogin) k.lostLogins += 1;
    if (f.recoveryMs != null) k.recoveryMs.push(f.recoveryMs);
  }
  const out = {};
  for (const [kind, k] of Object.entries(byKind)) {
    const shouldReconnect = k.injected - k.expectedEnd;
    out[kind] = {
      injected: k.injected,
      reconnected: k.reconnected,
      expectedEnd: k.expectedEnd,
      failed: k.failed,
      lostLogins: k.lostLogins,
      autoReconnectRate: shouldReconnect > 0 ? k.reconnected / shouldReconnect : null,
      recoveryMs: describe(k.recoveryMs),
    };
  }
  return out;
}

/** The UI's label for a status (frontend/src/components/SessionStatusIndicator.tsx, Spanish). */
export function uiLabel(status, phone) {
  switch (status) {
    case 'connected':
      return phone ? `Conectado (${phone.startsWith('+') ? phone : `+${phone}`})` : 'Conectado';
    case 'qr_required':
      return 'Esperando escaneo';
    case 'init':
    case 'connecting':
      return 'Conectando...';
    default:
      return 'Desconectado';
  }
}

/** Growth of a memory series [{t, bytes}]: first, last, max, and last − first in MiB. */
export function memoryGrowth(series) {
  if (!series.length) return null;
  const mib = (b) => Math.round((b / 1048576) * 10) / 10;
  const first = series[0].bytes;
  const last = series[series.length - 1].bytes;
  return { samples: series.length, firstMiB: mib(first), lastMiB: mib(last), maxMiB: mib(series.reduce((a, s) => (s.bytes > a ? s.bytes : a), 0)), growthMiB: mib(last - first) };
}
