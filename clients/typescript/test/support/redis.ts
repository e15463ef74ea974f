// A private redis-server (Debian's package, installed by scripts/test.sh) on a free
// loopback port, without persistence, for the tests of a cluster of servers.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';

export interface Redis {
  /** `redis://127.0.0.1:port`. */
  url: string;
  stop(): Promise<void>;
}

/** A port nobody listens on now (the OS's choice for port 0). */
async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((res) => probe.listen(0, '127.0.0.1', res));
  const port = (probe.address() as { port: number }).port;
  await new Promise<void>((res) => probe.close(() => res()));
  return port;
}

export async function startRedis(): Promise<Redis> {
  const bin = process.env.REDIS_SERVER ?? 'redis-server';
  // Another process may take the port between the probe and redis' bind: try again.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const exited = new Promise<void>((res) => child.once('exit', () => res()));
    const ready = await new Promise<boolean>((res, rej) => {
      const timer = setTimeout(() => rej(new Error(`redis-server did not start within 20 s:\n${out}`)), 20_000);
      const onData = (d: Buffer) => {
        out = (out + d.toString()).slice(-4000);
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer);
          res(true);
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('error', (e) => {
        clearTimeout(timer);
        rej(new Error(`cannot run ${bin} (${e.message}): install Debian's redis-server (scripts/test.sh does)`));
      });
      child.once('exit', () => {
        clearTimeout(timer);
        res(false);
      });
    });
    if (ready) {
      return {
        url: `redis://127.0.0.1:${port}`,
        async stop() {
          child.kill('SIGKILL');
          await exited;
        },
      };
    }
    if (attempt >= 5) throw new Error(`redis-server exited before serving:\n${out}`);
  }
}
