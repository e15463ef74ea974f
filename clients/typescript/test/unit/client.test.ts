// The client against a fake server (test/support/fake.ts): the test plays the
// server frame by frame, so every rule is checked exactly, without timing races.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';

import { Client, encodeTable, type ClientOptions, type DisconnectedEvent, type ReconnectingEvent } from '../../src/client.js';
import { ClientError } from '../../src/errors.js';
import { ErrorCode } from '../../src/generated/framework/protocol/fbs/error-code.js';
import { Opcode } from '../../src/generated/framework/protocol/fbs/opcode.js';
import { Uuid } from '../../src/generated/framework/protocol/fbs/uuid.js';
import type { Publication, SubscribedEvent } from '../../src/subscription.js';
import { eventually, FakeServer, FakeSocket, NODE, OTHER, SESSION } from '../support/fake.js';
import { signJwt } from '../support/jwt.js';
import { clientInfoPayload } from '../support/server-frame.js';

// No test may leave an unhandled promise rejection behind.
const unhandled: unknown[] = [];
process.on('unhandledRejection', (e) => unhandled.push(e));
after(() => assert.deepEqual(unhandled, [], 'unhandled promise rejections'));

const text = (d: Uint8Array) => new TextDecoder().decode(d);
const bytes = (s: string) => new TextEncoder().encode(s);
const fast = { initialDelayMs: 1, maxDelayMs: 20, jitter: 0 };

function setup(options: ClientOptions = {}) {
  const server = new FakeServer();
  const client = new Client('ws://fake.test/ws', { WebSocket: server.WebSocket, pingIntervalMs: 0, reconnect: fast, ...options });
  return { server, client };
}

async function connected(options: ClientOptions = {}) {
  const { server, client } = setup(options);
  const done = client.connect();
  const socket = await server.nextSocket();
  socket.welcome();
  await done;
  return { server, client, socket };
}

/**
 * Welcomes every connection attempt until the client is connected, acknowledging
 * every Subscribe: robust to a loaded machine, where an attempt may time out
 * before the test's Welcome reaches it.
 */
async function serveUntilConnected(server: FakeServer, client: Client): Promise<FakeSocket> {
  for (;;) {
    const s = await server.nextSocket();
    s.welcome();
    await new Promise((r) => setTimeout(r, 10));
    if (client.state === 'connected') return s;
  }
}

function record<T>(client: { on(e: any, f: (v: T) => void): unknown }, event: string): T[] {
  const seen: T[] = [];
  client.on(event, (v: T) => seen.push(v));
  return seen;
}

