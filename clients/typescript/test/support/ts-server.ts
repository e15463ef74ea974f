// Starts the framework's test server (tests/bin/ts_server.rs, built by cargo as
// target/debug/ts-server) as a child process and reads its addresses. The server
// stops when its standard input closes, so it never outlives the test process.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** clients/typescript (the package's directory). */
export const PACKAGE_DIR = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json not found above the tests');
    dir = up;
  }
  return dir;
})();

/** The repository's root. */
export const REPO_DIR = resolve(PACKAGE_DIR, '..', '..');

/** The server binary: $TS_SERVER_BIN, else ts-server in cargo's target directory. */
export function serverBinary(): string {
  if (process.env.TS_SERVER_BIN) return process.env.TS_SERVER_BIN;
  const target = process.env.CARGO_TARGET_DIR ? resolve(REPO_DIR, process.env.CARGO_TARGET_DIR) : join(REPO_DIR, 'target');
  const bin = join(target, 'debug', 'ts-server');
  if (!existsSync(bin)) {
    throw new Error(`${bin} is missing: build it with \`cargo build -p framework-tests --bin ts-server\` (scripts/test.sh does)`);
  }
  return bin;
}

export interface Server {
  /** `ws://127.0.0.1:port/` of run_websocket_service (`wss://` with TLS). */
  wsUrl: string;
  /** `ws://127.0.0.1:port/ws` of run_service (`wss://` with TLS). */
  serviceWsUrl: string;
  /** `http://127.0.0.1:port` of run_service (the HTTP API; `https://` with TLS). */
  httpUrl: string;
  /** With `TS_SERVER_TLS=1`: the PEM of the CA that signed the server's certificate. */
  ca?: string;
  /** Publishes through the server's HTTP API (emitter: the nil UUID). */
  apiPublish(channel: string, text: string): Promise<{ ok: boolean; offset?: number; epoch?: string }>;
  stop(): Promise<void>;
  /** Kills the server with SIGKILL (a crashed node: no goodbye to its peers). */
  kill(): Promise<void>;
}

export const API_KEY = 'ts-test-key';

export async function startServer(env: Record<string, string> = {}): Promise<Server> {
  const child: ChildProcessWithoutNullStreams = spawn(serverBinary(), [], {
    env: { ...process.env, TS_SERVER_API_KEY: API_KEY, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  const addrs = await new Promise<{ websocket: string; service: string; ca?: string }>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`ts-server did not start within 30 s\n${stderr}`)), 30_000);
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const m = /^TS_SERVER_READY (\{.*\})$/.exec(line);
      if (m) {
        clearTimeout(timer);
        res(JSON.parse(m[1]!));
      }
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      rej(e);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`ts-server exited (${code}) before serving\n${stderr}`));
    });
  });
  const tls = addrs.ca !== undefined;
  const httpUrl = `${tls ? 'https' : 'http'}://${addrs.service}`;
  return {
    wsUrl: `${tls ? 'wss' : 'ws'}://${addrs.websocket}/`,
    serviceWsUrl: `${tls ? 'wss' : 'ws'}://${addrs.service}/ws`,
    httpUrl,
    ca: tls ? readFileSync(addrs.ca!, 'utf8') : undefined,
    async apiPublish(channel, text) {
      const r = await fetch(`${httpUrl}/api/publish`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ channel, payload: Buffer.from(text).toString('base64') }),
      });
      if (!r.ok) throw new Error(`/api/publish: ${r.status} ${await r.text()}`);
      return (await r.json()) as { ok: boolean; offset?: number; epoch?: string };
    },
    async stop() {
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}
