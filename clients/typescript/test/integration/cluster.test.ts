// The client against a cluster: two servers joined through a private redis-server
// (history and presence live in Redis). Clients on different nodes chat, see each
// other online and send to each other's sessions; a client whose node is killed
// fails over to the other node (a TCP proxy plays the load balancer) and recovers
// what was published meanwhile, with no gap and no duplicate.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import { Client, type ClientInfo, type Message, type SubscribedEvent } from '../../src/index.js';
import { startProxy, type Proxy } from '../support/proxy.js';
import { startRedis, type Redis } from '../support/redis.js';
import { nextEvent, sleep, take, Reconnecting } from '../support/tools.js';
import { startServer, type Server } from '../support/ts-server.js';

const unhandled: unknown[] = [];
process.on('unhandledRejection', (e) => unhandled.push(e));
const encode = (s: string) => new TextEncoder().encode(s);
const text = (d: Uint8Array) => new TextDecoder().decode(d);
const port = (url: string) => Number(new URL(url).port);

let redis: Redis;
let nodes: Server[] = [];
const pool = new Reconnecting();

before(async () => {
  redis = await startRedis();
  // A prefix of its own: nothing another run left in this engine is shared.
  const env = { TS_SERVER_CLUSTER_URL: redis.url, TS_SERVER_CLUSTER_PREFIX: `ts-${randomUUID()}` };
  nodes = await Promise.all([startServer(env), startServer(env)]);
});

after(async () => {
  await pool.closeAll();
  await Promise.all(nodes.map((n) => n.stop()));
  await redis.stop();
  assert.deepEqual(unhandled, [], 'unhandled promise rejections');
});

const make = (url: string): Client => pool.make(url);

/** Polls `check` until it holds (the cluster's state converges within seconds). */
async function eventually(what: string, check: () => Promise<boolean>, deadlineMs = 20_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${deadlineMs} ms`);
    await sleep(100);
  }
}

const names = (clients: ClientInfo[]) => clients.map((c) => text(c.info)).sort();

describe('a cluster of two nodes over Redis', () => {
  it('clients on different nodes chat, see each other online and reach each other', async () => {
    const [one, two] = nodes as [Server, Server];
    const ada = make(one.wsUrl);
    const bob = make(two.wsUrl);
    await Promise.all([ada.connect(), bob.connect()]);
    assert.notEqual(ada.nodeId, bob.nodeId, 'each on its own node');
    await ada.request(202, encode('Ada'));
    await bob.request(202, encode('Bob'));

    const adaRoom = await ada.subscribe('chat:cluster');
    const joined = nextEvent<ClientInfo>(adaRoom, 'join');
    const bobRoom = await bob.subscribe('chat:cluster');
    const who = await joined;
    assert.equal(text(who.info), 'Bob', "Ada sees Bob join through the other node");
    assert.equal(who.nodeId, bob.nodeId);

    const presence = await ada.presence('chat:cluster');
    assert.equal(presence.numClients, 2);
    assert.deepEqual(names(presence.clients), ['Ada', 'Bob']);
    assert.deepEqual(new Set(presence.clients.map((c) => c.nodeId)), new Set([ada.nodeId, bob.nodeId]));

    const adaHears = adaRoom.publications();
    const bobHears = bobRoom.publications();
    const sent = await bob.publish('chat:cluster', 'hello from node two');
    const [heard] = await take(adaHears, 1);
    assert.equal(text(heard!.data), 'hello from node two');
    assert.equal(heard!.offset, sent.offset, 'one offset for the channel, whichever node published');
    assert.equal(text((await take(bobHears, 1))[0]!.data), 'hello from node two');

    const inbox = bob.messages();
    await ada.send(bob.sessionId!, 'psst, Bob');
    const { value: direct } = (await inbox.next()) as IteratorResult<Message>;
    assert.equal(direct.kind, 'send');
    assert.equal(text(direct.data), 'psst, Bob');
    assert.equal(direct.emitterId, ada.sessionId, 'the sender crossed nodes with its id');
    await Promise.all([ada.close(), bob.close()]);
  });

  it("a client whose node is killed fails over to the other node and recovers what it missed", async () => {
    const [one, two] = nodes as [Server, Server];
    const balancer: Proxy = await startProxy(port(one.wsUrl));
    try {
      const reader = make(`ws://127.0.0.1:${balancer.port}/`);
      const writer = make(two.wsUrl);
      await Promise.all([reader.connect(), writer.connect()]);
      const firstNode = reader.nodeId;
      assert.notEqual(firstNode, writer.nodeId);
      await reader.request(202, encode('Reader'));
      const sub = await reader.subscribe('chat:failover');
      const it = sub.publications();
      await writer.publish('chat:failover', 'before');
      assert.deepEqual((await take(it, 1)).map((p) => text(p.data)), ['before']);

      // Node two lists the reader on node one (though both nodes just started).
      const listed = await writer.presence('chat:failover');
      assert.deepEqual(listed.clients.map((c) => [text(c.info), c.nodeId]), [['Reader', firstNode]]);

      // The balancer sends new connections to node two; node one crashes.
      balancer.retarget(port(two.wsUrl));
      const lost = nextEvent<{ willReconnect: boolean }>(reader, 'disconnected');
      await one.kill();
      assert.equal((await lost).willReconnect, true);
      const resubscribed = nextEvent<SubscribedEvent>(sub, 'subscribed');
      for (let i = 1; i <= 3; i++) await writer.publish('chat:failover', `missed ${i}`);
      const again = await resubscribed;
      assert.notEqual(reader.nodeId, firstNode, 'now served by the other node');
      assert.equal(again.wasRecovering, true);
      assert.equal(again.recovered, true, 'the history lives in Redis, not in the dead node');
      await writer.publish('chat:failover', 'after');
      const got = await take(it, 4);
      assert.deepEqual(got.map((p) => text(p.data)), ['missed 1', 'missed 2', 'missed 3', 'after']);
      const offsets = got.map((p) => p.offset);
      assert.deepEqual(offsets, [offsets[0]!, offsets[0]! + 1, offsets[0]! + 2, offsets[0]! + 3], 'no gap, no duplicate');

      // The dead node's entry leaves presence (a survivor claims it): only the
      // reader's new session remains, on node two.
      await eventually('the dead node leaves presence', async () => {
        const p = await writer.presence('chat:failover');
        return p.numClients === 1 && p.clients[0]!.sessionId === reader.sessionId;
      });
    } finally {
      await balancer.close();
    }
  });
});