describe('connecting', () => {
  it('resolves at the Welcome with the session, and asks for binary frames', async () => {
    const { server, client } = setup();
    const events = record(client, 'connected');
    assert.equal(client.state, 'disconnected');
    const done = client.connect();
    assert.equal(client.state, 'connecting');
    const socket = await server.nextSocket();
    assert.equal(socket.url, 'ws://fake.test/ws');
    assert.equal(new Client('https://fake.test/x?a=1').url, 'wss://fake.test/x?a=1', 'http(s) means ws(s)');
    assert.equal(socket.binaryType, 'arraybuffer');
    socket.welcome({ userId: 'ada', expiresAtMs: 0 });
    const ev = await done;
    assert.deepEqual(ev, { sessionId: SESSION, nodeId: NODE, userId: 'ada', expiresAtMs: 0, reconnected: false, attempts: 1 });
    assert.deepEqual(events, [ev]);
    assert.equal(client.state, 'connected');
    assert.equal(client.sessionId, SESSION);
    assert.equal(await client.connect(), ev, 'connect() when connected resolves at once');
    await client.close();
  });

  it('puts the token in the query string', async () => {
    const { server, client } = setup({ token: 'abc.def.ghi' });
    void client.connect();
    const socket = await server.nextSocket();
    assert.equal(new URL(socket.url).searchParams.get('token'), 'abc.def.ghi');
    await client.close();
  });

  it('without a WebSocket, connect() rejects and says what to do', async () => {
    const client = new Client('ws://x/', { WebSocket: undefined });
    const saved = (globalThis as any).WebSocket;
    (globalThis as any).WebSocket = undefined;
    try {
      const c = new Client('ws://x/');
      await assert.rejects(c.connect(), /experimental-websocket/);
    } finally {
      (globalThis as any).WebSocket = saved;
    }
    void client;
  });

  it('rejects requests made before connect()', async () => {
    const { client } = setup();
    await assert.rejects(client.ping(), (e: ClientError) => e.kind === 'disconnected');
  });

  it('holds requests made while connecting until the Welcome', async () => {
    const { server, client } = setup();
    void client.connect();
    const socket = await server.nextSocket();
    const pong = client.ping();
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(socket.sent.length, 0, 'nothing is sent before the Welcome');
    socket.welcome();
    const ping = await socket.next(Opcode.Ping);
    assert.ok(ping.transactionId);
    socket.write({ opcode: Opcode.Pong, transactionId: ping.transactionId });
    assert.ok((await pong) >= 0);
    await client.close();
  });

  it('without reconnection, a failed connect rejects and ends disconnected', async () => {
    const { server, client } = setup({ reconnect: false });
    const disconnected = record<DisconnectedEvent>(client, 'disconnected');
    const errors = record<ClientError>(client, 'error');
    const done = client.connect();
    (await server.nextSocket()).serverClose(1006);
    await assert.rejects(done, (e: ClientError) => e.kind === 'disconnected' && /gave up after 1 attempt/.test(e.message));
    assert.equal(client.state, 'disconnected');
    assert.equal(disconnected.length, 1);
    assert.equal(disconnected[0]!.willReconnect, false);
    assert.equal(errors[0]!.kind, 'transport');
    assert.match(errors[0]!.message, /connection reset/);
  });
});

