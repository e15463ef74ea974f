import { Builder, ByteBuffer } from 'flatbuffers';

import { backoffDelay, DEFAULT_RECONNECT, type ReconnectPolicy } from './backoff.js';
import { Emitter } from './emitter.js';
import { ClientError, errorCodeName } from './errors.js';
import {
  decodeClientInfo,
  decodeFrame,
  decodeHistory,
  decodePresence,
  encodeFrame,
  type ClientInfo,
  type Frame,
  type HistoryPage,
  type OutgoingFrame,
  type PresenceResult,
} from './frame.js';
import { ErrorCode } from './generated/framework/protocol/fbs/error-code.js';
import { Opcode } from './generated/framework/protocol/fbs/opcode.js';
import { jwtExpiresAtMs } from './jwt.js';
import { AsyncQueue } from './queue.js';
import {
  Subscription,
  type Publication,
  type SubscriptionHost,
  type SubscriptionOptions,
} from './subscription.js';
import { randomUuidBytes, uuidToBytes, uuidToString } from './uuid.js';

/**
 * What the client needs of a WebSocket: the browser's `WebSocket`, Node's global
 * one (Node 20: `--experimental-websocket`; Node 22+: always), or the `ws`
 * package's.
 */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: any) => void) | null;
  onclose: ((event: any) => void) | null;
  onerror: ((event: any) => void) | null;
}

/** A WebSocket constructor ({@link ClientOptions.WebSocket}). */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Why the token callback is called. */
export interface TokenContext {
  /**
   * `connect`: before connecting, no token yet; `expired`: before connecting, the
   * token has expired (or the server closed the connection with "token expired");
   * `refresh`: connected, the token expires soon (it goes in an `Auth` frame).
   */
  reason: 'connect' | 'expired' | 'refresh';
}

/**
 * Gives a fresh token (a JWT), e.g. from your backend. `null` / `undefined`:
 * connect anonymously (or stop refreshing).
 */
export type TokenCallback = (context: TokenContext) => string | null | undefined | Promise<string | null | undefined>;

/** Options of a {@link Client}. */
export interface ClientOptions {
  /**
   * The WebSocket constructor; default: `globalThis.WebSocket` (browsers, and
   * Node 20 with `--experimental-websocket`). In Node: `import WebSocket from 'ws'`.
   */
  WebSocket?: WebSocketConstructor;
  /** The token (JWT) to connect with; it goes in the `token` query parameter. */
  token?: string;
  /**
   * Called for a token before connecting (when there is none yet, or it has
   * expired), and ahead of the connection's `expires_at_ms` to refresh it with an
   * `Auth` frame, without reconnecting.
   */
  getToken?: TokenCallback;
  /**
   * How long before the token expires to refresh it (default 30 000 ms; at most
   * half the time it has left).
   */
  refreshAheadMs?: number;
  /** How long requests wait for their answer (default 10 000 ms); also the connect timeout. */
  timeoutMs?: number;
  /**
   * Reconnect after a lost connection (default `true`, with {@link DEFAULT_RECONNECT});
   * `false` never reconnects; an object tunes the backoff.
   */
  reconnect?: boolean | Partial<ReconnectPolicy>;
  /**
   * How often to ping the server while connected, to notice a dead connection
   * (default 25 000 ms; 0: never). A `Ping` unanswered within `timeoutMs` drops
   * the connection (and reconnects).
   */
  pingIntervalMs?: number;
}

/** The state of a {@link Client}'s connection. */
export type ConnectionState = 'disconnected' | 'connecting' | 'connected';

/** The client is connected: the server's `Welcome` arrived ({@link ClientEvents.connected}). */
export interface ConnectedEvent {
  /** This session's id (others `send` to it). */
  sessionId: string;
  /** The node that owns the session. */
  nodeId: string;
  /** The authenticated user (the token's `sub`); `null` when anonymous. */
  userId: string | null;
  /** When the token expires (Unix ms); 0: never, or anonymous. */
  expiresAtMs: number;
  /** Whether this connection replaces a lost one. */
  reconnected: boolean;
  /** How many attempts it took. */
  attempts: number;
}

/** The connection ended ({@link ClientEvents.disconnected}). */
export interface DisconnectedEvent {
  /**
   * The WebSocket close code: the server's (1000 idle timeout, 1001 shutting
   * down, 1008 token expired or slow consumer, …), 1006 when the connection was
   * cut, 1000 after {@link Client.close}, 4000 when this client dropped it
   * (ping or subscribe timeout).
   */
  code: number;
  /** Why, in words ("token expired", "client closed", "ping timeout", …). */
  reason: string;
  /** Whether the client reconnects by itself. */
  willReconnect: boolean;
}

/** The client waits, then tries to connect again ({@link ClientEvents.reconnecting}). */
export interface ReconnectingEvent {
  /** The attempt that follows (from 1). */
  attempt: number;
  /** How long the client waits first (backoff with jitter). */
  delayMs: number;
  /** Why the connection was lost or the last attempt failed. */
  reason: string;
}

