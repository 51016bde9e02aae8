// After a soak: every WARN and ERROR line the product's containers wrote (the kubelet's CRI log
// files, copied during the run so deleted pods' lines are kept), grouped by component, level and
// message with a count and one example — what an operator watching those levels would see.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function* files(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* files(p);
    else if (/\.log(\.\d+)?$/.test(name) || /^\d+\.log/.test(name)) yield p;
  }
}

/** `<time> <stream> <F|P> <line>` (CRI) → the line; JSON tracing lines → {level, message}. */
export function parseLine(raw) {
  const m = /^\S+ (?:stdout|stderr) [FP] (.*)$/.exec(raw);
  const line = m ? m[1] : raw;
  try {
    const j = JSON.parse(line);
    const level = String(j.level ?? '').toUpperCase();
    const message = j.fields?.message ?? j.message ?? j.msg ?? '';
    const error = j.fields?.error ?? j.error;
    return { level, message: error ? `${message} (error: ${String(error).slice(0, 160)})` : String(message), line };
  } catch {
    const lv = /\b(WARN|ERROR)\b/.exec(line);
    return { level: lv ? lv[1] : '', message: line.slice(0, 200), line };
  }
}

/** The directory of a pod's logs is `<ns>_<pod>_<uid>/<container>/N.log`: the component. */
function componentOf(path, root) {
  const [podDir, container] = path.slice(root.length + 1).split('/');
  const [ns, pod] = podDir.split('_');
  const base = pod.replace(/-[a-z0-9]{8,10}-[a-z0-9]{5}$/, '').replace(/-[a-z0-9]{5}$/, '').replace(/-\d+$/, '');
  return `${ns}/${base}/${container}`;
}

export function scanLogs(root) {
  const groups = new Map();
  for (const file of files(root)) {
    const component = componentOf(file, root).replace(/soak-\d+/, 'soak-NN').replace(/wa-[a-z0-9-]+-\d+$/, 'session');
    for (const raw of readFileSync(file, 'utf8').split('\n')) {
      if (!raw) continue;
      const { level, message, line } = parseLine(raw);
      if (level !== 'WARN' && level !== 'ERROR') continue;
      // Numbers and ids vary per line; the message's shape is what repeats.
      const shape = message.replace(/[0-9a-f]{8,}/g, '…').replace(/\d+(\.\d+)?/g, 'N').slice(0, 200);
      const key = `${component}|${level}|${shape}`;
      const g = groups.get(key) ?? { component, level, message: shape, count: 0, example: line.slice(0, 400) };
      g.count += 1;
      groups.set(key, g);
    }
  }
  return [...groups.values()].sort((a, b) => b.count - a.count);
}
