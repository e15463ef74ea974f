// The client on Node's own WebSocket (Node 20: --experimental-websocket, which
// the test script passes; Node 22+: always there), as a browser would use it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { Client, ErrorCode, type ClientError } from '../../src/index.js';
import { take } from '../support/tools.js';
import { startServer, type Server } from '../support/ts-server.js';

const unhandled: unknown[] = [];
process.on('unhandledRejection', (e) => unhandled.push(e));
const text = (d: Uint8Array) => new TextDecoder().decode(d);

let server: Server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server.stop();
  assert.deepEqual(unhandled, [], 'unhandled promise rejections');
});

describe("Node's global WebSocket", () => {
  it('is there (run with --experimental-websocket on Node 20)', () => {
    assert.equal(typeof globalThis.WebSocket, 'function');
  });

  it('connects, subscribes, publishes, requests, and closes cleanly', async () => {
    const a = new Client(server.serviceWsUrl, { timeoutMs: 20_000 });
    const b = new Client(server.serviceWsUrl, { timeoutMs: 20_000 });
    try {
      await Promise.all([a.connect(), b.connect()]);
      const sub = await a.subscribe('chat:global');
      const it = sub.publications();
      const r = await b.publish('chat:global', 'over undici');
      const [p] = await take(it, 1);
      assert.equal(text(p!.data), 'over undici');
      assert.equal(p!.offset, r.offset);
      await assert.rejects(a.request(201), (e: ClientError) => e.errorCode === ErrorCode.RateLimited && e.retryAfterMs === 1500);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});
