import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { backoffDelay, DEFAULT_RECONNECT } from '../../src/backoff.js';
import { ClientError, errorCodeName } from '../../src/errors.js';
import { decodeClientInfo, decodeFrame, decodeHistory, decodePresence, encodeFrame } from '../../src/frame.js';
import { ErrorCode } from '../../src/generated/framework/protocol/fbs/error-code.js';
import { Opcode } from '../../src/generated/framework/protocol/fbs/opcode.js';
import { jwtExpiresAtMs } from '../../src/jwt.js';
import { AsyncQueue } from '../../src/queue.js';
import { randomUuidBytes, uuidToBytes, uuidToString } from '../../src/uuid.js';
import { NODE, OTHER, SESSION } from '../support/fake.js';
import { signJwt } from '../support/jwt.js';
import { clientInfoPayload, historyPayload, presencePayload, serverFrame } from '../support/server-frame.js';

describe('frames', () => {
  it('encodes every client field, finished with FWK1, and decodes them back', () => {
    const tx = randomUuidBytes();
    const bytes = encodeFrame({
      opcode: Opcode.Subscribe,
      transactionId: tx,
      requiresAck: true,
      channel: 'chat:rust',
      receiverId: uuidToBytes(OTHER),
      payload: new Uint8Array([1, 2, 3]),
      token: 'a.b.c',
      traceId: uuidToBytes(SESSION),
      offset: 41,
      epoch: '9f3c00000000abcd',
      recover: true,
      limit: 7,
    });
    assert.deepEqual([...bytes.subarray(4, 8)], [0x46, 0x57, 0x4b, 0x31], 'bytes 4..8 are FWK1');
    const f = decodeFrame(bytes);
    assert.equal(f.opcode, Opcode.Subscribe);
    assert.equal(f.transactionId, uuidToString(tx));
    assert.equal(f.requiresAck, true);
    assert.equal(f.channel, 'chat:rust');
    assert.equal(f.receiverId, OTHER);
    assert.deepEqual([...f.payload], [1, 2, 3]);
    assert.equal(f.traceId, SESSION);
    assert.equal(f.offset, 41);
    assert.equal(f.epoch, '9f3c00000000abcd');
    assert.equal(f.recover, true);
    assert.equal(f.limit, 7);
  });

  it('leaves absent fields out (defaults on reading)', () => {
    const f = decodeFrame(encodeFrame({ opcode: Opcode.Ping }));
    assert.equal(f.transactionId, null);
    assert.equal(f.channel, null);
    assert.equal(f.payload.length, 0);
    assert.equal(f.offset, 0);
    assert.equal(f.recover, false);
  });

  it('reads the server-only fields', () => {
    const f = decodeFrame(
      serverFrame({ opcode: Opcode.Welcome, receiverId: SESSION, nodeId: NODE, userId: 'ada', expiresAtMs: 1_900_000_000_000 }),
    );
    assert.equal(f.receiverId, SESSION);
    assert.equal(f.nodeId, NODE);
    assert.equal(f.userId, 'ada');
    assert.equal(f.expiresAtMs, 1_900_000_000_000);
    const e = decodeFrame(serverFrame({ opcode: Opcode.Error, errorCode: ErrorCode.RateLimited, errorMessage: 'slow down', retryAfterMs: 250 }));
    assert.equal(e.errorCode, ErrorCode.RateLimited);
    assert.equal(e.errorMessage, 'slow down');
    assert.equal(e.retryAfterMs, 250);
  });

  it('refuses what is not a frame', () => {
    assert.throws(() => decodeFrame(new Uint8Array(0)));
    assert.throws(() => decodeFrame(new Uint8Array(16)));
    const bytes = encodeFrame({ opcode: Opcode.Ping });
    bytes[4] = 0x58;
    assert.throws(() => decodeFrame(bytes), /FWK1/);
  });

  it('carries large payloads intact', () => {
    const big = new Uint8Array(300_000).map((_, i) => i % 251);
    const f = decodeFrame(encodeFrame({ opcode: Opcode.Publish, channel: 'x', payload: big }));
    assert.deepEqual(f.payload, big);
  });

  it('decodes the v1.1 payload tables', () => {
    const who = decodeClientInfo(clientInfoPayload({ sessionId: OTHER, userId: 'bob', nodeId: NODE, info: new Uint8Array([66]) }));
    assert.deepEqual(who, { sessionId: OTHER, userId: 'bob', nodeId: NODE, info: new Uint8Array([66]) });

    const presence = decodePresence(
      presencePayload(
        [
          { sessionId: SESSION, userId: 'ada', nodeId: NODE },
          { sessionId: OTHER, nodeId: NODE },
        ],
        1,
      ),
    );
    assert.equal(presence.numClients, 2);
    assert.equal(presence.numUsers, 1);
    assert.deepEqual(presence.clients.map((c) => c.sessionId).sort(), [SESSION, OTHER].sort());
    assert.deepEqual(decodePresence(new Uint8Array(0)), { clients: [], numClients: 0, numUsers: 0 });

    const payload = historyPayload([
      { offset: 4, data: new Uint8Array([4]), emitterId: OTHER, userId: 'bob' },
      { offset: 5, data: new Uint8Array([5]), emitterId: '00000000-0000-0000-0000-000000000000' },
    ]);
    const page = decodeHistory(decodeFrame(serverFrame({ opcode: Opcode.History, epoch: 'e1', offset: 9, payload })));
    assert.equal(page.epoch, 'e1');
    assert.equal(page.offset, 9);
    assert.deepEqual(
      page.publications.map((p) => [p.offset, [...p.data], p.emitterId, p.userId]),
      [
        [4, [4], OTHER, 'bob'],
        [5, [5], '00000000-0000-0000-0000-000000000000', null],
      ],
    );
  });
});

