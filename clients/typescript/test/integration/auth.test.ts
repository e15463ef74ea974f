// Tokens against a real server with JWT authentication (HS256) required.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';

import { Client, ClientError, ErrorCode, type AuthenticatedEvent, type ClientOptions } from '../../src/index.js';
import { EchoReply } from '../app-generated/echo-reply.js';
import { EchoRequest } from '../app-generated/echo-request.js';
import { signJwt } from '../support/jwt.js';
import { nextEvent, sleep, take } from '../support/tools.js';
import { startServer, type Server } from '../support/ts-server.js';

const SECRET = 'a-long-random-test-secret-0123456789';
const unhandled: unknown[] = [];
process.on('unhandledRejection', (e) => unhandled.push(e));

let server: Server;
const clients: Client[] = [];

before(async () => {
  server = await startServer({ TS_SERVER_JWT_SECRET: SECRET, TS_SERVER_AUTH_REQUIRED: '1' });
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await server.stop();
  assert.deepEqual(unhandled, [], 'unhandled promise rejections');
});

function make(options: ClientOptions): Client {
  const c = new Client(server.wsUrl, { WebSocket, timeoutMs: 20_000, ...options });
  clients.push(c);
  return c;
}

describe('authentication', () => {
  it('connects with a token in the query string: user_id and expires_at_ms', async () => {
    const token = signJwt(SECRET, 'ada', 600_000);
    const c = make({ token });
    const ev = await c.connect();
    assert.equal(ev.userId, 'ada');
    assert.ok(Math.abs(ev.expiresAtMs - (Date.now() + 600_000)) < 5_000, `${ev.expiresAtMs}`);
    const reply = await c.request(200, (b) => EchoRequest.createEchoRequest(b, b.createString('x'), 1));
    assert.equal(reply.decode(EchoReply.getRootAsEchoReply).userId(), 'ada');

    const other = make({ token: signJwt(SECRET, 'bob', 600_000) });
    await other.connect();
    const sub = await other.subscribe('chat:auth');
    const it = sub.publications();
    await c.publish('chat:auth', 'hi bob');
    const [p] = await take(it, 1);
    assert.equal(p!.userId, 'ada', 'deliveries carry the publisher\'s user');
    await assert.rejects(c.broadcast('all'), (e: ClientError) => e.errorCode === ErrorCode.Forbidden, 'authenticated servers refuse Broadcast by default');
  });

  it('refreshes the token with an Auth frame ahead of expires_at_ms, without reconnecting', async () => {
    let issued = 0;
    const c = make({
      getToken: () => {
        issued++;
        return signJwt(SECRET, 'ada', 6_000);
      },
      // Refreshed at about half the lifetime: seconds of margin on a loaded machine.
      refreshAheadMs: 4_000,
      reconnect: false,
    });
    const disconnects: unknown[] = [];
    c.on('disconnected', (e) => disconnects.push(e));
    const first = await c.connect();
    assert.equal(first.userId, 'ada');
    const refreshed = await nextEvent<AuthenticatedEvent>(c, 'authenticated', 30_000);
    assert.equal(refreshed.userId, 'ada');
    assert.ok(refreshed.expiresAtMs >= first.expiresAtMs, 'a later expiry');
    // Past the first token's expiry, the connection is still the same one.
    await sleep(Math.max(0, first.expiresAtMs - Date.now()) + 1_000);
    assert.ok((await c.ping()) >= 0);
    assert.deepEqual(disconnects, []);
    assert.ok(issued >= 2);
    assert.equal(c.state, 'connected');
  });

  it('a bad token is refused at the upgrade', async () => {
    const c = make({ token: signJwt('another secret', 'eve', 600_000), reconnect: false });
    const errors: ClientError[] = [];
    c.on('error', (e) => errors.push(e));
    await assert.rejects(c.connect(), (e: ClientError) => e.kind === 'disconnected');
    assert.match(errors[0]!.message, /401/);
  });

  it('an anonymous connection is refused where a token is required', async () => {
    const c = make({ reconnect: false });
    await assert.rejects(c.connect());
    assert.equal(c.state, 'disconnected');
  });

  it('authenticate() changes the identity; a bad token leaves it', async () => {
    const c = make({ token: signJwt(SECRET, 'ada', 600_000) });
    await c.connect();
    const ev = await c.authenticate(signJwt(SECRET, 'ada-admin', 600_000));
    assert.equal(ev.userId, 'ada-admin');
    assert.equal(c.userId, 'ada-admin');
    await assert.rejects(c.authenticate('not.a.jwt'), (e: ClientError) => e.errorCode === ErrorCode.Unauthorized);
    assert.equal(c.userId, 'ada-admin');
  });
});