describe('requests', () => {
  it('correlates replies by transaction id, in any order', async () => {
    const { client, socket } = await connected();
    const a = client.request(200, bytes('a'));
    const b = client.request(201, bytes('b'));
    const fa = await socket.next(200);
    const fb = await socket.next(201);
    assert.notEqual(fa.transactionId, fb.transactionId);
    socket.write({ opcode: 201, transactionId: fb.transactionId, payload: bytes('B') });
    socket.write({ opcode: 200, transactionId: fa.transactionId, payload: bytes('A') });
    assert.equal(text((await a).data), 'A');
    assert.equal(text((await b).data), 'B');
    await client.close();
  });

  it('rejects with typed errors: error_code and retry_after_ms', async () => {
    const { client, socket } = await connected();
    const p = client.request(201);
    const f = await socket.next(201);
    socket.write({ opcode: Opcode.Error, transactionId: f.transactionId, errorCode: ErrorCode.RateLimited, errorMessage: 'rate limited', retryAfterMs: 1500 });
    await assert.rejects(p, (e: unknown) => {
      assert.ok(e instanceof ClientError);
      assert.equal(e.kind, 'server');
      assert.equal(e.errorCode, ErrorCode.RateLimited);
      assert.equal(e.errorCodeName, 'RateLimited');
      assert.equal(e.retryAfterMs, 1500);
      assert.equal(e.serverMessage, 'rate limited');
      return true;
    });
    await client.close();
  });

  it('times out', async () => {
    const { client } = await connected();
    await assert.rejects(client.request(200, null, { timeoutMs: 30 }), (e: ClientError) => e.kind === 'timeout');
    assert.equal(client.state, 'connected', 'a request timeout keeps the connection');
    await client.close();
  });

  it('builds and reads typed payloads', async () => {
    const { client, socket } = await connected();
    // A `Uuid` struct stands in for an application table here.
    const p = client.request(210, (b) => {
      b.startObject(1);
      b.addFieldStruct(0, Uuid.createUuid(b, Array.from({ length: 16 }, (_, i) => i)), 0);
      return b.endObject();
    });
    const f = await socket.next(210);
    assert.ok(f.payload.length > 16);
    socket.write({ opcode: 210, transactionId: f.transactionId, payload: encodeTable((b) => b.createString('answer')) });
    const reply = await p;
    assert.equal(reply.opcode, 210);
    assert.equal(reply.decode((bb) => bb.__string(bb.position() + 0, undefined as any) ?? ''), 'answer');
    const none = await client.request(211, null, { noReply: true });
    assert.equal(none, null);
    assert.equal((await socket.next(211)).transactionId !== null, true);
    await client.close();
  });

  it('publish / send / broadcast / history / presence frames', async () => {
    const { client, socket } = await connected();
    const pub = client.publish('chat:a', 'hi');
    let f = await socket.next(Opcode.Publish);
    assert.equal(f.channel, 'chat:a');
    assert.equal(text(f.payload), 'hi');
    assert.equal(f.requiresAck, true);
    socket.write({ opcode: Opcode.Ack, transactionId: f.transactionId, offset: 3, epoch: 'e1' });
    assert.deepEqual(await pub, { offset: 3, epoch: 'e1' });

    assert.deepEqual(await client.publish('chat:a', 'quiet', { ack: false }), { offset: 0, epoch: '' });
    f = await socket.next(Opcode.Publish);
    assert.equal(f.requiresAck, false);

    const sent = client.send(OTHER, bytes('psst'));
    f = await socket.next(Opcode.Send);
    assert.equal(f.receiverId, OTHER);
    socket.write({ opcode: Opcode.Ack, transactionId: f.transactionId });
    await sent;

    const all = client.broadcast('everyone');
    f = await socket.next(Opcode.Broadcast);
    socket.write({ opcode: Opcode.Error, transactionId: f.transactionId, errorCode: ErrorCode.Forbidden, errorMessage: 'no' });
    await assert.rejects(all, (e: ClientError) => e.errorCode === ErrorCode.Forbidden);

    const hist = client.history('chat:a', { since: 2, limit: 10 });
    f = await socket.next(Opcode.History);
    assert.equal(f.offset, 2);
    assert.equal(f.limit, 10);
    socket.write({ opcode: Opcode.History, transactionId: f.transactionId, epoch: 'e1', offset: 3 });
    assert.deepEqual(await hist, { epoch: 'e1', offset: 3, publications: [] });

    const pres = client.presence('chat:a');
    f = await socket.next(Opcode.Presence);
    assert.equal(f.channel, 'chat:a');
    socket.write({ opcode: Opcode.Presence, transactionId: f.transactionId });
    assert.deepEqual(await pres, { clients: [], numClients: 0, numUsers: 0 });
    await client.close();
  });

  it('reports uncorrelated errors and unreadable frames as events, and goes on', async () => {
    const { client, socket } = await connected();
    const errors = record<ClientError>(client, 'error');
    socket.write({ opcode: Opcode.Error, errorCode: ErrorCode.BadFrame, errorMessage: 'not a frame' });
    socket.write(new Uint8Array([1, 2, 3]));
    await eventually(() => errors.length === 2, 'two errors');
    assert.equal(errors[0]!.errorCode, ErrorCode.BadFrame);
    assert.equal(errors[1]!.kind, 'protocol');
    const pong = client.ping();
    const f = await socket.next(Opcode.Ping);
    socket.write({ opcode: Opcode.Pong, transactionId: f.transactionId });
    await pong;
    await client.close();
  });
});