describe('uuids', () => {
  it('round-trips text and bytes, in RFC 4122 order', () => {
    const bytes = uuidToBytes('00112233-4455-6677-8899-aabbccddeeff');
    assert.deepEqual([...bytes], [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
    assert.equal(uuidToString(bytes), '00112233-4455-6677-8899-aabbccddeeff');
    assert.throws(() => uuidToBytes('nope'), TypeError);
  });

  it('makes random v4 ids', () => {
    const a = uuidToString(randomUuidBytes());
    const b = uuidToString(randomUuidBytes());
    assert.notEqual(a, b);
    assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe('backoff', () => {
  it('grows exponentially up to the cap, less at most the jitter', () => {
    const policy = { ...DEFAULT_RECONNECT, initialDelayMs: 100, maxDelayMs: 5000, jitter: 0.5 };
    for (let attempt = 0; attempt < 12; attempt++) {
      const base = Math.min(100 * 2 ** attempt, 5000);
      for (const r of [0, 0.5, 0.999]) {
        const d = backoffDelay(policy, attempt, () => r);
        assert.ok(d <= base && d >= base / 2, `attempt ${attempt}: ${d} within [${base / 2}, ${base}]`);
      }
    }
    assert.equal(backoffDelay({ ...policy, jitter: 0 }, 3), 800);
    assert.equal(backoffDelay({ ...policy, jitter: 0 }, 10_000), 5000, 'huge attempts stay at the cap');
    assert.equal(backoffDelay({ ...policy, jitter: 0, multiplier: 0.5 }, 4), 100, 'a multiplier below 1 counts as 1');
    assert.equal(backoffDelay({ ...policy, jitter: NaN }, 0, () => 0.9), 100);
  });

  it('spreads clients out (jitter)', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 50; i++) seen.add(Math.round(backoffDelay(DEFAULT_RECONNECT, 2)));
    assert.ok(seen.size > 10, `${seen.size} distinct delays`);
  });
});

describe('jwt', () => {
  it('reads exp without verifying', () => {
    const token = signJwt('secret', 'ada', 60_000);
    const exp = jwtExpiresAtMs(token);
    assert.ok(Math.abs(exp - (Date.now() + 60_000)) < 2000, `${exp}`);
    assert.equal(jwtExpiresAtMs('not a jwt'), 0);
    assert.equal(jwtExpiresAtMs('a.%%%.c'), 0);
  });
});

describe('errors', () => {
  it('names error codes', () => {
    assert.equal(errorCodeName(ErrorCode.RateLimited), 'RateLimited');
    assert.equal(errorCodeName(999), '999');
    const e = new ClientError('server', 'x', { errorCode: ErrorCode.Forbidden, retryAfterMs: 5 });
    assert.ok(e instanceof Error);
    assert.equal(e.errorCodeName, 'Forbidden');
    assert.equal(e.retryAfterMs, 5);
    assert.equal(e.name, 'ClientError');
  });
});

describe('AsyncQueue', () => {
  it('buffers, then ends', async () => {
    const q = new AsyncQueue<number>();
    q.push(1);
    q.push(2);
    const later = q.next();
    assert.deepEqual(await later, { value: 1, done: false });
    assert.deepEqual(await q.next(), { value: 2, done: false });
    const waiting = q.next();
    q.push(3);
    assert.deepEqual(await waiting, { value: 3, done: false });
    const pending = q.next();
    q.end();
    assert.deepEqual(await pending, { value: undefined, done: true });
    q.push(4);
    assert.deepEqual(await q.next(), { value: undefined, done: true });
  });

  it('detaches when a for-await loop breaks', async () => {
    let ended = 0;
    const q = new AsyncQueue<number>(() => ended++);
    q.push(1);
    q.push(2);
    for await (const v of q) {
      assert.equal(v, 1);
      break;
    }
    assert.equal(ended, 1);
  });
});
