// The fault kinds the soak injects. Each `inject` does one bounded thing and returns what the
// soak must know to judge it: `injectedMs` (how long the fault itself holds the session down by
// design: an outage of the service; 0 for a kill), `expect` ('reconnect', or 'logged-out'
// for an unlink from the phone) and `takesDown` (the fault ends the browser that holds the
// session, or its connection, by its nature — a kill, a crash, a hang, an outage — so the session
// is down until a new browser has restored it; the faults without it must not cost a second). Session kinds act on one session; global kinds on a component
// every session depends on (cluster kinds restart a part of the cluster itself through
// `devcluster restart`).
import { execFile } from 'node:child_process';
import { podProcesses } from './kube.mjs';
import { between } from './stats.mjs';

const post = async (base, path, body) => {
  const res = await fetch(new URL(path, base), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  if (!res.ok) throw new Error(`POST ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
};

function kill9(procs, what) {
  if (!procs.length) throw new Error(`no process to kill: ${what}`);
  for (const p of procs) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch (err) {
      if (err.code !== 'ESRCH') throw err;
    }
  }
  return procs.map((p) => p.pid);
}

const isChromium = (p) => /chrom/i.test(p.comm) || /chromium/.test(p.cmdline[0] ?? '');
// Chromium's child processes rewrite their command line into one space-separated string.
const typeOf = (p) => /(?:^|\s)--type=(\S+)/.exec(p.cmdline.join(' '))?.[1] ?? null;

/** The running (not terminating) pod of a session. */
async function sessionPod(ctx, session) {
  const pods = await ctx.kube.pods(ctx.namespace, `app.kubernetes.io/instance=${session}`);
  const pod = pods.find((p) => !p.metadata.deletionTimestamp && p.status?.phase === 'Running');
  if (!pod) throw new Error(`${session} has no running pod`);
  return pod;
}

export const SESSION_KINDS = {
  'agent-kill': {
    async inject(ctx, s) {
      const pod = await sessionPod(ctx, s.name);
      const pids = kill9(podProcesses(pod.metadata.uid).filter((p) => p.comm === 'wa-session'), `${s.name}'s agent`);
      return { detail: `kill -9 wa-session pid ${pids} in ${pod.metadata.name}`, injectedMs: 0, expect: 'reconnect', takesDown: true };
    },
  },
  'browser-crash': {
    async inject(ctx, s) {
      const pod = await sessionPod(ctx, s.name);
      const pids = kill9(podProcesses(pod.metadata.uid).filter((p) => /\/chromium$/.test(p.cmdline[0] ?? '') && typeOf(p) === null), `${s.name}'s Chromium`);
      return { detail: `kill -9 Chromium's browser process ${pids}`, injectedMs: 0, expect: 'reconnect', takesDown: true };
    },
  },
  'renderer-crash': {
    async inject(ctx, s) {
      const pod = await sessionPod(ctx, s.name);
      const pids = kill9(podProcesses(pod.metadata.uid).filter((p) => isChromium(p) && typeOf(p) === 'renderer'), `${s.name}'s renderers`);
      return { detail: `kill -9 Chromium renderers ${pids}`, injectedMs: 0, expect: 'reconnect', takesDown: true };
    },
  },
  'page-hang': {
    async inject(ctx, s) {
      const r = await post(ctx.fakeUrl, '_fake/hang', { phone: s.phone });
      return { detail: `/_fake/hang: ${r?.pages} page(s)`, injectedMs: 0, expect: 'reconnect', takesDown: true };
    },
  },
  'pod-delete': {
    async inject(ctx, s) {
      const pod = await sessionPod(ctx, s.name);
      ctx.kube.kubectl(['delete', 'pod', pod.metadata.name, '-n', ctx.namespace, '--wait=false']);
      return { detail: `kubectl delete pod ${pod.metadata.name} (graceful)`, injectedMs: 0, expect: 'reconnect', takesDown: true, watchStatusTruth: true };
    },
  },
  oom: {
    async inject(ctx, s) {
      const r = await post(ctx.fakeUrl, '_fake/bloat', { phone: s.phone, mb: ctx.oomMb });
      return { detail: `/_fake/bloat ${ctx.oomMb} MiB over the container's limit: ${r?.pages} page(s)`, injectedMs: 0, expect: 'reconnect', takesDown: true };
    },
  },
  conflict: {
    async inject(ctx, s) {
      const r = await post(ctx.fakeUrl, '_fake/conflict', { phone: s.phone });
      return { detail: `/_fake/conflict: ${r?.pages} page(s)`, injectedMs: 0, expect: 'reconnect', takesDown: true };
    },
  },
  unlink: {
    async inject(ctx, s) {
      const r = await post(ctx.fakeUrl, '_fake/unlink', { phone: s.phone });
      return { detail: `/_fake/unlink: ${r?.devices} device(s)`, injectedMs: 0, expect: 'logged-out' };
    },
  },
};

