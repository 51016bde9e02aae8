import { useEffect, useState } from 'react';

// Hash routes: the hub serves index.html at `/` only, so the route must not be part of the path.
export type Route = { page: 'list'; all: boolean } | { page: 'session'; instanceId: string };

export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, '');
  const m = /^\/whatsapp\/([^/?]+)/.exec(path);
  if (m) return { page: 'session', instanceId: decodeURIComponent(m[1]) };
  return { page: 'list', all: /[?&]all\b/.test(path) };
}

export function useRoute(): Route {
  const [hash, setHash] = useState(() => window.location.hash);
  useEffect(() => {
    const onChange = () => setHash(window.location.hash);
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  return parseRoute(hash);
}

export function navigate(hash: string, replace = false) {
  if (replace) window.location.replace(hash);
  else window.location.hash = hash;
}
