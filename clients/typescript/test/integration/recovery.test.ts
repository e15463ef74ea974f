// Reconnection and recovery against a real server: the client reaches it through
// a TCP proxy that the test cuts and restores, while another client publishes.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { Client, type ClientError, type ReconnectingEvent, type SubscribedEvent } from '../../src/index.js';
import { startProxy, type Proxy } from '../support/proxy.js';
import { nextEvent, sleep, take, Reconnecting } from '../support/tools.js';
import { startServer, type Server } from '../support/ts-server.js';

const unhandled: unknown[] = [];
process.on('unhandledRejection', (e) => unhandled.push(e));
const text = (d: Uint8Array) => new TextDecoder().decode(d);

let server: Server;
let proxy: Proxy;
const pool = new Reconnecting();

before(async () => {
  server = await startServer();
  proxy = await startProxy(Number(new URL(server.wsUrl).port));
});

after(async () => {
  await pool.closeAll();
  await proxy.close();
  await server.stop();
  assert.deepEqual(unhandled, [], 'unhandled promise rejections');
});

const make = (url: string): Client => pool.make(url);

describe('recovery after a lost connection', () => {
  it('replays exactly what was missed, in order, then goes on live', async () => {
    const reader = make(`ws://127.0.0.1:${proxy.port}/`);
    const writer = make(server.wsUrl);
    await Promise.all([reader.connect(), writer.connect()]);
    const sub = await reader.subscribe('chat:recovery');
    const it = sub.publications();
    await writer.publish('chat:recovery', 'before');
    assert.deepEqual((await take(it, 1)).map((p) => text(p.data)), ['before']);

    const errors: ClientError[] = [];
    reader.on('error', (e) => errors.push(e));
    const reconnecting: ReconnectingEvent[] = [];
    reader.on('reconnecting', (e) => reconnecting.push(e));
    const lost = nextEvent<{ willReconnect: boolean; code: number }>(reader, 'disconnected');
    proxy.down();
    const ev = await lost;
    assert.equal(ev.willReconnect, true);
    assert.equal(ev.code, 1006);
    for (let i = 1; i <= 3; i++) await writer.publish('chat:recovery', `missed ${i}`);
    // Let a few attempts fail against the dead network.
    while (reconnecting.length < 3) await nextEvent(reader, 'reconnecting');
    const resubscribed = nextEvent<SubscribedEvent>(sub, 'subscribed');
    proxy.up();
    const again = await resubscribed;
    assert.equal(again.wasRecovering, true);
    assert.equal(again.recovered, true);
    await writer.publish('chat:recovery', 'after');
    const got = await take(it, 4);
    assert.deepEqual(got.map((p) => text(p.data)), ['missed 1', 'missed 2', 'missed 3', 'after']);
    const offsets = got.map((p) => p.offset);
    assert.deepEqual(offsets, [offsets[0]!, offsets[0]! + 1, offsets[0]! + 2, offsets[0]! + 3], 'no gap, no duplicate');
    assert.ok(errors.length >= 2, 'failed attempts are error events');
    assert.ok(errors.every((e) => e.kind === 'transport' || e.kind === 'timeout'), errors.map(String).join('; '));
    assert.deepEqual(reconnecting.slice(0, 3).map((r) => r.attempt), [1, 2, 3]);
    assert.ok(reconnecting.every((r) => r.delayMs <= 400), 'capped backoff');
  });

  it('says recovered = false when the history no longer reaches back', async () => {
    const reader = make(`ws://127.0.0.1:${proxy.port}/`);
    const writer = make(server.wsUrl);
    await Promise.all([reader.connect(), writer.connect()]);
    const sub = await reader.subscribe('short:trimmed'); // keeps 3 publications
    const it = sub.publications();
    await writer.publish('short:trimmed', 'seen');
    await take(it, 1);
    const lost = nextEvent(reader, 'disconnected');
    proxy.down();
    await lost;
    for (let i = 1; i <= 5; i++) await writer.publish('short:trimmed', `gone ${i}`);
    const resubscribed = nextEvent<SubscribedEvent>(sub, 'subscribed');
    proxy.up();
    const again = await resubscribed;
    assert.equal(again.wasRecovering, true);
    assert.equal(again.recovered, false, 'trimmed: resynchronise');
    const latest = await writer.publish('short:trimmed', 'next');
    assert.equal(again.offset, latest.offset - 1, 'the Ack gives the latest offset');
    const [p] = await take(it, 1);
    assert.equal(text(p!.data), 'next', 'nothing was replayed; live publications go on');
    const page = await sub.history();
    assert.deepEqual(page.publications.map((x) => text(x.data)), ['gone 4', 'gone 5', 'next']);
  });

  it('requests wait for the connection while it is being re-established', async () => {
    const c = make(`ws://127.0.0.1:${proxy.port}/`);
    await c.connect();
    const lost = nextEvent(c, 'disconnected');
    proxy.down();
    await lost;
    const ping = c.ping();
    await sleep(300);
    proxy.up();
    assert.ok((await ping) >= 0, 'sent once connected again');
  });
});
