import { ErrorCode } from './generated/framework/protocol/fbs/error-code.js';

/**
 * What kind of failure a {@link ClientError} is:
 * - `server`: the server answered with an `Error` frame (see {@link ClientError.errorCode});
 * - `timeout`: no answer within the request's timeout;
 * - `disconnected`: the connection was lost (or not open) before the answer came;
 *   the request may or may not have been handled;
 * - `closed`: the client was closed ({@link Client.close});
 * - `unsubscribed`: the subscription was removed before it was subscribed;
 * - `protocol`: the server sent something this client cannot read;
 * - `transport`: the WebSocket could not be opened or failed;
 * - `token`: the token callback failed.
 */
export type ErrorKind =
  | 'server'
  | 'timeout'
  | 'disconnected'
  | 'closed'
  | 'unsubscribed'
  | 'protocol'
  | 'transport'
  | 'token';

/** The name of an {@link ErrorCode} value (`"RateLimited"`), or its number as text. */
export function errorCodeName(code: number): string {
  return (ErrorCode as unknown as Record<number, string>)[code] ?? String(code);
}

/**
 * Every failure of this client: a rejected promise or an `error` event carries one.
 *
 * ```ts
 * try {
 *   await client.publish('chat:lobby', 'hi');
 * } catch (e) {
 *   if (e instanceof ClientError && e.errorCode === ErrorCode.RateLimited) {
 *     await sleep(e.retryAfterMs);
 *   }
 * }
 * ```
 */
export class ClientError extends Error {
  /** What kind of failure this is. */
  readonly kind: ErrorKind;
  /** The server's `error_code` (`ErrorCode.None` unless {@link kind} is `server`). */
  readonly errorCode: ErrorCode;
  /** The server's `retry_after_ms` (for `RateLimited`): when a retry can succeed; 0 otherwise. */
  readonly retryAfterMs: number;
  /** The server's `error_message` (for people, not for parsing); empty unless `server`. */
  readonly serverMessage: string;
  /** The trace id of the failed request, when the server gave one. */
  readonly traceId: string | null;

  constructor(
    kind: ErrorKind,
    message: string,
    details: { errorCode?: ErrorCode; retryAfterMs?: number; serverMessage?: string; traceId?: string | null; cause?: unknown } = {},
  ) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'ClientError';
    this.kind = kind;
    this.errorCode = details.errorCode ?? ErrorCode.None;
    this.retryAfterMs = details.retryAfterMs ?? 0;
    this.serverMessage = details.serverMessage ?? '';
    this.traceId = details.traceId ?? null;
  }

  /** The name of {@link errorCode} (`"Forbidden"`). */
  get errorCodeName(): string {
    return errorCodeName(this.errorCode);
  }
}