/** The connection's identity changed: an `Auth` frame was accepted ({@link ClientEvents.authenticated}). */
export interface AuthenticatedEvent {
  userId: string | null;
  /** When the new token expires (Unix ms; 0: never). */
  expiresAtMs: number;
}

/** A `Join` or `Leave` on a channel ({@link ClientEvents.join}, {@link ClientEvents.leave}). */
export interface PresenceEvent {
  channel: string;
  client: ClientInfo;
}

/**
 * A delivery addressed to this client that is not a publication: a `Send` to
 * this session, a `Broadcast`, or a frame of an application opcode the server
 * pushed (not the reply to a request).
 */
export interface Message {
  /** `send`, `broadcast` or `app`. */
  kind: 'send' | 'broadcast' | 'app';
  /** The frame's opcode (`Opcode.Send`, `Opcode.Broadcast`, or 200..65535). */
  opcode: number;
  /** The payload. */
  data: Uint8Array;
  /** The sending session ({@link NIL_UUID}: the server). */
  emitterId: string | null;
  /** The sender's user, when authenticated. */
  userId: string | null;
  traceId: string | null;
}

/** The events of a {@link Client}. */
export interface ClientEvents {
  /** Connected (again): subscriptions are being restored and queued requests sent. */
  connected: ConnectedEvent;
  /** The connection ended; `willReconnect` says what follows. */
  disconnected: DisconnectedEvent;
  /** About to wait and try to connect again. */
  reconnecting: ReconnectingEvent;
  /** A token refresh (or {@link Client.authenticate}) was accepted. */
  authenticated: AuthenticatedEvent;
  /**
   * Something went wrong that no promise reports: a failed connection attempt, a
   * failed token refresh, an uncorrelated `Error` frame, an unreadable frame.
   */
  error: ClientError;
  /** Every publication, on any channel (after a subscription's own listeners). */
  publication: Publication;
  /** A session joined a channel. */
  join: PresenceEvent;
  /** A session left a channel. */
  leave: PresenceEvent;
  /** A `Send`, a `Broadcast`, or a pushed application frame. */
  message: Message;
}

/** Options of one request. */
export interface RequestOptions {
  /** How long to wait for the answer (default: the client's `timeoutMs`). */
  timeoutMs?: number;
}

/** The answer of {@link Client.publish}. */
export interface PublishResult {
  /** The publication's offset (0: a channel without history, or `ack: false`). */
  offset: number;
  /** The channel's epoch ("" likewise). */
  epoch: string;
}

/**
 * The reply to an application request ({@link Client.request}).
 *
 * ```ts
 * const reply = await client.request(200, encodeTable((b) =>
 *   EchoRequest.createEchoRequest(b, b.createString('hi'), 2)));
 * const echo = reply.decode(EchoReply.getRootAsEchoReply);
 * ```
 */
export class Reply {
  /** The reply's opcode (usually the request's). */
  readonly opcode: number;
  /** The payload (empty for an "empty response"). */
  readonly data: Uint8Array;
  /** The request's trace id. */
  readonly traceId: string | null;
  /** The whole frame. */
  readonly frame: Frame;

  /** @internal */
  constructor(frame: Frame) {
    this.frame = frame;
    this.opcode = frame.opcode;
    this.data = frame.payload;
    this.traceId = frame.traceId;
  }

  /**
   * Reads the payload as a FlatBuffers table with a `getRootAs…` function
   * generated by `flatc --ts` from the server's exported schema.
   */
  decode<T>(getRoot: (bb: ByteBuffer) => T): T {
    return decodeTable(this.data, getRoot);
  }
}

/**
 * Builds a standalone FlatBuffers buffer (no file identifier), the payload of a
 * typed application opcode: `build` writes the table with code generated by
 * `flatc --ts` and returns its offset.
 */
export function encodeTable(build: (builder: Builder) => number, initialSize = 256): Uint8Array {
  const b = new Builder(initialSize);
  b.finish(build(b));
  return b.asUint8Array();
}

/** Reads a standalone FlatBuffers buffer with a generated `getRootAs…` function. */
export function decodeTable<T>(bytes: Uint8Array, getRoot: (bb: ByteBuffer) => T): T {
  return getRoot(new ByteBuffer(bytes));
}

interface Pending {
  bytes: Uint8Array;
  resolve: (frame: Frame) => void;
  reject: (error: ClientError) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** The socket it was written to; null while it waits for a connection. */
  socket: WebSocketLike | null;
  /** Resolves once written: no reply is expected. */
  noReply: boolean;
}

/** One life of the connection, from `connect()` to `close()` (or giving up). */
interface Run {
  stopped: boolean;
  wake: (() => void) | null;
  abortAttempt: (() => void) | null;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: ClientError) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: ClientError) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Failures are also events: an ignored promise must not be an unhandled rejection.
  promise.catch(noop);
  return { promise, resolve, reject };
}

