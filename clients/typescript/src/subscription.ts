import type { ClientError } from './errors.js';
import { ClientError as Err } from './errors.js';
import { Emitter } from './emitter.js';
import type { ClientInfo, Frame, HistoryPage, PresenceResult } from './frame.js';
import { AsyncQueue } from './queue.js';

/**
 * Where a client stands in a channel's history: the epoch and offset of the last
 * publication it received (or of the `Ack` that subscribed it). Keep it (e.g. in
 * `sessionStorage`) to recover after a page reload with {@link SubscriptionOptions.since}.
 */
export interface StreamPosition {
  /** The history's identity (16 hex digits, opaque: compare for equality only). */
  epoch: string;
  /** The last offset received (0: none of this epoch). */
  offset: number;
}

/** A publication delivered on a channel. */
export interface Publication {
  /** The channel. */
  channel: string;
  /** What was published. */
  data: Uint8Array;
  /** Its position in the channel's history (0 on channels without history). */
  offset: number;
  /** The channel's epoch (`null` on channels without history). */
  epoch: string | null;
  /** The publishing session ({@link NIL_UUID}: the server itself). */
  emitterId: string | null;
  /** The publisher's user, when it is authenticated. */
  userId: string | null;
  /** The publication's trace id. */
  traceId: string | null;
}

/** A subscription took effect ({@link Subscription} event `subscribed`). */
export interface SubscribedEvent {
  /** The channel. */
  channel: string;
  /**
   * Whether the client asked to recover from a position (after a reconnection,
   * or with {@link SubscriptionOptions.since}).
   */
  wasRecovering: boolean;
  /**
   * When recovering: whether every missed publication was replayed (they were
   * delivered before this event). `false` while recovering means publications
   * may be missing (history trimmed or lost, epoch changed, or a channel without
   * history): resynchronise from your own source of truth (or {@link Subscription.history}).
   */
  recovered: boolean;
  /** The channel's current epoch (empty: the channel keeps no history). */
  epoch: string;
  /** The channel's latest offset. */
  offset: number;
}

/** A subscription ended ({@link Subscription} event `unsubscribed`). */
export interface UnsubscribedEvent {
  channel: string;
  /** `"unsubscribe called"`, `"client closed"`, or the server's refusal. */
  reason: string;
}

/**
 * The history of a channel was lost while this client was receiving it: a
 * delivery came with another epoch. Publications may be missing; resynchronise.
 */
export interface ResetEvent {
  channel: string;
  /** The epoch the client held. */
  previousEpoch: string;
  /** The new epoch. */
  epoch: string;
}

/** The events of a {@link Subscription}. */
export interface SubscriptionEvents {
  /** A publication (live, or replayed by a recovery). */
  publication: Publication;
  /** Subscribed (again, after each reconnection). */
  subscribed: SubscribedEvent;
  /** The subscription ended; it delivers nothing more. */
  unsubscribed: UnsubscribedEvent;
  /** The server refused the subscription (it then ends). */
  error: ClientError;
  /** Another session joined the channel (channels with join/leave events). */
  join: ClientInfo;
  /** A session left the channel (channels with join/leave events). */
  leave: ClientInfo;
  /** The channel's epoch changed while subscribed. */
  reset: ResetEvent;
}

/** Options of {@link Client.newSubscription}. */
export interface SubscriptionOptions {
  /**
   * Recover from this position on the first subscribe: publications after it are
   * replayed before the subscription's `subscribed` event (when the history still
   * holds them). Create the iterator ({@link Subscription.publications}) or add a
   * `publication` listener before awaiting {@link Subscription.ready} to see them.
   */
  since?: StreamPosition | null;
  /** A `publication` listener, added before anything is sent. */
  onPublication?: (publication: Publication) => void;
}

