import { useSyncExternalStore } from 'react';

// Whether the hub answered the last time anything tried to reach it. Every REST call and the
// socket report here, so one banner reflects what all parts of the page see.
let reachable = true;
const listeners = new Set<() => void>();

function set(next: boolean) {
  if (next === reachable) return;
  reachable = next;
  listeners.forEach((l) => l());
}

export const reportReachable = () => set(true);
export const reportUnreachable = () => set(false);
export const isHubReachable = () => reachable;

function subscribe(listener: () => void) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function useHubReachable(): boolean {
  return useSyncExternalStore(subscribe, isHubReachable, isHubReachable);
}
