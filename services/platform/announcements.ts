/**
 * A process-wide registry of who hears of something once it has committed (an order's status
 * change, a new notification), so the code that writes it needs no handle on who passes it on.
 */
export interface Announcements<T> {
  /** Calls `listener` with what each announcement carries. Returns the unregistration. */
  listen(listener: (items: readonly T[]) => void): () => void;
  /** Tells every listener; nothing when `items` is empty. */
  announce(items: readonly T[]): void;
}

export function announcements<T>(): Announcements<T> {
  const listeners = new Set<(items: readonly T[]) => void>();
  return {
    listen(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    announce(items) {
      if (items.length === 0) return;
      for (const listener of listeners) listener(items);
    },
  };
}