describe('deliveries', () => {
  it('sends, broadcasts and pushed application frames as messages', async () => {
    const { client, socket } = await connected();
    const seen = record<{ kind: string }>(client, 'message');
    const it = client.messages();
    socket.write({ opcode: Opcode.Send, receiverId: SESSION, emitterId: OTHER, payload: bytes('1'), userId: 'bob' });
    socket.write({ opcode: Opcode.Broadcast, emitterId: OTHER, payload: bytes('2') });
    socket.write({ opcode: 250, payload: bytes('3') });
    socket.write({ opcode: 16, payload: bytes('from a later version') });
    const got = [];
    for await (const m of it) {
      got.push([m.kind, m.opcode, text(m.data), m.emitterId, m.userId]);
      if (got.length === 3) break;
    }
    assert.deepEqual(got, [
      ['send', Opcode.Send, '1', OTHER, 'bob'],
      ['broadcast', Opcode.Broadcast, '2', OTHER, null],
      ['app', 250, '3', null, null],
    ]);
    assert.equal(seen.length, 3);
    await client.close();
  });
});

describe('subscriptions', () => {
  it('subscribe with recover, then follow offsets; duplicates are dropped, epoch changes reported', async () => {
    const { client, socket } = await connected();
    const sub = client.newSubscription('chat:a');
    const it = sub.publications();
    const f = await socket.next(Opcode.Subscribe);
    assert.equal(f.channel, 'chat:a');
    assert.equal(f.recover, true, 'always a recovering Subscribe (always acked, gives the position)');
    assert.equal(f.epoch, null);
    assert.equal(f.offset, 0);
    assert.equal(sub.state, 'subscribing');
    socket.write({ opcode: Opcode.Ack, transactionId: f.transactionId, epoch: 'e1', offset: 5 });
    const ev = await sub.ready();
    assert.deepEqual(ev, { channel: 'chat:a', wasRecovering: false, recovered: false, epoch: 'e1', offset: 5 });
    assert.equal(sub.state, 'subscribed');
    assert.deepEqual(sub.position, { epoch: 'e1', offset: 5 });
    assert.throws(() => client.newSubscription('chat:a'), /already subscribed/);

    const resets = record(sub, 'reset');
    for (const [offset, epoch] of [[6, 'e1'], [7, 'e1'], [7, 'e1'], [5, 'e1'], [1, 'e2']] as const) {
      socket.write({ opcode: Opcode.Publish, channel: 'chat:a', payload: bytes(`${epoch}#${offset}`), offset, epoch, emitterId: OTHER });
    }
    const got: string[] = [];
    for await (const p of it) {
      got.push(text(p.data));
      if (got.length === 3) break;
    }
    assert.deepEqual(got, ['e1#6', 'e1#7', 'e2#1']);
    assert.deepEqual(resets, [{ channel: 'chat:a', previousEpoch: 'e1', epoch: 'e2' }]);
    assert.deepEqual(sub.position, { epoch: 'e2', offset: 1 });
    await client.close();
  });

  it('recovers from `since`, replayed publications first', async () => {
    const { client, socket } = await connected();
    const pubs: number[] = [];
    const sub = client.newSubscription('chat:a', { since: { epoch: 'e1', offset: 3 }, onPublication: (p) => pubs.push(p.offset) });
    const f = await socket.next(Opcode.Subscribe);
    assert.equal(f.epoch, 'e1');
    assert.equal(f.offset, 3);
    socket.write({ opcode: Opcode.Publish, channel: 'chat:a', payload: bytes('4'), offset: 4, epoch: 'e1' });
    socket.write({ opcode: Opcode.Ack, transactionId: f.transactionId, epoch: 'e1', offset: 4, recovered: true });
    const ev = await sub.ready();
    assert.equal(ev.recovered, true);
    assert.equal(ev.wasRecovering, true);
    assert.deepEqual(pubs, [4]);
    await client.close();
  });

  it('a refused subscription ends with an error event, and rejects ready()', async () => {
    const { client, socket } = await connected();
    const sub = client.newSubscription('secret');
    const errors = record<ClientError>(sub, 'error');
    const ended = record(sub, 'unsubscribed');
    const iterating = (async () => {
      for await (const _ of sub) void _;
      return 'ended';
    })();
    const f = await socket.next(Opcode.Subscribe);
    socket.write({ opcode: Opcode.Error, transactionId: f.transactionId, errorCode: ErrorCode.Forbidden, errorMessage: 'no' });
    await assert.rejects(client.subscribe('secret'), (e: ClientError) => e.errorCode === ErrorCode.Forbidden || e.kind === 'unsubscribed');
    await assert.rejects(sub.ready(), (e: ClientError) => e.errorCode === ErrorCode.Forbidden);
    assert.equal(await iterating, 'ended');
    assert.equal(errors[0]!.errorCode, ErrorCode.Forbidden);
    assert.equal(ended.length, 1);
    assert.equal(client.getSubscription('secret'), undefined);
    await client.close();
  });

  it('join and leave events', async () => {
    const { client, socket } = await connected();
    const sub = client.newSubscription('chat:a');
    const joins = record<{ sessionId: string; userId: string }>(sub, 'join');
    const leaves = record(sub, 'leave');
    const f = await socket.next(Opcode.Subscribe);
    socket.write({ opcode: Opcode.Ack, transactionId: f.transactionId });
    await sub.ready();
    socket.write({ opcode: Opcode.Join, channel: 'chat:a', payload: clientInfoPayload({ sessionId: OTHER, userId: 'bob', nodeId: NODE }) });
    socket.write({ opcode: Opcode.Leave, channel: 'chat:a', payload: clientInfoPayload({ sessionId: OTHER, userId: 'bob', nodeId: NODE }) });
    await eventually(() => leaves.length === 1, 'the leave');
    assert.equal(joins[0]!.sessionId, OTHER);
    assert.equal(joins[0]!.userId, 'bob');
    await client.close();
  });

  it('unsubscribe sends Unsubscribe and ends the iterators', async () => {
    const { client, socket } = await connected();
    const sub = client.newSubscription('chat:a');
    const f = await socket.next(Opcode.Subscribe);
    socket.write({ opcode: Opcode.Ack, transactionId: f.transactionId });
    await sub.ready();
    const it = sub.publications();
    const done = sub.unsubscribe();
    const u = await socket.next(Opcode.Unsubscribe);
    assert.equal(u.channel, 'chat:a');
    socket.write({ opcode: Opcode.Ack, transactionId: u.transactionId });
    await done;
    assert.deepEqual(await it.next(), { value: undefined, done: true });
    assert.equal(sub.state, 'unsubscribed');
    await client.close();
  });
});

