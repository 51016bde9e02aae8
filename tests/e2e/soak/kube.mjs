// The soak's window on the API server: one `kubectl proxy` on loopback (the user's kubeconfig,
// no client library), plain GETs, a watch of the sessions, the kubelet's stats summary, and
// `kubectl` for the few writes.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

export class Kube {
  constructor(kubeconfig, log) {
    this.kubeconfig = kubeconfig;
    this.log = log;
    this.proxy = null;
    this.base = null;
  }

  async start() {
    const child = spawn('kubectl', ['proxy', '--port=0', '--address=127.0.0.1'], {
      env: { ...process.env, KUBECONFIG: this.kubeconfig },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proxy = child;
    this.base = await new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`kubectl proxy did not start: ${out}`)), 30_000);
      const onData = (chunk) => {
        out += chunk;
        const m = /Starting to serve on 127\.0\.0\.1:(\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(`http://127.0.0.1:${m[1]}`);
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', (code) => reject(new Error(`kubectl proxy exited ${code}: ${out}`)));
    });
    return this;
  }

  stop() {
    this.proxy?.kill('SIGTERM');
  }

  async get(path, timeoutMs = 10_000) {
    const res = await fetch(`${this.base}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${(await res.text()).slice(0, 300)}`);
    return res.json();
  }

  kubectl(args, input) {
    const r = spawnSync('kubectl', args, { encoding: 'utf8', input, env: { ...process.env, KUBECONFIG: this.kubeconfig }, timeout: 120_000 });
    if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr || r.stdout}`);
    return r.stdout;
  }

  sessionsPath(ns) {
    return `/apis/whatsapp.leadmaster.io/v1alpha1/namespaces/${ns}/whatsappsessions`;
  }

  async pods(ns, selector) {
    const q = selector ? `?labelSelector=${encodeURIComponent(selector)}` : '';
    return (await this.get(`/api/v1/namespaces/${ns}/pods${q}`)).items;
  }

  /** The kubelet's /stats/summary (container working sets: what limits and OOM decisions use). */
  async statsSummary(node = 'devcluster-node') {
    return this.get(`/api/v1/nodes/${node}/proxy/stats/summary`, 20_000);
  }

  /**
   * Watches the sessions of `ns`; calls onEvent(type, object, receivedAtMs) for every change,
   * re-listing and re-watching when the stream ends (an API server restart ends it). Returns
   * a stop function.
   */
  watchSessions(ns, onEvent) {
    let stopped = false;
    let controller = null;
    const loop = async () => {
      while (!stopped) {
        try {
          const list = await this.get(this.sessionsPath(ns));
          for (const o of list.items) onEvent('SYNC', o, Date.now());
          controller = new AbortController();
          const res = await fetch(`${this.base}${this.sessionsPath(ns)}?watch=1&allowWatchBookmarks=false&resourceVersion=${list.metadata.resourceVersion}`, { signal: controller.signal });
          if (!res.ok) throw new Error(`watch: ${res.status}`);
          const decoder = new TextDecoder();
          let buf = '';
          for await (const chunk of res.body) {
            buf += decoder.decode(chunk, { stream: true });
            let nl;
            while ((nl = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, nl);
              buf = buf.slice(nl + 1);
              if (!line.trim()) continue;
              const ev = JSON.parse(line);
              if (ev.type === 'ERROR') throw new Error(`watch error: ${JSON.stringify(ev.object).slice(0, 200)}`);
              onEvent(ev.type, ev.object, Date.now());
            }
          }
        } catch (err) {
          if (!stopped) this.log(`sessions watch restarts: ${err.message}`);
        }
        if (!stopped) await new Promise((r) => setTimeout(r, 1000));
      }
    };
    loop();
    return () => {
      stopped = true;
      controller?.abort();
    };
  }
}

/** Host processes of a pod (the node shares the host's PID namespace): pid, comm, cmdline. */
export function podProcesses(podUid) {
  const needle = `pod${podUid}`;
  const out = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!readFileSync(`/proc/${entry}/cgroup`, 'utf8').includes(needle)) continue;
      const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean);
      out.push({ pid: Number(entry), comm, cmdline });
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}
