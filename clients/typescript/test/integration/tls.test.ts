// The client over wss:// against a real server with TLS (TS_SERVER_TLS=1: a
// certificate for 127.0.0.1 made at start by the server's own test CA), on the
// `ws` package given that CA.
import assert from 'node:assert/strict';
import type { ClientRequestArgs } from 'node:http';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';

import { Client, ClientError } from '../../src/index.js';
import { take } from '../support/tools.js';
import { startServer, type Server } from '../support/ts-server.js';

const unhandled: unknown[] = [];
process.on('unhandledRejection', (e) => unhandled.push(e));
const text = (d: Uint8Array) => new TextDecoder().decode(d);

let server: Server;
before(async () => {
  server = await startServer({ TS_SERVER_TLS: '1' });
});
after(async () => {
  await server.stop();
  assert.deepEqual(unhandled, [], 'unhandled promise rejections');
});

/** `ws` trusting only the server's test CA. */
function trustingTestCa(ca: string) {
  return class extends WebSocket {
    constructor(url: string | URL, protocols?: string | string[], options?: WebSocket.ClientOptions | ClientRequestArgs) {
      super(url, protocols, { ...options, ca });
    }
  };
}

describe('TLS', () => {
  it('connects over wss:// on both services, with the test CA', async () => {
    const WS = trustingTestCa(server.ca!);
    const clients = [server.wsUrl, server.serviceWsUrl].map((url) => {
      assert.match(url, /^wss:\/\//);
      return new Client(url, { WebSocket: WS, timeoutMs: 20_000 });
    });
    const [a, b] = clients as [Client, Client];
    try {
      await Promise.all([a.connect(), b.connect()]);
      assert.ok((await a.ping()) >= 0);
      const sub = await b.subscribe('chat:tls');
      const it = sub.publications();
      await a.publish('chat:tls', 'over TLS');
      const [p] = await take(it, 1);
      assert.equal(text(p!.data), 'over TLS');
      assert.equal(p!.emitterId, a.sessionId);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });

  it('refuses a server whose certificate it cannot verify', async () => {
    // Node's default roots do not hold the test CA.
    const c = new Client(server.wsUrl, { WebSocket, reconnect: false, timeoutMs: 5_000 });
    const errors: ClientError[] = [];
    c.on('error', (e) => errors.push(e));
    await assert.rejects(c.connect());
    await c.close();
    assert.ok(errors.length > 0, 'the failure is reported');
  });
});