/** @internal What a subscription needs of its client. */
export interface SubscriptionHost {
  _unsubscribe(sub: Subscription): Promise<void>;
  publish(channel: string, data: Uint8Array | string, options?: { ack?: boolean; timeoutMs?: number }): Promise<{ offset: number; epoch: string }>;
  history(channel: string, options?: { since?: number; limit?: number; epoch?: string; timeoutMs?: number }): Promise<HistoryPage>;
  presence(channel: string, options?: { timeoutMs?: number }): Promise<PresenceResult>;
}

/** The state of a {@link Subscription}. */
export type SubscriptionState = 'subscribing' | 'subscribed' | 'unsubscribed';

function noop(): void {}

/**
 * A channel this client is subscribed to (made by {@link Client.newSubscription}
 * or {@link Client.subscribe}). It stays subscribed across reconnections: after
 * each one the client subscribes again, recovering from {@link position} on
 * channels with history, so the publications continue without gap or duplicate
 * (`subscribed` says whether that worked).
 *
 * Read publications with an async iterator or with listeners:
 *
 * ```ts
 * const sub = await client.subscribe('chat:lobby');
 * sub.on('join', (who) => console.log('joined:', who.userId));
 * for await (const pub of sub) {
 *   console.log(new TextDecoder().decode(pub.data));
 * }
 * ```
 */
export class Subscription extends Emitter<SubscriptionEvents> {
  /** The channel. */
  readonly channel: string;
  private _state: SubscriptionState = 'subscribing';
  private _position: StreamPosition | null;
  private _last: SubscribedEvent | null = null;
  private readonly queues = new Set<AsyncQueue<Publication>>();
  private waiters: Array<{ resolve: (e: SubscribedEvent) => void; reject: (e: ClientError) => void }> = [];
  private _ended: UnsubscribedEvent | null = null;
  private endError: ClientError | null = null;

  /** @internal Use {@link Client.newSubscription}. */
  constructor(
    private readonly host: SubscriptionHost,
    channel: string,
    options: SubscriptionOptions = {},
  ) {
    super();
    this.channel = channel;
    this._position = options.since ? { epoch: options.since.epoch, offset: options.since.offset } : null;
    if (options.onPublication) this.on('publication', options.onPublication);
  }

  /** `subscribing` (waiting for the server, or for a connection), `subscribed`, or `unsubscribed` (final). */
  get state(): SubscriptionState {
    return this._state;
  }

  /**
   * The epoch and offset of the last publication received (or of the last
   * subscription's `Ack`); `null` on channels without history.
   */
  get position(): StreamPosition | null {
    return this._position ? { ...this._position } : null;
  }

  /**
   * Resolves once subscribed (at once when it is), with the `subscribed` event;
   * rejects with a {@link ClientError} when the server refuses (`kind` `server`) or
   * the subscription ends first. Waits across reconnections.
   */
  ready(): Promise<SubscribedEvent> {
    if (this._state === 'subscribed' && this._last) return Promise.resolve(this._last);
    if (this._state === 'unsubscribed') {
      return Promise.reject(this.endError ?? new Err('unsubscribed', `${this.channel}: ${this._ended?.reason ?? 'unsubscribed'}`));
    }
    const p = new Promise<SubscribedEvent>((resolve, reject) => this.waiters.push({ resolve, reject }));
    // Failures are also `error` / `unsubscribed` events: an ignored promise must
    // not be an unhandled rejection.
    p.catch(noop);
    return p;
  }

  /** Leaves the channel; the subscription ends (iterators finish). */
  unsubscribe(): Promise<void> {
    return this.host._unsubscribe(this);
  }

  /** Publishes on this channel ({@link Client.publish}). */
  publish(data: Uint8Array | string, options?: { ack?: boolean; timeoutMs?: number }): Promise<{ offset: number; epoch: string }> {
    return this.host.publish(this.channel, data, options);
  }

  /** Reads this channel's history ({@link Client.history}). */
  history(options?: { since?: number; limit?: number; epoch?: string; timeoutMs?: number }): Promise<HistoryPage> {
    return this.host.history(this.channel, options);
  }