describe('reconnection', () => {
  it('reconnects with backoff and resubscribes from the last position', async () => {
    const { server, client, socket } = await connected({ reconnect: { initialDelayMs: 5, maxDelayMs: 40, jitter: 0 } });
    const sub = client.newSubscription('chat:a');
    let f = await socket.next(Opcode.Subscribe);
    socket.write({ opcode: Opcode.Ack, transactionId: f.transactionId, epoch: 'e1', offset: 2 });
    await sub.ready();
    socket.write({ opcode: Opcode.Publish, channel: 'chat:a', payload: bytes('3'), offset: 3, epoch: 'e1' });
    await eventually(() => sub.position?.offset === 3, 'offset 3');

    const disconnected = record<DisconnectedEvent>(client, 'disconnected');
    const reconnecting = record<ReconnectingEvent>(client, 'reconnecting');
    const subscribed = record<SubscribedEvent>(sub, 'subscribed');
    const connectedEvents = record<{ reconnected: boolean; attempts: number }>(client, 'connected');
    const inFlight = client.request(200);
    await socket.next(200);
    socket.serverClose(1001, 'server shutting down');
    await assert.rejects(inFlight, (e: ClientError) => e.kind === 'disconnected');
    assert.deepEqual(disconnected, [{ code: 1001, reason: 'server shutting down', willReconnect: true }]);
    assert.equal(client.state, 'connecting');
    assert.equal(sub.state, 'subscribing');

    // Two attempts fail, the third gets through.
    (await server.nextSocket()).serverClose(1006);
    (await server.nextSocket()).serverClose(1006);
    const s = await server.nextSocket();
    s.welcome();
    f = await s.next(Opcode.Subscribe);
    assert.equal(f.recover, true);
    assert.equal(f.epoch, 'e1');
    assert.equal(f.offset, 3);
    s.write({ opcode: Opcode.Publish, channel: 'chat:a', payload: bytes('4'), offset: 4, epoch: 'e1' });
    s.write({ opcode: Opcode.Ack, transactionId: f.transactionId, epoch: 'e1', offset: 4, recovered: true });
    await eventually(() => subscribed.length === 1, 'the resubscription');
    assert.deepEqual(subscribed[0], { channel: 'chat:a', wasRecovering: true, recovered: true, epoch: 'e1', offset: 4 });
    assert.deepEqual(
      reconnecting.map((r) => [r.attempt, r.delayMs]),
      [
        [1, 5],
        [2, 10],
        [3, 20],
      ],
      'exponential backoff (jitter off)',
    );
    assert.equal(reconnecting[0]!.reason, 'server shutting down');
    assert.match(reconnecting[1]!.reason, /connection reset/);
    assert.deepEqual(
      connectedEvents.map((c) => [c.reconnected, c.attempts]),
      [[true, 3]],
    );
    assert.deepEqual(sub.position, { epoch: 'e1', offset: 4 });
    await client.close();
  });

  it('gives up after maxAttempts', async () => {
    const { server, client, socket } = await connected({ reconnect: { ...fast, maxAttempts: 2 } });
    const disconnected = record<DisconnectedEvent>(client, 'disconnected');
    socket.serverClose(1006);
    (await server.nextSocket()).serverClose(1006);
    (await server.nextSocket()).serverClose(1006);
    await eventually(() => disconnected.length === 2, 'giving up');
    assert.equal(disconnected[1]!.willReconnect, false);
    assert.match(disconnected[1]!.reason, /gave up after 2 attempts/);
    assert.equal(client.state, 'disconnected');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(server.sockets.length, 3, 'no further attempt');
  });

  it('a Welcome that never comes fails the attempt', async () => {
    const { server, client } = setup({ timeoutMs: 50 });
    const errors = record<ClientError>(client, 'error');
    const done = client.connect();
    await server.nextSocket(); // silent
    await serveUntilConnected(server, client);
    await done;
    assert.equal(errors[0]!.kind, 'timeout');
    await client.close();
  });

  it('an unanswered ping drops the connection and reconnects', async () => {
    const { server, client, socket } = await connected({ pingIntervalMs: 50, timeoutMs: 500 });
    const disconnected = record<DisconnectedEvent>(client, 'disconnected');
    await socket.next(Opcode.Ping); // never answered
    await eventually(() => disconnected.length > 0, 'the dropped connection');
    assert.deepEqual(disconnected[0], { code: 4000, reason: 'ping timeout', willReconnect: true });
    assert.equal(socket.closedWith?.code, 4000);
    await serveUntilConnected(server, client);
    await client.close();
  });

  it('an unanswered Subscribe drops the connection and subscribes again', async () => {
    const { server, client, socket } = await connected({ timeoutMs: 500 });
    const sub = client.newSubscription('chat:a');
    const disconnected = record<DisconnectedEvent>(client, 'disconnected');
    await socket.next(Opcode.Subscribe); // never answered
    await eventually(() => disconnected.length > 0, 'the dropped connection');
    assert.equal(disconnected[0]!.reason, 'subscribe timeout');
    for (;;) {
      const s = await serveUntilConnected(server, client);
      const f = await s.next(Opcode.Subscribe);
      s.write({ opcode: Opcode.Ack, transactionId: f.transactionId });
      await eventually(() => sub.state === 'subscribed' || client.state !== 'connected', 'an answer');
      if (sub.state === 'subscribed') break;
    }
    await sub.ready();
    await client.close();
  });
});

