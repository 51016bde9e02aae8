// Unit tests of the soak's arithmetic (node --test soak/stats.test.mjs; no cluster).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deck, describe, globalGapMs, laneRng, memoryGrowth, percentile, prng, summarizeFaults, uiLabel, uptime } from './stats.mjs';

test('the same seed draws the same schedule; lanes differ', () => {
  const a = prng(7);
  const b = prng(7);
  const xs = [a(), a(), a()];
  assert.deepEqual(xs, [b(), b(), b()]);
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  assert.notEqual(laneRng(7, 's1')(), laneRng(7, 's2')());
  assert.equal(laneRng(7, 's1')(), laneRng(7, 's1')());
});

test('percentiles by nearest rank', () => {
  const xs = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(xs, 50), 50);
  assert.equal(percentile(xs, 99), 99);
  assert.equal(percentile([5], 99), 5);
  assert.equal(percentile([], 50), null);
  assert.deepEqual(describe([3, 1, 2]), { n: 3, p50: 2, p99: 3, max: 3 });
  // 500 clients × every transition of a 30-minute soak: no spread of the array into arguments.
  assert.equal(describe(Array.from({ length: 500_000 }, (_, i) => i)).max, 499_999);
});

test('uptime leaves excused windows out of both figures and injected ones out of the second', () => {
  // 0..10 s up, 10..20 s down during an injected outage, 20..30 s down (recovery),
  // 30..40 s excused (unlinked), 40..50 s up.
  const samples = [];
  for (let t = 0; t < 50_000; t += 1000) {
    samples.push({ t, connected: t < 10_000 || t >= 40_000 });
  }
  const u = uptime(samples, { injected: [{ from: 10_000, to: 20_000 }], excused: [{ from: 30_000, to: 40_000 }], end: 50_000 });
  assert.equal(u.wholeRun, 20 / 40);
  assert.equal(u.outsideInjected, 20 / 30);
  assert.equal(u.outsideFaults, 20 / 30, 'no fault window given: the recovery counts');
  assert.equal(u.observedMs, 40_000);
});

test('uptime outside fault windows leaves out a down-by-nature fault until its recovery, nothing else', () => {
  // 0..10 s up; a kill at 10 s, back at 14 s; a drop 30..33 s no fault explains; up to 50 s.
  const samples = [];
  for (let t = 0; t < 50_000; t += 1000) {
    samples.push({ t, connected: !((t >= 10_000 && t < 14_000) || (t >= 30_000 && t < 33_000)) });
  }
  const u = uptime(samples, { faults: [{ from: 10_000, to: 14_000 }], end: 50_000 });
  assert.equal(u.wholeRun, 43 / 50);
  assert.equal(u.outsideInjected, 43 / 50);
  assert.equal(u.outsideFaults, 43 / 46);
});

test('fault summary: reconnect rate leaves out faults whose expected end is not connected', () => {
  const s = summarizeFaults([
    { kind: 'agent-kill', outcome: 'reconnected', recoveryMs: 3000 },
    { kind: 'agent-kill', outcome: 'failed', lostLogin: true, recoveryMs: null },
    { kind: 'unlink', outcome: 'expected-end', recoveryMs: 1000 },
  ]);
  assert.equal(s['agent-kill'].autoReconnectRate, 0.5);
  assert.equal(s['agent-kill'].lostLogins, 1);
  assert.equal(s.unlink.autoReconnectRate, null);
  assert.equal(s.unlink.recoveryMs.max, 1000);
});

test('UI labels and memory growth', () => {
  assert.equal(uiLabel('connected', '549111'), 'Conectado (+549111)');
  assert.equal(uiLabel('connecting'), 'Conectando...');
  assert.equal(uiLabel('error'), 'Desconectado');
  assert.deepEqual(memoryGrowth([{ t: 0, bytes: 100 * 1048576 }, { t: 1, bytes: 150 * 1048576 }, { t: 2, bytes: 120 * 1048576 }]), {
    samples: 3,
    firstMiB: 100,
    lastMiB: 120,
    maxMiB: 150,
    growthMiB: 20,
  });
});

test('a deck draws every kind once per round, in a seeded order', () => {
  const kinds = ['fake-offline', 'operator-kill', 'hub-kill', 'apiserver-restart', 'etcd-restart', 'kubelet-restart', 'containerd-restart'];
  for (const seed of [1, 2, 3, 12, 99]) {
    const next = deck(laneRng(seed, 'global'), kinds);
    const round1 = kinds.map(() => next());
    const round2 = kinds.map(() => next());
    assert.deepEqual([...round1].sort(), [...kinds].sort(), `seed ${seed}`);
    assert.deepEqual([...round2].sort(), [...kinds].sort(), `seed ${seed}`);
    const again = deck(laneRng(seed, 'global'), kinds);
    assert.deepEqual(kinds.map(() => again()), round1);
  }
});

test('global gaps leave room for every kind of the first round', () => {
  assert.equal(globalGapMs(120_000, 1_800_000, 7), 120_000);
  assert.equal(globalGapMs(120_000, 600_000, 5), 60_000);
  assert.equal(globalGapMs(120_000, 600_000, 0), 120_000);
  assert.equal(globalGapMs(120_000, -5, 1), 0);
  // 30 minutes, 7 kinds, each fault taking 150 s after its gap: all drawn before the end.
  let t = 0;
  let drawn = 0;
  while (t < 1_800_000) {
    t += globalGapMs(135_000, 1_800_000 - t, 7 - drawn);
    if (t >= 1_800_000) break;
    drawn += 1;
    t += 150_000;
  }
  assert.ok(drawn >= 7, `drawn ${drawn}`);
});