function noop(): void {}

const encoder = new TextEncoder();

function bytesOf(data: Uint8Array | string): Uint8Array {
  return typeof data === 'string' ? encoder.encode(data) : data;
}

function toBytes(data: unknown): Uint8Array | null {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

function errorText(event: any): string {
  const e = event?.error ?? event;
  return typeof e?.message === 'string' ? e.message : '';
}

/** `url` made absolute (against the page's address in browsers), http(s) as ws(s). */
function resolveUrl(url: string): string {
  const base = (globalThis as { location?: { href?: string } }).location?.href;
  const u = base ? new URL(url, base) : new URL(url);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  return u.toString();
}

function withToken(url: string, token: string | undefined): string {
  if (!token) return url;
  const u = new URL(url);
  u.searchParams.set('token', token);
  return u.toString();
}

/** Detaches a socket: later events go nowhere (never `null`: `ws` throws on an unheard 'error'). */
function detach(ws: WebSocketLike): void {
  ws.onopen = noop;
  ws.onmessage = noop;
  ws.onclose = noop;
  ws.onerror = noop;
}

function closeQuietly(ws: WebSocketLike, code: number, reason: string): void {
  try {
    ws.close(code, reason);
  } catch {
    try {
      ws.close();
    } catch {
      // already closed
    }
  }
}

function serverError(frame: Frame): ClientError {
  const name = errorCodeName(frame.errorCode);
  const text = frame.errorMessage ?? '';
  return new ClientError('server', `${name}${text ? `: ${text}` : ''}`, {
    errorCode: frame.errorCode,
    retryAfterMs: frame.retryAfterMs,
    serverMessage: text,
    traceId: frame.traceId,
  });
}

function asClientError(e: unknown, kind: 'transport' | 'token' = 'transport'): ClientError {
  if (e instanceof ClientError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new ClientError(kind, message, { cause: e });
}

/**
 * A client of a server built with the framework, for browsers and Node.js.
 *
 * ```ts
 * import { Client } from 'framework-client';
 *
 * const client = new Client('wss://chat.example.com/ws', {
 *   getToken: async () => (await fetch('/token')).text(),
 * });
 * client.on('disconnected', (e) => console.log('lost:', e.reason, e.willReconnect));
 * await client.connect();
 * const room = await client.subscribe('chat:lobby');
 * room.on('publication', (p) => console.log(new TextDecoder().decode(p.data)));
 * await room.publish('hello');
 * // ...
 * await client.close();
 * ```
 *
 * Every request carries a transaction id, waits at most `timeoutMs`, and rejects
 * with a {@link ClientError}. A lost connection is re-established with
 * exponential backoff and jitter; every subscription is then restored, recovering
 * the publications it missed on channels with history.
 */
export class Client extends Emitter<ClientEvents> implements SubscriptionHost {
  /** The server's URL (`ws://` or `wss://`, e.g. `ws://host:8080/ws`), made absolute. */
  readonly url: string;
  private readonly WS: WebSocketConstructor | undefined;
  private readonly getToken: TokenCallback | undefined;
  private readonly refreshAheadMs: number;
  private readonly timeoutMs: number;
  private readonly policy: ReconnectPolicy;
  private readonly reconnects: boolean;
  private readonly pingIntervalMs: number;

  private _state: ConnectionState = 'disconnected';
  private ws: WebSocketLike | null = null;
  private run: Run | null = null;
  private ready: Deferred<ConnectedEvent> | null = null;
  private token: string | undefined;
  private needFreshToken = false;
  private everConnected = false;
  private lastConnected: ConnectedEvent | null = null;
  private _sessionId: string | null = null;
  private _nodeId: string | null = null;
  private _userId: string | null = null;
  private _expiresAtMs = 0;
  private readonly pending = new Map<string, Pending>();
  private readonly subs = new Map<string, Subscription>();
  private readonly messageQueues = new Set<AsyncQueue<Message>>();
  private pingTimer: ReturnType<typeof setTimeout> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;

  /**
   * Makes a client; nothing happens until {@link connect}.
   * @param url the server's WebSocket URL, e.g. `ws://127.0.0.1:8081/` for
   *   `run_websocket_service` or `ws://host:8080/ws` for `run_service`; in a
   *   browser it may be relative to the page (`/ws`), and `http(s):` means `ws(s):`.
   * @throws TypeError when `url` is not a URL.
   */
  constructor(url: string, options: ClientOptions = {}) {
    super();
    this.url = resolveUrl(url);
    this.WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    this.token = options.token;
    this.getToken = options.getToken;
    this.refreshAheadMs = options.refreshAheadMs ?? 30_000;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.reconnects = options.reconnect !== false;
    this.policy = { ...DEFAULT_RECONNECT, ...(typeof options.reconnect === 'object' ? options.reconnect : {}) };
    this.pingIntervalMs = options.pingIntervalMs ?? 25_000;
  }

  /** `disconnected`, `connecting` (including between reconnection attempts) or `connected`. */
  get state(): ConnectionState {
    return this._state;
  }

  /** This session's id (from the last `Welcome`); `null` before the first connection. */
  get sessionId(): string | null {
    return this._sessionId;
  }

  /** The node that owns the session. */
  get nodeId(): string | null {
    return this._nodeId;
  }

  /** The authenticated user; `null` when anonymous. */
  get userId(): string | null {
    return this._userId;
  }

  /** When the connection's token expires (Unix ms; 0: never or anonymous). */
  get expiresAtMs(): number {
    return this._expiresAtMs;
  }

  /**
   * Connects (if not connected or connecting) and resolves at the server's
   * `Welcome`. With reconnection on, failed attempts are retried with backoff
   * (each one an `error` event); the promise rejects only when the client is
   * closed or gives up (`maxAttempts`). An ignored rejection is not an unhandled one.
   */
  connect(): Promise<ConnectedEvent> {
    if (!this.WS) {
      const e = new ClientError('transport', 'no WebSocket: pass options.WebSocket (e.g. the ws package), or run Node 20 with --experimental-websocket');
      const p = Promise.reject(e);
      p.catch(noop);
      return p;
    }
    if (this._state === 'connected') return Promise.resolve(this.lastConnected!);
    this.ready ??= deferred<ConnectedEvent>();
    if (this._state === 'disconnected') {
      this._state = 'connecting';
      const run: Run = { stopped: false, wake: null, abortAttempt: null };
      this.run = run;
      void this.connectLoop(run, false, 'connect');
    }
    return this.ready.promise;
  }

  /**
   * Closes the connection cleanly (close code 1000) and stops reconnecting:
   * pending requests reject (`closed`), every subscription ends (their iterators
   * finish), and so do the {@link messages} iterators. Resolves once the
   * WebSocket is closed (at most ~2 s). The client may {@link connect} again.
   */
  close(): Promise<void> {
    const run = this.run;
    this.run = null;
    if (run) {
      run.stopped = true;
      run.wake?.();
      run.abortAttempt?.();
    }
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    const wasActive = this._state !== 'disconnected';
    this._state = 'disconnected';
    const closed = new ClientError('closed', 'the client was closed');
    this.failPending(() => true, closed);
    this.ready?.reject(closed);
    this.ready = null;
    const subs = [...this.subs.values()];
    this.subs.clear();
    for (const sub of subs) sub._end('client closed', closed);
    for (const q of [...this.messageQueues]) q.end();
    if (wasActive) this.emit('disconnected', { code: 1000, reason: 'client closed', willReconnect: false });
    if (!ws) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(finish, 2000);
      function finish(): void {
        clearTimeout(timer);
        detach(ws!);
        resolve();
      }
      ws.onclose = finish;
      ws.onerror = noop;
      ws.onmessage = noop;
      closeQuietly(ws, 1000, 'client closed');
    });
  }

  // --- channels -------------------------------------------------------------------

  /**
   * Subscribes to `channel` and returns at once: the Subscribe is sent now when
   * connected, else as soon as the client connects. Add listeners or take the
   * iterator right away, then `await sub.ready()`.
   * @throws ClientError (`kind` `unsubscribed`) when this client already has a
   *   subscription to `channel` ({@link getSubscription}).
   */
  newSubscription(channel: string, options?: SubscriptionOptions): Subscription {
    if (this.subs.has(channel)) {
      throw new ClientError('unsubscribed', `already subscribed to ${JSON.stringify(channel)}: use getSubscription()`);
    }
    const sub = new Subscription(this, channel, options);
    this.subs.set(channel, sub);
    if (this._state === 'connected') this.sendSubscribe(sub);
    return sub;
  }

  /**
   * Subscribes to `channel` and resolves once subscribed; rejects (`kind`
   * `server`) when the server refuses. See {@link newSubscription}.
   */
  async subscribe(channel: string, options?: SubscriptionOptions): Promise<Subscription> {
    const sub = this.getSubscription(channel) ?? this.newSubscription(channel, options);
    await sub.ready();
    return sub;
  }

  /** This client's subscription to `channel`, if any. */
  getSubscription(channel: string): Subscription | undefined {
    return this.subs.get(channel);
  }

  /** Every subscription of this client. */
  subscriptions(): Subscription[] {
    return [...this.subs.values()];
  }

  /** Leaves `channel` (no-op when not subscribed). */
  async unsubscribe(channel: string): Promise<void> {
    const sub = this.subs.get(channel);
    if (sub) await this._unsubscribe(sub);
  }

  /** @internal */
  async _unsubscribe(sub: Subscription): Promise<void> {
    if (this.subs.get(sub.channel) !== sub) return;
    this.subs.delete(sub.channel);
    sub._end('unsubscribe called');
    if (this._state !== 'connected') return; // the server forgets it with the session
    try {
      await this.call({ opcode: Opcode.Unsubscribe, channel: sub.channel, requiresAck: true }, {});
    } catch (e) {
      // A lost connection unsubscribed it anyway.
      if (!(e instanceof ClientError) || (e.kind !== 'disconnected' && e.kind !== 'closed')) throw e;
    }
  }

  /**
   * Publishes `data` (bytes, or text as UTF-8) on `channel`; the publisher gets
   * it too when subscribed. Resolves at the server's `Ack` with the publication's
   * offset and epoch (on channels with history). With `ack: false` it resolves
   * once written, and a failure is only an `error` event.
   */
  async publish(channel: string, data: Uint8Array | string, options: RequestOptions & { ack?: boolean } = {}): Promise<PublishResult> {
    const ack = options.ack !== false;
    const reply = await this.call(
      { opcode: Opcode.Publish, channel, payload: bytesOf(data), requiresAck: ack },
      { timeoutMs: options.timeoutMs, noReply: !ack },
    );
    return reply ? { offset: reply.offset, epoch: reply.epoch ?? '' } : { offset: 0, epoch: '' };
  }

  /** Sends `data` to the session `sessionId` (a `Send`); resolves at the `Ack`. */
  async send(sessionId: string, data: Uint8Array | string, options: RequestOptions = {}): Promise<void> {
    await this.call(
      { opcode: Opcode.Send, receiverId: uuidToBytes(sessionId), payload: bytesOf(data), requiresAck: true },
      options,
    );
  }

  /** Sends `data` to every session, this one included; resolves at the `Ack`. */
  async broadcast(data: Uint8Array | string, options: RequestOptions = {}): Promise<void> {
    await this.call({ opcode: Opcode.Broadcast, payload: bytesOf(data), requiresAck: true }, options);
  }

  /**
   * The retained publications of `channel` after offset `since` (default 0: the
   * oldest retained), at most `limit` (default 0: the server's cap, 1000), in the
   * channel's current epoch (or empty when `epoch` is given and is not current).
   */
  async history(channel: string, options: RequestOptions & { since?: number; limit?: number; epoch?: string } = {}): Promise<HistoryPage> {
    const reply = await this.call(
      { opcode: Opcode.History, channel, offset: options.since ?? 0, limit: options.limit ?? 0, epoch: options.epoch },
      options,
    );
    return decodeHistory(reply!);
  }

  /** Who is subscribed to `channel` now, on every node. */
  async presence(channel: string, options: RequestOptions = {}): Promise<PresenceResult> {
    const reply = await this.call({ opcode: Opcode.Presence, channel }, options);
    return decodePresence(reply!.payload);
  }

  // --- requests -------------------------------------------------------------------

  /**
   * Sends an application request (opcode 200..65535) and resolves with the
   * handler's reply; rejects with a {@link ClientError} (`kind` `server`, with
   * `errorCode` and `retryAfterMs`) when it answers with an `Error`. `payload`:
   * bytes, or a function that builds the table with `flatc --ts` code. With
   * `noReply` (for handlers that answer nothing) it resolves with `null` once written.
   */
  request(opcode: number, payload: Uint8Array | ((builder: Builder) => number) | null | undefined, options: RequestOptions & { noReply: true }): Promise<null>;
  request(opcode: number, payload?: Uint8Array | ((builder: Builder) => number) | null, options?: RequestOptions & { noReply?: false }): Promise<Reply>;
  async request(
    opcode: number,
    payload?: Uint8Array | ((builder: Builder) => number) | null,
    options: RequestOptions & { noReply?: boolean } = {},
  ): Promise<Reply | null> {
    const bytes = typeof payload === 'function' ? encodeTable(payload) : (payload ?? undefined);
    const frame = await this.call({ opcode, payload: bytes }, options);
    return frame ? new Reply(frame) : null;
  }

  /** Sends a `Ping` and resolves with the round trip time in ms. */
  async ping(options: RequestOptions = {}): Promise<number> {
    const start = Date.now();
    await this.call({ opcode: Opcode.Ping }, options);
    return Date.now() - start;
  }

  /**
   * Presents `token` in an `Auth` frame (log in on an anonymous connection, or
   * refresh by hand); once accepted, it is also the token of later reconnections. Resolves with
   * the new identity; rejects (`Unauthorized`) when the server refuses it, which
   * leaves the previous identity.
   */
  async authenticate(token: string, options: RequestOptions = {}): Promise<AuthenticatedEvent> {
    const ack = (await this.call({ opcode: Opcode.Auth, token }, options))!;
    this.token = token;
    this._userId = ack.userId;
    this._expiresAtMs = ack.expiresAtMs;
    const event: AuthenticatedEvent = { userId: ack.userId, expiresAtMs: ack.expiresAtMs };
    this.scheduleRefresh();
    this.emit('authenticated', event);
    return event;
  }

  /**
   * A new async iterator of the {@link Message}s (sends, broadcasts, pushed
   * application frames) from now on; it finishes when the client is closed or
   * the loop breaks.
   */
  messages(): AsyncIterableIterator<Message> {
    const queue: AsyncQueue<Message> = new AsyncQueue(() => this.messageQueues.delete(queue));
    this.messageQueues.add(queue);
    return queue;
  }

  /**
   * Sends a frame with a fresh transaction id and resolves with its reply (null
   * with `noReply`, once written). Requests made while connecting wait for the
   * connection, within their timeout.
   */
  private call(fields: OutgoingFrame, options: { timeoutMs?: number; noReply?: boolean }): Promise<Frame | null> {
    if (this._state === 'disconnected') {
      return Promise.reject(new ClientError('disconnected', 'not connected: call connect() first'));
    }
    const id = randomUuidBytes();
    const key = uuidToString(id);
    const bytes = encodeFrame({ ...fields, transactionId: id });
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    return new Promise<Frame | null>((resolve, reject) => {
      const p: Pending = { bytes, resolve, reject, timer: undefined, socket: null, noReply: options.noReply === true };
      p.timer = setTimeout(() => {
        if (this.pending.get(key) !== p) return;
        this.pending.delete(key);
        reject(new ClientError('timeout', `no answer within ${timeoutMs} ms (opcode ${fields.opcode})`));
      }, timeoutMs);
      this.pending.set(key, p);
      if (this._state === 'connected') this.transmit(key, p);
    });
  }

  private transmit(key: string, p: Pending): void {
    const ws = this.ws!;
    p.socket = ws;
    try {
      ws.send(p.bytes);
    } catch {
      // The socket is closing: its close event fails the request.
      return;
    }
    if (p.noReply) {
      this.pending.delete(key);
      clearTimeout(p.timer);
      p.resolve(null as unknown as Frame);
    }
  }

  private failPending(which: (p: Pending) => boolean, error: ClientError): void {
    for (const [key, p] of [...this.pending]) {
      if (!which(p)) continue;
      this.pending.delete(key);
      clearTimeout(p.timer);
      p.reject(error);
    }
  }

  private sendSubscribe(sub: Subscription): void {
    const { epoch, offset, wasRecovering } = sub._subscribeFields();
    // Always a recovering Subscribe: it is always acknowledged, and its Ack gives
    // the channel's epoch and latest offset, where recovery starts next time.
    this.call({ opcode: Opcode.Subscribe, channel: sub.channel, requiresAck: true, recover: true, epoch, offset }, {}).then(
      (ack) => {
        if (this.subs.get(sub.channel) === sub) sub._subscribed(ack!, wasRecovering);
      },
      (e: ClientError) => {
        if (this.subs.get(sub.channel) !== sub) return;
        if (e.kind === 'server') {
          this.subs.delete(sub.channel);
          sub._end(`refused: ${e.message}`, e, true);
        } else if (e.kind === 'timeout') {
          // As centrifuge does: an unanswered Subscribe means a broken connection.
          this.drop('subscribe timeout');
        }
        // disconnected / closed: subscribed again on the next connection, or ended.
      },
    );
  }

  // --- the connection -------------------------------------------------------------

  private async connectLoop(run: Run, reconnecting: boolean, reason: string): Promise<void> {
    let attempts = 0;
    for (;;) {
      if (reconnecting || attempts > 0) {
        if (attempts >= this.policy.maxAttempts || (!this.reconnects && attempts > 0)) {
          this.giveUp(run, attempts, reason);
          return;
        }
        const delayMs = backoffDelay(this.policy, reconnecting ? attempts : attempts - 1);
        this.emit('reconnecting', { attempt: attempts + 1, delayMs, reason });
        await this.sleep(run, delayMs);
        if (run.stopped) return;
      }
      attempts++;
      try {
        await this.attempt(run, attempts);
        return;
      } catch (e) {
        if (run.stopped) return;
        const error = asClientError(e);
        reason = error.message;
        this.emit('error', error);
      }
    }
  }

  private sleep(run: Run, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        run.wake = null;
        resolve();
      }
      run.wake = done;
    });
  }

  private giveUp(run: Run, attempts: number, reason: string): void {
    if (this.run !== run) return;
    this.run = null;
    run.stopped = true;
    this._state = 'disconnected';
    const why = attempts > 0 ? `gave up after ${attempts} attempt${attempts === 1 ? '' : 's'}: ${reason}` : reason;
    const error = new ClientError('disconnected', why);
    this.failPending(() => true, error);
    this.ready?.reject(error);
    this.ready = null;
    this.emit('disconnected', { code: 1006, reason: why, willReconnect: false });
  }

  private async tokenForConnect(): Promise<string | undefined> {
    if (!this.getToken) return this.token;
    const exp = this.token ? jwtExpiresAtMs(this.token) : 0;
    const expired = exp > 0 && exp <= Date.now() + 1000;
    if (!this.token || expired || this.needFreshToken) {
      const reason = this.token ? 'expired' : 'connect';
      try {
        this.token = (await this.getToken({ reason })) ?? undefined;
      } catch (e) {
        throw new ClientError('token', `the token callback failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      this.needFreshToken = false;
    }
    return this.token;
  }

  /** One connection attempt: resolves once the `Welcome` is handled. */
  private async attempt(run: Run, attempts: number): Promise<void> {
    const token = await this.tokenForConnect();
    if (run.stopped) throw new ClientError('closed', 'the client was closed');
    return new Promise<void>((resolve, reject) => {
      let ws: WebSocketLike;
      try {
        ws = new this.WS!(withToken(this.url, token));
        ws.binaryType = 'arraybuffer';
      } catch (e) {
        reject(new ClientError('transport', `cannot open ${this.url}: ${e instanceof Error ? e.message : String(e)}`, { cause: e }));
        return;
      }
      let settled = false;
      let lastError = '';
      const fail = (error: ClientError): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        run.abortAttempt = null;
        detach(ws);
        closeQuietly(ws, 1000, 'connect failed');
        reject(error);
      };
      const timer = setTimeout(() => fail(new ClientError('timeout', `no Welcome within ${this.timeoutMs} ms`)), this.timeoutMs);
      run.abortAttempt = () => fail(new ClientError('closed', 'the client was closed'));
      ws.onopen = noop;
      ws.onerror = (event) => {
        lastError = errorText(event) || lastError;
      };
      ws.onclose = (event) => {
        const code = typeof event?.code === 'number' ? event.code : 1006;
        const why = event?.reason || lastError || 'connection refused or closed';
        fail(new ClientError('transport', `cannot connect to ${this.url} (${code}): ${why}`));
      };
      ws.onmessage = (event) => {
        if (settled) return;
        const frame = this.decode(event?.data);
        if (!frame || frame.opcode !== Opcode.Welcome) return;
        settled = true;
        clearTimeout(timer);
        run.abortAttempt = null;
        if (run.stopped) {
          detach(ws);
          closeQuietly(ws, 1000, 'client closed');
          reject(new ClientError('closed', 'the client was closed'));
          return;
        }
        this.welcomed(ws, frame, attempts);
        resolve();
      };
    });
  }

  private welcomed(ws: WebSocketLike, welcome: Frame, attempts: number): void {
    this.ws = ws;
    this._state = 'connected';
    this._sessionId = welcome.receiverId;
    this._nodeId = welcome.nodeId;
    this._userId = welcome.userId;
    this._expiresAtMs = welcome.expiresAtMs;
    const reconnected = this.everConnected;
    this.everConnected = true;
    let lastError = '';
    ws.onerror = (event) => {
      lastError = errorText(event) || lastError;
    };
    ws.onclose = (event) => {
      if (ws !== this.ws) return;
      const code = typeof event?.code === 'number' ? event.code : 1006;
      this.lost(ws, code, event?.reason || lastError || `connection closed (${code})`);
    };
    ws.onmessage = (event) => {
      if (ws !== this.ws) return;
      const frame = this.decode(event?.data);
      if (frame) this.dispatch(frame);
    };
    // Subscriptions first, then what waited for the connection, in order.
    for (const sub of this.subs.values()) this.sendSubscribe(sub);
    for (const [key, p] of [...this.pending]) if (!p.socket) this.transmit(key, p);
    this.schedulePing();
    this.scheduleRefresh();
    const event: ConnectedEvent = {
      sessionId: this._sessionId ?? '',
      nodeId: this._nodeId ?? '',
      userId: this._userId,
      expiresAtMs: this._expiresAtMs,
      reconnected,
      attempts,
    };
    this.lastConnected = event;
    const ready = this.ready;
    this.ready = null;
    ready?.resolve(event);
    this.emit('connected', event);
  }

  /** The connection `ws` ended. */
  private lost(ws: WebSocketLike, code: number, reason: string): void {
    if (ws !== this.ws) return;
    detach(ws);
    this.ws = null;
    this.clearTimers();
    this.failPending((p) => p.socket === ws, new ClientError('disconnected', `connection lost before the answer: ${reason}`));
    for (const sub of this.subs.values()) sub._disconnected();
    const tokenExpired = reason === 'token expired';
    if (tokenExpired) this.needFreshToken = true;
    const run = this.run;
    const willReconnect = this.reconnects && run !== null && !(tokenExpired && !this.getToken);
    if (willReconnect) {
      this._state = 'connecting';
      this.emit('disconnected', { code, reason, willReconnect });
      void this.connectLoop(run!, true, reason);
    } else {
      if (run) run.stopped = true;
      this.run = null;
      this._state = 'disconnected';
      this.failPending(() => true, new ClientError('disconnected', `disconnected: ${reason}`));
      this.emit('disconnected', { code, reason, willReconnect });
    }
  }

  /** Gives up on the current connection (it seems dead) and reconnects. */
  private drop(reason: string): void {
    const ws = this.ws;
    if (!ws) return;
    closeQuietly(ws, 4000, reason);
    this.lost(ws, 4000, reason);
  }

  private clearTimers(): void {
    clearTimeout(this.pingTimer);
    clearTimeout(this.refreshTimer);
    this.pingTimer = undefined;
    this.refreshTimer = undefined;
  }

  private schedulePing(): void {
    if (this.pingIntervalMs <= 0) return;
    const ws = this.ws;
    this.pingTimer = setTimeout(() => {
      this.call({ opcode: Opcode.Ping }, {}).then(
        () => {
          if (ws === this.ws) this.schedulePing();
        },
        (e: ClientError) => {
          if (ws === this.ws && e.kind === 'timeout') this.drop('ping timeout');
        },
      );
    }, this.pingIntervalMs);
  }

  private scheduleRefresh(): void {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
    if (!this.getToken || this._expiresAtMs <= 0 || this._state !== 'connected') return;
    const left = this._expiresAtMs - Date.now();
    const ahead = Math.min(this.refreshAheadMs, Math.max(0, left / 2));
    this.refreshTimer = setTimeout(() => void this.refresh(), Math.max(0, left - ahead));
  }

  private async refresh(): Promise<void> {
    const ws = this.ws;
    try {
      let token: string | null | undefined;
      try {
        token = await this.getToken!({ reason: 'refresh' });
      } catch (e) {
        throw new ClientError('token', `the token callback failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
      if (!token || ws !== this.ws) return;
      await this.authenticate(token);
    } catch (e) {
      if (ws !== this.ws) return;
      this.emit('error', asClientError(e, 'token'));
      // Try again while the token still holds; at its end the server closes
      // with "token expired" and the reconnection asks for a new one.
      const left = this._expiresAtMs - Date.now();
      if (left > 0) this.refreshTimer = setTimeout(() => void this.refresh(), Math.min(Math.max(left / 4, 200), 5000));
    }
  }

  private decode(data: unknown): Frame | null {
    const bytes = toBytes(data);
    if (!bytes) return null; // the server sends no text messages
    try {
      return decodeFrame(bytes);
    } catch (e) {
      this.emit('error', new ClientError('protocol', `an unreadable frame: ${e instanceof Error ? e.message : String(e)}`, { cause: e }));
      return null;
    }
  }

  private dispatch(frame: Frame): void {
    if (frame.transactionId !== null) {
      const p = this.pending.get(frame.transactionId);
      if (p) {
        this.pending.delete(frame.transactionId);
        clearTimeout(p.timer);
        if (frame.opcode === Opcode.Error) p.reject(serverError(frame));
        else p.resolve(frame);
        return;
      }
    }
    switch (frame.opcode) {
      case Opcode.Publish: {
        const sub = this.subs.get(frame.channel ?? '');
        if (sub) {
          const pub = sub._publication(frame);
          if (pub) this.emit('publication', pub);
        } else {
          this.emit('publication', {
            channel: frame.channel ?? '',
            data: frame.payload,
            offset: frame.offset,
            epoch: frame.epoch,
            emitterId: frame.emitterId,
            userId: frame.userId,
            traceId: frame.traceId,
          });
        }
        return;
      }
      case Opcode.Join:
      case Opcode.Leave: {
        let who: ClientInfo;
        try {
          who = decodeClientInfo(frame.payload);
        } catch (e) {
          this.emit('error', new ClientError('protocol', 'an unreadable ClientInfo', { cause: e }));
          return;
        }
        const kind = frame.opcode === Opcode.Join ? 'join' : 'leave';
        const channel = frame.channel ?? '';
        this.subs.get(channel)?._presence(kind, who);
        this.emit(kind, { channel, client: who });
        return;
      }
      case Opcode.Send:
      case Opcode.Broadcast:
        this.deliver(frame.opcode === Opcode.Send ? 'send' : 'broadcast', frame);
        return;
      case Opcode.Error:
        if (frame.transactionId === null) this.emit('error', serverError(frame));
        return;
      default:
        // A pushed application frame; replies whose request timed out, and
        // opcodes of later versions, are ignored.
        if (frame.opcode >= 200 && frame.transactionId === null) this.deliver('app', frame);
    }
  }

  private deliver(kind: Message['kind'], frame: Frame): void {
    const message: Message = {
      kind,
      opcode: frame.opcode,
      data: frame.payload,
      emitterId: frame.emitterId,
      userId: frame.userId,
      traceId: frame.traceId,
    };
    this.emit('message', message);
    for (const q of this.messageQueues) q.push(message);
  }
}

export { ErrorCode, Opcode };