describe('tokens', () => {
  it('asks for a token to connect, and refreshes it with Auth ahead of expires_at_ms', async () => {
    const asked: string[] = [];
    let n = 0;
    const { server, client } = setup({
      getToken: ({ reason }) => {
        asked.push(reason);
        return `token-${++n}`;
      },
      refreshAheadMs: 1000,
    });
    const authenticated = record<{ userId: string | null; expiresAtMs: number }>(client, 'authenticated');
    void client.connect();
    const socket = await server.nextSocket();
    assert.equal(new URL(socket.url).searchParams.get('token'), 'token-1');
    socket.welcome({ userId: 'ada', expiresAtMs: Date.now() + 1500 });
    const auth = await socket.next(Opcode.Auth);
    assert.equal(auth.token, 'token-2');
    assert.ok(auth.transactionId);
    const later = Date.now() + 3_600_000;
    socket.write({ opcode: Opcode.Ack, transactionId: auth.transactionId, userId: 'ada', expiresAtMs: later });
    await eventually(() => authenticated.length === 1, 'the authenticated event');
    assert.deepEqual(authenticated[0], { userId: 'ada', expiresAtMs: later });
    assert.equal(client.expiresAtMs, later);
    assert.deepEqual(asked, ['connect', 'refresh']);
    assert.equal(server.sockets.length, 1, 'refreshed without reconnecting');
    await client.close();
  });

  it('a refused refresh is an error event and is retried', async () => {
    let n = 0;
    const { client, socket } = await connected({ getToken: () => `t${++n}`, refreshAheadMs: 5000 });
    const errors = record<ClientError>(client, 'error');
    void socket; // the first connection had no expiry
    const s = socket as FakeSocket;
    // A login by hand sets an expiry: the refresh follows from it.
    const login = client.authenticate('manual');
    let auth = await s.next(Opcode.Auth);
    s.write({ opcode: Opcode.Ack, transactionId: auth.transactionId, userId: 'ada', expiresAtMs: Date.now() + 4000 });
    await login;
    auth = await s.next(Opcode.Auth);
    s.write({ opcode: Opcode.Error, transactionId: auth.transactionId, errorCode: ErrorCode.Unauthorized, errorMessage: 'bad token' });
    await eventually(() => errors.length === 1, 'the refused refresh');
    assert.equal(errors[0]!.errorCode, ErrorCode.Unauthorized);
    auth = await s.next(Opcode.Auth);
    s.write({ opcode: Opcode.Ack, transactionId: auth.transactionId, userId: 'ada', expiresAtMs: Date.now() + 3_600_000 });
    await eventually(() => client.expiresAtMs > Date.now() + 60_000, 'the retried refresh');
    await client.close();
  });

  it('after "token expired", reconnects with a fresh token', async () => {
    const asked: string[] = [];
    const { server, client } = setup({
      token: signJwt('s', 'ada', 60_000),
      getToken: ({ reason }) => {
        asked.push(reason);
        return 'fresh';
      },
    });
    void client.connect();
    const first = await server.nextSocket();
    first.welcome();
    await eventually(() => client.state === 'connected', 'connected');
    assert.deepEqual(asked, [], 'a valid token is used as given');
    first.serverClose(1008, 'token expired');
    const second = await server.nextSocket();
    assert.equal(new URL(second.url).searchParams.get('token'), 'fresh');
    assert.deepEqual(asked, ['expired']);
    await client.close();
  });

  it('an expired token is replaced before connecting', async () => {
    const asked: string[] = [];
    const { server, client } = setup({ token: signJwt('s', 'ada', -60_000), getToken: ({ reason }) => (asked.push(reason), 'fresh') });
    void client.connect();
    const s = await server.nextSocket();
    assert.equal(new URL(s.url).searchParams.get('token'), 'fresh');
    assert.deepEqual(asked, ['expired']);
    await client.close();
  });

  it('without a token callback, "token expired" is final', async () => {
    const { client, socket } = await connected({ token: 'x' });
    const disconnected = record<DisconnectedEvent>(client, 'disconnected');
    socket.serverClose(1008, 'token expired');
    await eventually(() => disconnected.length === 1, 'disconnected');
    assert.equal(disconnected[0]!.willReconnect, false);
    assert.equal(client.state, 'disconnected');
  });

  it('a failing token callback is a failed attempt', async () => {
    let calls = 0;
    const { server, client } = setup({
      getToken: () => {
        if (++calls === 1) throw new Error('auth backend down');
        return 'ok';
      },
    });
    const errors = record<ClientError>(client, 'error');
    const done = client.connect();
    const s = await server.nextSocket();
    s.welcome();
    await done;
    assert.equal(errors[0]!.kind, 'token');
    assert.match(errors[0]!.message, /auth backend down/);
    await client.close();
  });
});

