// The soak's short form (issue 12; the long one is bench/soak/run.sh): two linked sessions, a
// few socket.io clients and the browser on the UI while faults are injected on a seeded
// schedule, the kubelet restarted among them. Asserted: no login lost (no fault needed a new QR), an unlink from the phone ends
// logged out without looping, every fault that should reconnect did, and at the end every
// client's and the browser's view equals the CR, and the CR equals the fake's truth. Timings
// are reported, not asserted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { soak } from '../soak/engine.mjs';
import { env } from './lib.mjs';

const MINUTES = Number(process.env.E2E_SOAK_MINUTES ?? 1.5);

test('short soak: faults, no lost login, every view equals the CR and the CR the fake', { timeout: 900_000 }, async () => {
  const run = await soak({
    kubeconfig: process.env.E2E_KUBECONFIG,
    hubUrl: env.url,
    fakeUrl: env.fakeUrl,
    namespace: env.namespace,
    // The harness runs the operator and the hub as host processes: session faults only.
    systemNamespace: null,
    tenant: 'soak',
    user: 'sofia',
    password: env.password('sofia'),
    prefix: 'soak',
    phoneBase: 20000,
    sessions: 2,
    clients: 20,
    browser: true,
    minutes: MINUTES,
    seed: Number(process.env.E2E_SOAK_SEED ?? 12),
    // kubelet-restart: the global lane's first draw for seed 12 (devcluster restart on the
    // harness's cluster; nothing else runs on it while the e2e files run one at a time).
    faults: ['agent-kill', 'browser-crash', 'pod-delete', 'unlink', 'fake-offline', 'kubelet-restart'],
    gapSecs: [5, 15],
    globalGapSecs: [20, 40],
    offlineSecs: [8, 12],
    recoverySecs: 90,
    loggedOutHoldSecs: 5,
    oomMb: 0,
    linkParallel: 2,
    memoryEverySecs: 30,
    artifacts: env.artifacts,
    // The session pods' logs (kept for a look after a failure: the namespace goes at the end).
    nodeLogDir: process.env.DEVCLUSTER_STATE_DIR && `${process.env.DEVCLUSTER_STATE_DIR}/node/var-log/pods`,
    devclusterStateDir: process.env.DEVCLUSTER_STATE_DIR,
    devclusterBin: process.env.DEVCLUSTER_BIN,
    deleteSessions: true,
    log: (...a) => console.error(`[soak ${new Date().toISOString().slice(11, 19)}]`, ...a),
  });
  const f = run.figures;
  await run.close();
  console.error(`[soak] figures: ${JSON.stringify({ ...f, faults: undefined, memory: undefined })}`);
  const judged = f.faults.filter((x) => x.outcome !== 'inject-failed');
  assert.ok(judged.length >= 2, `at least two faults were injected and judged: ${JSON.stringify(f.faults)}`);
  assert.deepEqual(f.injectFailures, [], 'every fault could be injected');
  assert.equal(f.lostLogins, 0, `no lost login: ${JSON.stringify(f.faults.filter((x) => x.lostLogin))}`);
  assert.equal(f.unlinkLoops, 0, 'an unlink ends logged out, not in a loop');
  const bad = judged.filter((x) => !['reconnected', 'expected-end'].includes(x.outcome));
  assert.deepEqual(bad, [], 'every fault ended as it should');
  assert.ok(f.clusterRestarts.length >= 1, 'a cluster part was restarted');
  assert.deepEqual(f.clusterRestarts.filter((r) => !r.ok), [], 'every restarted cluster part came back');
  assert.deepEqual(f.crVsFakeAtEnd, [], 'the CR says what the fake knows');
  assert.equal(f.socketClients.finalMismatches, 0, 'every socket client shows what the CR says');
  assert.equal(f.socketClients.connectedAtEnd, 20);
  assert.deepEqual(f.browser.mismatches, [], 'the browser shows what the CR says');
});
