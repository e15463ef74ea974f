// A TCP proxy on 127.0.0.1:0 in front of the server, to cut a client's network:
// `down()` resets every proxied connection and refuses new ones (accepted, then
// closed at once), `up()` lets them through again, `retarget(port)` sends new
// connections to another server (a load balancer failing over).
import { createServer, connect, type Socket } from 'node:net';

export interface Proxy {
  port: number;
  down(): void;
  up(): void;
  retarget(port: number): void;
  close(): Promise<void>;
}

export async function startProxy(targetPort: number): Promise<Proxy> {
  let isDown = false;
  let target = targetPort;
  const live = new Set<Socket>();
  const server = createServer((client) => {
    if (isDown) {
      client.destroy();
      return;
    }
    const upstream = connect(target, '127.0.0.1');
    live.add(client);
    live.add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      live.delete(client);
      live.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    down() {
      isDown = true;
      for (const s of [...live]) s.destroy();
    },
    up() {
      isDown = false;
    },
    retarget(port: number) {
      target = port;
    },
    async close() {
      isDown = true;
      for (const s of [...live]) s.destroy();
      await new Promise<void>((res) => server.close(() => res()));
    },
  };
}