describe('close', () => {
  it('closes cleanly: pending requests reject, iterators end, no reconnection', async () => {
    const { server, client, socket } = await connected();
    const sub = client.newSubscription('chat:a');
    const subEnd = record(sub, 'unsubscribed');
    const messages = client.messages();
    const pubs = sub.publications();
    const pending = client.request(200);
    await socket.next(200);
    const disconnected = record<DisconnectedEvent>(client, 'disconnected');
    const rejected = assert.rejects(pending, (e: ClientError) => e.kind === 'closed');
    await client.close();
    await rejected;
    assert.deepEqual(await messages.next(), { value: undefined, done: true });
    assert.deepEqual(await pubs.next(), { value: undefined, done: true });
    assert.deepEqual(disconnected, [{ code: 1000, reason: 'client closed', willReconnect: false }]);
    assert.deepEqual(socket.closedWith, { code: 1000, reason: 'client closed' });
    assert.equal(subEnd.length, 1);
    assert.equal(client.state, 'disconnected');
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(server.sockets.length, 1);
    await client.close(); // twice is fine
  });

  it('close() during reconnection stops it; connect() rejections are never unhandled', async () => {
    const { server, client, socket } = await connected({ reconnect: { initialDelayMs: 10_000, jitter: 0 } });
    const ignored = client.connect(); // resolved: connected
    void ignored;
    socket.serverClose(1006);
    await eventually(() => client.state === 'connecting', 'reconnecting');
    const waiting = client.connect(); // never awaited: its rejection must not be unhandled
    void waiting;
    const unanswered = client.subscribe('chat:x').catch((e: ClientError) => e.kind);
    await client.close();
    assert.equal(await unanswered, 'closed');
    assert.equal(server.sockets.length, 1);
  });

  it('the client connects again after close()', async () => {
    const { server, client } = await connected();
    await client.close();
    const again = client.connect();
    const s = await server.nextSocket();
    s.welcome();
    const ev = await again;
    assert.equal(ev.reconnected, true);
    await client.close();
  });
});

describe('listeners', () => {
  it('a throwing listener breaks neither the client nor the other listeners', async () => {
    const { client, socket } = await connected();
    const original = console.error;
    const logged: unknown[] = [];
    console.error = (...args: unknown[]) => logged.push(args);
    try {
      const seen: Publication[] = [];
      client.on('publication', () => {
        throw new Error('boom');
      });
      client.on('publication', (p) => seen.push(p));
      socket.write({ opcode: Opcode.Publish, channel: 'loose', payload: bytes('x') });
      await eventually(() => seen.length === 1, 'the second listener');
      assert.equal(logged.length, 1);
    } finally {
      console.error = original;
    }
    await client.close();
  });
});
