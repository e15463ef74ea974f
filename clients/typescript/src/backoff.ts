/**
 * How a reconnecting client waits between connection attempts: exponential
 * backoff, capped, with random jitter so that many clients dropped at once do not
 * come back at once. Attempt `n` (from 0) waits
 * `min(initialDelayMs × multiplierⁿ, maxDelayMs)`, less a random part of at most
 * `jitter` of it.
 */
export interface ReconnectPolicy {
  /** The wait before the first attempt after a disconnection (default 250 ms). */
  initialDelayMs: number;
  /** The longest wait (default 10 000 ms). */
  maxDelayMs: number;
  /** How much each failed attempt multiplies the wait (default 2; below 1 counts as 1). */
  multiplier: number;
  /** The largest fraction of a wait taken off at random, 0 to 1 (default 0.5). */
  jitter: number;
  /** Attempts in a row before giving up (default `Infinity`: never). */
  maxAttempts: number;
}

/** The default {@link ReconnectPolicy}. */
export const DEFAULT_RECONNECT: Readonly<ReconnectPolicy> = Object.freeze({
  initialDelayMs: 250,
  maxDelayMs: 10_000,
  multiplier: 2,
  jitter: 0.5,
  maxAttempts: Infinity,
});

/**
 * The wait before attempt `attempt` (0: the first after a disconnection), in ms.
 * `random` returns a number in [0, 1) (default `Math.random`).
 */
export function backoffDelay(policy: ReconnectPolicy, attempt: number, random: () => number = Math.random): number {
  const factor = Math.pow(Math.max(1, policy.multiplier), Math.min(attempt, 1024));
  const base = Math.min(policy.initialDelayMs * factor, policy.maxDelayMs);
  const jitter = Number.isFinite(policy.jitter) ? Math.min(1, Math.max(0, policy.jitter)) : 0;
  const wait = base * (1 - jitter * random());
  return Number.isFinite(wait) && wait > 0 ? wait : 0;
}