/** A component's pod by its chart label, and the process to kill in it. */
async function componentKill(ctx, component, comm, rng) {
  const pods = (await ctx.kube.pods(ctx.systemNamespace, `app.kubernetes.io/component=${component}`)).filter((p) => !p.metadata.deletionTimestamp && p.status?.phase === 'Running');
  if (!pods.length) throw new Error(`no running ${component} pod`);
  const pod = pods[Math.floor(rng() * pods.length) % pods.length];
  const pids = kill9(podProcesses(pod.metadata.uid).filter((p) => p.comm === comm), `${component} ${pod.metadata.name}`);
  return { pod: pod.metadata.name, pids };
}

export const GLOBAL_KINDS = {
  'fake-offline': {
    async inject(ctx, _rng, lane) {
      const secs = Math.round(between(lane, ctx.offlineSecs[0], ctx.offlineSecs[1]));
      await post(ctx.fakeUrl, '_fake/offline', { secs });
      return { detail: `/_fake/offline ${secs} s (WhatsApp unreachable: TIMEOUT)`, injectedMs: secs * 1000, expect: 'reconnect', takesDown: true, affectsSessions: true };
    },
  },
  'operator-kill': {
    async inject(ctx, rng) {
      const { pod, pids } = await componentKill(ctx, 'operator', 'wa-operator', rng);
      return { detail: `kill -9 wa-operator ${pids} in ${pod}`, injectedMs: 0, expect: 'reconnect', component: 'operator', pod };
    },
  },
  'hub-kill': {
    async inject(ctx, rng) {
      const { pod, pids } = await componentKill(ctx, 'hub', 'wa-hub', rng);
      return { detail: `kill -9 wa-hub ${pids} in ${pod} with clients connected`, injectedMs: 0, expect: 'reconnect', component: 'hub', pod };
    },
  },
};

/**
 * `devcluster restart [--kill] COMPONENT` on the soak's cluster (ctx.devclusterStateDir, with
 * ctx.devclusterBin): the supervisor stops the component and starts it again, and the command
 * returns once it is back (tests/devcluster/src/control.rs). Bounded by `devcluster`'s own
 * 10 s stop grace + 120 s to be back; killed here after 180 s.
 */
function devclusterRestart(ctx, component, kill) {
  if (!ctx.devclusterStateDir) throw new Error('no devcluster state dir known to the soak (SOAK_DEVCLUSTER_STATE_DIR / DEVCLUSTER_STATE_DIR)');
  const args = ['restart', '--state-dir', ctx.devclusterStateDir, ...(kill ? ['--kill'] : []), component];
  return new Promise((resolve, reject) => {
    execFile(ctx.devclusterBin ?? 'devcluster', args, { timeout: 180_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      const said = `${stderr}${stdout}`.trim();
      if (err) reject(new Error(`devcluster ${args.join(' ')}: ${said || err.message}`));
      else resolve(said.replace(/^devcluster: /, ''));
    });
  });
}

/** A restart of a cluster part: how it is stopped (SIGTERM, or SIGKILL as a crash) is drawn. */
function clusterRestart(component) {
  return {
    async inject(ctx, rng) {
      const kill = rng() < 0.5;
      const t0 = Date.now();
      // Not awaited here: the sessions are judged while the part is down and coming back.
      const done = devclusterRestart(ctx, component, kill).then(
        (said) => ({ ok: true, said, backMs: Date.now() - t0 }),
        (err) => ({ ok: false, said: err.message, backMs: Date.now() - t0 }),
      );
      // The sessions hold on through it (their pods, browsers and the service do not need the
      // part while it restarts): each is judged like after an outage with no injected
      // downtime, so any drop counts against uptime and a QR is a lost login.
      return { detail: `devcluster restart${kill ? ' --kill' : ''} ${component}`, injectedMs: 0, expect: 'reconnect', affectsSessions: true, clusterPart: component, done };
    },
  };
}

/** Cluster-wide: one at a time for the whole cluster, on the global lane. */
export const CLUSTER_KINDS = {
  'apiserver-restart': clusterRestart('kube-apiserver'),
  'etcd-restart': clusterRestart('etcd'),
  'kubelet-restart': clusterRestart('kubelet'),
  'containerd-restart': clusterRestart('containerd'),
};
Object.assign(GLOBAL_KINDS, CLUSTER_KINDS);

export const ALL_KINDS = [...Object.keys(SESSION_KINDS), ...Object.keys(GLOBAL_KINDS)];