  /** Lists who is subscribed to this channel ({@link Client.presence}). */
  presence(options?: { timeoutMs?: number }): Promise<PresenceResult> {
    return this.host.presence(this.channel, options);
  }

  /**
   * A new async iterator of the publications from now on; it buffers what
   * arrives until read, and finishes when the subscription ends (or the loop
   * breaks). Each call makes an independent iterator.
   */
  publications(): AsyncIterableIterator<Publication> {
    const queue: AsyncQueue<Publication> = new AsyncQueue(() => this.queues.delete(queue));
    if (this._state === 'unsubscribed') queue.end();
    else this.queues.add(queue);
    return queue;
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Publication> {
    return this.publications();
  }

  // --- called by the client -------------------------------------------------------

  /** @internal The fields of the Subscribe frame to send now. */
  _subscribeFields(): { epoch: string; offset: number; wasRecovering: boolean } {
    const p = this._position;
    return p ? { epoch: p.epoch, offset: p.offset, wasRecovering: true } : { epoch: '', offset: 0, wasRecovering: false };
  }

  /** @internal The Ack of a (recovering) Subscribe. */
  _subscribed(ack: Frame, wasRecovering: boolean): void {
    if (this._state === 'unsubscribed') return;
    const epoch = ack.epoch ?? '';
    if (epoch) this._position = { epoch, offset: ack.offset };
    else this._position = null;
    this._state = 'subscribed';
    const event: SubscribedEvent = { channel: this.channel, wasRecovering, recovered: ack.recovered, epoch, offset: ack.offset };
    this._last = event;
    for (const w of this.waiters.splice(0)) w.resolve(event);
    this.emit('subscribed', event);
  }

  /** @internal The connection was lost: subscribe again on the next one. */
  _disconnected(): void {
    if (this._state === 'subscribed') this._state = 'subscribing';
  }

  /** @internal A Publish delivery on this channel; the publication, or null for a duplicate. */
  _publication(frame: Frame): Publication | null {
    if (this._state === 'unsubscribed') return null;
    const pub = toPublication(frame);
    if (pub.epoch) {
      const held = this._position;
      if (held && held.epoch === pub.epoch) {
        if (pub.offset <= held.offset) return null; // already delivered
      } else if (held && held.epoch && this._state === 'subscribed') {
        this.emit('reset', { channel: this.channel, previousEpoch: held.epoch, epoch: pub.epoch });
      }
      this._position = { epoch: pub.epoch, offset: pub.offset };
    }
    this.emit('publication', pub);
    for (const q of this.queues) q.push(pub);
    return pub;
  }

  /** @internal A Join or Leave event. */
  _presence(kind: 'join' | 'leave', who: ClientInfo): void {
    if (this._state !== 'unsubscribed') this.emit(kind, who);
  }

  /**
   * @internal The subscription ends (unsubscribed, refused, or the client
   * closed); `error` rejects {@link ready}, and is an `error` event when `report`.
   */
  _end(reason: string, error?: ClientError, report = false): void {
    if (this._state === 'unsubscribed') return;
    this._state = 'unsubscribed';
    this._ended = { channel: this.channel, reason };
    this.endError = error ?? new Err('unsubscribed', `${this.channel}: ${reason}`);
    for (const w of this.waiters.splice(0)) w.reject(this.endError);
    if (error && report) this.emit('error', error);
    this.emit('unsubscribed', this._ended);
    for (const q of [...this.queues]) q.end();
  }
}

/** A Publish delivery as a {@link Publication}. */
export function toPublication(frame: Frame): Publication {
  return {
    channel: frame.channel ?? '',
    data: frame.payload,
    offset: frame.offset,
    epoch: frame.epoch,
    emitterId: frame.emitterId,
    userId: frame.userId,
    traceId: frame.traceId,
  };
}
