/**
 * A client of the framework's WebSocket protocol (v1.1: binary FlatBuffers
 * frames), for browsers and Node.js.
 *
 * - {@link Client}: connect with a token (refreshed ahead of its expiry),
 *   requests with transaction ids, timeouts and typed errors, publish / send /
 *   broadcast, application opcodes, presence and history, reconnection with
 *   backoff and jitter that restores every subscription with recovery.
 * - {@link Subscription}: a channel's publications as an async iterator or
 *   events, plus `join` / `leave`.
 * - {@link encodeTable} / {@link Reply.decode}: typed payloads with code from
 *   `flatc --ts` (see the README).
 * - The generated protocol code itself is exported as `fbs` for low-level use.
 * @packageDocumentation
 */
export {
  Client,
  Reply,
  encodeTable,
  decodeTable,
  ErrorCode,
  Opcode,
  type AuthenticatedEvent,
  type ClientEvents,
  type ClientOptions,
  type ConnectedEvent,
  type ConnectionState,
  type DisconnectedEvent,
  type Message,
  type PresenceEvent,
  type PublishResult,
  type ReconnectingEvent,
  type RequestOptions,
  type TokenCallback,
  type TokenContext,
  type WebSocketConstructor,
  type WebSocketLike,
} from './client.js';
export {
  Subscription,
  type Publication,
  type ResetEvent,
  type StreamPosition,
  type SubscribedEvent,
  type SubscriptionEvents,
  type SubscriptionOptions,
  type SubscriptionState,
  type UnsubscribedEvent,
} from './subscription.js';
export { ClientError, errorCodeName, type ErrorKind } from './errors.js';
export { backoffDelay, DEFAULT_RECONNECT, type ReconnectPolicy } from './backoff.js';
export {
  decodeFrame,
  encodeFrame,
  type ClientInfo,
  type Frame,
  type HistoryPage,
  type HistoryPublication,
  type OutgoingFrame,
  type PresenceResult,
} from './frame.js';
export { NIL_UUID, uuidToBytes, uuidToString } from './uuid.js';
export { Emitter, type Listener } from './emitter.js';
export * as fbs from './generated/framework/protocol/fbs.js';
