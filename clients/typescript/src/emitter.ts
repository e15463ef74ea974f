/** A listener of event `K` of an event map `E`. */
export type Listener<E, K extends keyof E> = (event: E[K]) => void;

/**
 * A small typed event emitter. Listeners run synchronously in the order they were
 * added; one that throws does not stop the others nor the client (the error is
 * reported with `console.error`).
 */
export class Emitter<E> {
  private readonly listeners = new Map<keyof E, Set<(event: never) => void>>();

  /**
   * Calls `listener` for every `event`; returns a function that removes it.
   */
  on<K extends keyof E>(event: K, listener: Listener<E, K>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as (event: never) => void);
    return () => this.off(event, listener);
  }

  /** Removes a listener added with {@link on}. */
  off<K extends keyof E>(event: K, listener: Listener<E, K>): void {
    this.listeners.get(event)?.delete(listener as (event: never) => void);
  }

  /** Calls `listener` for the next `event` only; returns a function that removes it. */
  once<K extends keyof E>(event: K, listener: Listener<E, K>): () => void {
    const off = this.on(event, (e) => {
      off();
      listener(e);
    });
    return off;
  }

  /** @internal */
  protected emit<K extends keyof E>(event: K, value: E[K]): void {
    const set = this.listeners.get(event);
    if (!set || set.size === 0) return;
    for (const listener of [...set]) {
      try {
        (listener as (event: E[K]) => void)(value);
      } catch (e) {
        console.error(`framework-client: a '${String(event)}' listener threw`, e);
      }
    }
  }

  /** @internal Whether anyone listens to `event`. */
  protected listens<K extends keyof E>(event: K): boolean {
    return (this.listeners.get(event)?.size ?? 0) > 0;
  }
}
