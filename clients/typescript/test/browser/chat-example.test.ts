// The main example's chat page in a real browser (Debian's chromium, driven by
// playwright-core): `cargo run -p examples --example chat` plays its scripted
// conversation, then a page joins as "dora": it shows what was said before (by
// name), who is online (by name), and a line it sends comes back through the
// server. The page runs examples/chat/client.js, which must be this package's
// browser bundle (dist/framework-client.iife.min.js), byte for byte.
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { type BrowserContext } from 'playwright-core';

import { launchChromium, type Browser } from '../support/browser.js';
import { PACKAGE_DIR, REPO_DIR } from '../support/ts-server.js';

const DEADLINE = 30_000;

/** The example's binary: $CHAT_EXAMPLE_BIN, else cargo's target directory. */
function exampleBinary(): string {
  if (process.env.CHAT_EXAMPLE_BIN) return process.env.CHAT_EXAMPLE_BIN;
  const target = process.env.CARGO_TARGET_DIR ? resolve(REPO_DIR, process.env.CARGO_TARGET_DIR) : join(REPO_DIR, 'target');
  const bin = join(target, 'debug', 'examples', 'chat');
  assert.ok(existsSync(bin), `${bin} is missing: cargo build -p examples --example chat (scripts/test.sh does)`);
  return bin;
}

let example: ChildProcessWithoutNullStreams;
let pageUrl: string;
let context: BrowserContext;
let browser: Browser;
const output: string[] = [];

before(async () => {
  example = spawn(exampleBinary(), [], {
    env: {
      ...process.env,
      FRAMEWORK_WEBSOCKET: '127.0.0.1:0',
      FRAMEWORK_SERVICE: '127.0.0.1:0',
      NO_COLOR: '1',
      RUST_LOG: 'warn',
    },
  });
  example.stderr.resume();
  pageUrl = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`the example printed no page address:\n${output.join('\n')}`)), DEADLINE);
    createInterface({ input: example.stdout }).on('line', (line) => {
      output.push(line);
      const found = /the chat page: (http:\/\/\S+\/chat)/.exec(line);
      if (found) {
        clearTimeout(timer);
        res(found[1]!);
      }
    });
    example.on('exit', (code) => rej(new Error(`the example exited (${code}):\n${output.join('\n')}`)));
  });
  browser = await launchChromium();
  context = browser.context;
});

after(async () => {
  await browser?.close();
  if (example && example.exitCode === null) {
    example.kill('SIGINT');
    await new Promise((res) => example.once('exit', res));
  }
});

describe('the chat example', () => {
  it('serves this package’s browser bundle', () => {
    const served = readFileSync(join(REPO_DIR, 'examples', 'chat', 'client.js'));
    const built = readFileSync(join(PACKAGE_DIR, 'dist', 'framework-client.iife.min.js'));
    assert.ok(served.equals(built), 'examples/chat/client.js differs from dist/framework-client.iife.min.js: copy it over');
  });

  it('shows the conversation and who is online by name, and carries a line from the page', async () => {
    assert.ok(output.some((l) => l.includes('alice heard in #lobby from alice: hello, everyone')), output.join('\n'));
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(pageUrl);
    await page.fill('#name', 'dora');
    await page.click('#name-form button');
    await page.waitForSelector('#status.ok', { timeout: DEADLINE });
    await page.waitForFunction(() => document.querySelectorAll('#online li').length === 4, null, { timeout: DEADLINE });
    const online = await page.$$eval('#online li', (ls) => ls.map((l) => l.textContent));
    assert.deepEqual(online, ['alice', 'bob', 'carol', 'dora']);
    const who = await page.$$eval('#log .line .who', (ws) => ws.map((w) => w.textContent));
    assert.deepEqual(who, ['alice'], 'the lobby’s history, by name');
    await page.fill('#text', 'hello from the browser');
    await page.press('#text', 'Enter');
    await page.waitForFunction(
      () => Array.from(document.querySelectorAll('#log .line')).some((l) => l.textContent === 'dorahello from the browser'),
      null,
      { timeout: DEADLINE },
    );
    assert.deepEqual(errors, []);
    await page.close();
  });
});
