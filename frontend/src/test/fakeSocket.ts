import { vi } from 'vitest';

type Handler = (...args: unknown[]) => void;

/** Stands in for a socket.io-client Socket: records what the app emits, lets a test play the server. */
export class FakeSocket {
  handlers = new Map<string, Set<Handler>>();
  connected = false;
  options: unknown;
  connect = vi.fn(() => this);
  disconnect = vi.fn(() => {
    this.connected = false;
    return this;
  });
  emit = vi.fn();

  constructor(options: unknown) {
    this.options = options;
  }
  on(event: string, fn: Handler) {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event)!.add(fn);
    return this;
  }
  off(event?: string) {
    if (event === undefined) this.handlers.clear();
    else this.handlers.delete(event);
    return this;
  }
  /** The server (or the transport) fires `event` at the client. */
  fire(event: string, ...args: unknown[]) {
    this.handlers.get(event)?.forEach((fn) => fn(...args));
  }
  open() {
    this.connected = true;
    this.fire('connect');
  }
  drop(reason = 'transport close') {
    this.connected = false;
    this.fire('disconnect', reason);
  }
  fail(message = 'xhr poll error') {
    this.connected = false;
    this.fire('connect_error', new Error(message));
  }
  emitted(event: string): unknown[][] {
    return (this.emit.mock.calls as unknown[][]).filter((c) => c[0] === event).map((c) => c.slice(1));
  }
}

export const sockets: FakeSocket[] = [];

export const socketIoModule = {
  io: vi.fn((...args: unknown[]) => {
    const socket = new FakeSocket(args.find((a) => typeof a === 'object'));
    sockets.push(socket);
    return socket;
  }),
};

export function lastSocket(): FakeSocket {
  const s = sockets[sockets.length - 1];
  if (!s) throw new Error('no socket created');
  return s;
}
