// An in-memory WebSocket and the server side of it, for the unit tests: the test
// plays the server, reading the client's frames and writing its own.
import { decodeFrame, type Frame } from '../../src/frame.js';
import type { WebSocketLike } from '../../src/client.js';
import { serverFrame, type ServerFrame } from './server-frame.js';

/** Resolves when `check` returns a value, polling every few ms (generous default deadline). */
export async function eventually<T>(check: () => T | undefined | null | false, what: string, deadlineMs = 10_000): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export class FakeSocket implements WebSocketLike {
  binaryType = 'blob';
  readyState = 0;
  onopen: ((event: any) => void) | null = null;
  onmessage: ((event: any) => void) | null = null;
  onclose: ((event: any) => void) | null = null;
  onerror: ((event: any) => void) | null = null;
  /** What the client sent, decoded. */
  readonly sent: Frame[] = [];
  /** The client's close, if it closed. */
  closedWith: { code?: number; reason?: string } | null = null;
  private taken = 0;

  constructor(readonly url: string) {}

  send(data: Uint8Array): void {
    if (this.readyState !== 1) throw new Error('not open');
    this.sent.push(decodeFrame(data.slice()));
  }

  close(code?: number, reason?: string): void {
    if (this.readyState >= 2) return;
    this.closedWith = { code, reason };
    this.readyState = 2;
    setTimeout(() => this.serverClose(code ?? 1005, reason ?? ''), 1);
  }

  // --- the server's side ---

  /** Opens the connection and sends the Welcome. */
  welcome(fields: Partial<ServerFrame> = {}): void {
    this.readyState = 1;
    this.onopen?.({});
    this.write({ opcode: 1, receiverId: SESSION, nodeId: NODE, ...fields });
  }

  write(frame: ServerFrame | Uint8Array): void {
    const bytes = frame instanceof Uint8Array ? frame : serverFrame(frame);
    // As the browser does with binaryType 'arraybuffer': a fresh ArrayBuffer.
    const copy = bytes.slice();
    this.onmessage?.({ data: copy.buffer });
  }

  /** Closes from the server's side (or the network: 1006). */
  serverClose(code: number, reason = ''): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    if (code === 1006) this.onerror?.({ message: 'connection reset' });
    this.onclose?.({ code, reason, wasClean: code !== 1006 });
  }

  /** The next frame the client sent (after those already taken) matching `opcode`. */
  async next(opcode?: number): Promise<Frame> {
    return eventually(() => {
      while (this.taken < this.sent.length) {
        const f = this.sent[this.taken++]!;
        if (opcode === undefined || f.opcode === opcode) return f;
      }
      return undefined;
    }, `a frame${opcode === undefined ? '' : ` with opcode ${opcode}`} from the client`);
  }
}

export const SESSION = '11111111-2222-4333-8444-555555555555';
export const NODE = '99999999-8888-4777-8666-555555555555';
export const OTHER = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee';

/** A fake server: every socket the client makes, in order. */
export class FakeServer {
  readonly sockets: FakeSocket[] = [];
  private taken = 0;
  readonly WebSocket: new (url: string) => FakeSocket;

  constructor() {
    const sockets = this.sockets;
    this.WebSocket = class extends FakeSocket {
      constructor(url: string) {
        super(url);
        sockets.push(this);
      }
    };
  }

  /** The next socket the client opens. */
  nextSocket(): Promise<FakeSocket> {
    return eventually(() => (this.taken < this.sockets.length ? this.sockets[this.taken++] : undefined), 'a connection attempt');
  }
}
