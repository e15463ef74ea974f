// A real browser (Debian's chromium, driven by playwright-core): two pages chat
// through the server with the minified bundle; one goes offline, the other
// writes, then the first reloads and recovers exactly what it missed.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server as HttpServer } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type BrowserContext, type Page } from 'playwright-core';

import { signJwt } from '../support/jwt.js';
import { launchChromium, type Browser } from '../support/browser.js';
import { PACKAGE_DIR, startServer, type Server } from '../support/ts-server.js';

const SECRET = 'browser-test-secret-0123456789abcdef';
const BUNDLE = join(PACKAGE_DIR, 'dist', 'framework-client.min.js');
// Generous: a loaded two-core machine.
const DEADLINE = 30_000;

let server: Server;
let http: HttpServer;
let pageBase: string;
let context: BrowserContext;
let browser: Browser;

before(async () => {
  assert.ok(existsSync(BUNDLE), `${BUNDLE} is missing: npm run build`);
  server = await startServer({ TS_SERVER_JWT_SECRET: SECRET });
  const page = readFileSync(join(PACKAGE_DIR, 'test', 'browser', 'chat.html'));
  http = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page);
    } else if (url.pathname === '/framework-client.min.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(readFileSync(BUNDLE));
    } else if (url.pathname === '/token') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end(signJwt(SECRET, url.searchParams.get('user') ?? 'anon', 600_000));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((res) => http.listen(0, '127.0.0.1', res));
  pageBase = `http://127.0.0.1:${(http.address() as { port: number }).port}/`;
  browser = await launchChromium();
  context = browser.context;
});

after(async () => {
  await browser?.close();
  await new Promise<void>((res) => (http ? http.close(() => res()) : res()));
  await server?.stop();
});

interface ChatState {
  lines: Array<{ from: string; text: string; offset: number }>;
  events: string[];
  ready: boolean;
  subscribed: { wasRecovering: boolean; recovered: boolean } | null;
}

async function open(user: string): Promise<Page> {
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${pageBase}?user=${user}&ws=${encodeURIComponent(server.wsUrl)}`);
  await ready(page, errors);
  return page;
}

async function ready(page: Page, errors: string[] = []): Promise<void> {
  await page.waitForFunction(() => (window as any).chat?.ready === true, null, { timeout: DEADLINE }).catch((e) => {
    throw new Error(`the page did not subscribe: ${e}\npage errors: ${errors.join('\n')}`);
  });
}

const state = (page: Page) => page.evaluate(() => JSON.parse(JSON.stringify((window as any).chat, (k, v) => (k === 'client' ? undefined : v)))) as Promise<ChatState>;
const texts = async (page: Page) => (await state(page)).lines.map((l) => `${l.from}: ${l.text}`);

async function linesAre(page: Page, expected: string[]): Promise<void> {
  await page
    .waitForFunction((n) => (window as any).chat.lines.length >= n, expected.length, { timeout: DEADLINE })
    .catch(() => undefined);
  assert.deepEqual(await texts(page), expected);
}

async function say(page: Page, text: string): Promise<void> {
  await page.fill('#text', text);
  await page.click('#send');
}

describe('in chromium', () => {
  it('two pages chat; a page that reloads recovers what it missed', async () => {
    const ada = await open('ada');
    const bob = await open('bob');
    assert.equal((await state(ada)).subscribed?.wasRecovering, false);
    await ada.waitForFunction(() => (window as any).chat.events.includes('join:bob'), null, { timeout: DEADLINE });
    assert.deepEqual(await ada.evaluate(() => (window as any).chat.presence()), ['ada', 'bob']);

    await say(ada, 'hello bob');
    await linesAre(bob, ['ada: hello bob']);
    await say(bob, 'hi ada');
    const both = ['ada: hello bob', 'bob: hi ada'];
    await linesAre(ada, both);
    await linesAre(bob, both);

    // Bob goes offline; Ada writes on.
    await bob.evaluate(() => (window as any).chat.client.close());
    await ada.waitForFunction(() => (window as any).chat.events.includes('leave:bob'), null, { timeout: DEADLINE });
    await ada.evaluate(async () => {
      const chat = (window as any).chat;
      const sub = chat.client.getSubscription('chat:browser');
      await sub.publish('while you were away (1)');
      await sub.publish('while you were away (2)');
    });
    const all = [...both, 'ada: while you were away (1)', 'ada: while you were away (2)'];
    await linesAre(ada, all);

    // Bob's page reloads: its saved position brings back exactly what it missed.
    await bob.reload();
    await ready(bob);
    const after = await state(bob);
    assert.deepEqual(after.subscribed && { wasRecovering: after.subscribed.wasRecovering, recovered: after.subscribed.recovered }, {
      wasRecovering: true,
      recovered: true,
    });
    await linesAre(bob, all);
    const offsets = after.lines.map((l) => l.offset);
    assert.deepEqual(offsets, offsets.map((_, i) => offsets[0]! + i), 'no gap, no duplicate');
    assert.equal(await bob.textContent('#status'), 'recovered: true');

    // And the conversation goes on, live, both ways.
    await say(bob, 'back!');
    await linesAre(ada, [...all, 'bob: back!']);
    await linesAre(bob, [...all, 'bob: back!']);
  });
});
