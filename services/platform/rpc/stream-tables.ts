import { subscribe, unsubscribe } from "node:diagnostics_channel";
import type { Http2Session, Http2Stream } from "node:http2";
import { isMap, isSet } from "node:util/types";

/**
 * Node keeps each HTTP/2 session's open streams in a Map and its not-yet-open
 * ones in a Set, both churned by every call. V8 replaces a Map's or a Set's
 * table as it fills with deleted entries and links the discarded table, with
 * its entries, to its successor (for iterators still walking it). Once a
 * discarded table has been promoted to the old generation, every scavenge
 * finds the next table through it, and with it each finished call's streams,
 * headers and handler state: under load the whole graph of every call
 * survives each scavenge and is promoted, until a mark-compact. These tables
 * keep the same entries in storage V8 does not chain.
 */
export class StreamTable<V> {
  private readonly entries: Record<number, V> = Object.create(null) as Record<number, V>;
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(id: number): V | undefined {
    return this.entries[id];
  }

  has(id: number): boolean {
    return id in this.entries;
  }

  set(id: number, value: V): this {
    if (!(id in this.entries)) this.count++;
    this.entries[id] = value;
    return this;
  }

  delete(id: number): boolean {
    if (!(id in this.entries)) return false;
    delete this.entries[id];
    this.count--;
    return true;
  }

  forEach(each: (value: V, id: number, table: this) => void): void {
    for (const [id, value] of this) each(value, id, this);
  }

  *[Symbol.iterator](): IterableIterator<[number, V]> {
    // A snapshot: Node destroys streams (and so deletes them) while it walks the table.
    for (const [id, value] of Object.entries(this.entries)) yield [Number(id), value];
  }
}

/** A session's pending streams: a handful at most, kept in an array V8 does not chain. */
export class StreamSet<V> {
  private readonly items: V[] = [];

  get size(): number {
    return this.items.length;
  }

  has(value: V): boolean {
    return this.items.includes(value);
  }

  add(value: V): this {
    if (!this.items.includes(value)) this.items.push(value);
    return this;
  }

  delete(value: V): boolean {
    const index = this.items.indexOf(value);
    if (index < 0) return false;
    const last = this.items.pop() as V;
    if (index < this.items.length) this.items[index] = last;
    return true;
  }

  forEach(each: (value: V, same: V, set: this) => void): void {
    for (const value of this) each(value, value, this);
  }

  *[Symbol.iterator](): IterableIterator<V> {
    yield* [...this.items];
  }
}

interface SessionState {
  streams: unknown;
  pendingStreams: unknown;
}

/** Where a shape Node no longer matches is reported (a winston Logger will do). */
export interface Warns {
  warn(message: string, meta: Record<string, unknown>): unknown;
}

const channels = ["http2.server.stream.created", "http2.client.stream.created"] as const;
let installed: ((message: unknown) => void) | undefined;
/** Sessions already given the tables: every stream is announced, and finding a session's state is not free. */
const unchained = new WeakSet<Http2Session>();

function sessionState(session: Http2Session): SessionState | undefined {
  const key = Object.getOwnPropertySymbols(session).find((symbol) => symbol.description === "state");
  const state: unknown = key === undefined ? undefined : (session as unknown as Record<symbol, unknown>)[key];
  if (typeof state !== "object" || state === null || !("streams" in state) || !("pendingStreams" in state)) return undefined;
  return state as SessionState;
}

/** Swaps the session's Map and Set for unchained tables; false if Node's private shape is not the one known. */
function unchain(session: Http2Session): boolean {
  const state = sessionState(session);
  if (!state) return false;
  // Node's own SafeMap and SafeSet: Maps and Sets, but not instances of the global classes.
  if (!isMap(state.streams) || !isSet(state.pendingStreams)) return false;
  const streams = new StreamTable<unknown>();
  for (const [id, stream] of state.streams as Map<number, unknown>) streams.set(id, stream);
  const pending = new StreamSet<unknown>();
  for (const stream of state.pendingStreams as Set<unknown>) pending.add(stream);
  state.streams = streams;
  state.pendingStreams = pending;
  return true;
}

/**
 * Gives every HTTP/2 session of this process (grpc-js's, connect-node's, clients')
 * unchained stream tables from its first stream on, through Node's
 * `http2.*.stream.created` diagnostics channels. The tables replace Node's private
 * session state: if its shape is not the one known, it warns once and leaves Node alone.
 */
export function keepStreamTablesUnchained(logger: Warns): void {
  if (installed) return;
  const onStream = (message: unknown): void => {
    const session = (message as { stream?: Http2Stream }).stream?.session;
    if (!session || unchained.has(session)) return;
    if (unchain(session)) {
      unchained.add(session);
      return;
    }
    logger.warn("HTTP/2 stream tables left as Node keeps them: its session state has an unknown shape", { node: process.version });
    stopKeepingStreamTablesUnchained();
  };
  for (const name of channels) subscribe(name, onStream);
  installed = onStream;
}

export function stopKeepingStreamTablesUnchained(): void {
  if (!installed) return;
  for (const name of channels) unsubscribe(name, installed);
  installed = undefined;
}
