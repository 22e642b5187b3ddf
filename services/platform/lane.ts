import type pg from "pg";
import { asError } from "./errors.js";

/** Where a lane's connection comes from: a pool. */
export interface Connections {
  connect(): Promise<Pick<pg.PoolClient, "query" | "release">>;
}

/**
 * A pooled connection carrying statements to Postgres in the order they were sent. The pools
 * pipeline (see `Database`): a statement sent behind others under way goes out at once, and
 * Postgres runs it as soon as they are done — committed, if they ran on their own — without a
 * round trip between. The connection goes back to the pool when the last is answered.
 */
export class Lane {
  private pending = 0;
  private failure: Error | undefined;

  private constructor(private readonly client: Promise<Pick<pg.PoolClient, "query" | "release">>) {}

  /**
   * Sends `config` behind the statements under way on `behind`, or on a connection of its own
   * from `pool` when there are none; `lane` is where it went.
   */
  static query<R extends pg.QueryResultRow>(pool: Connections, config: pg.QueryConfig, behind?: Lane): { lane: Lane; result: Promise<pg.QueryResult<R>> } {
    const lane = behind && behind.pending > 0 ? behind : new Lane(pool.connect());
    return { lane, result: lane.send<R>(config) };
  }

  private send<R extends pg.QueryResultRow>(config: pg.QueryConfig): Promise<pg.QueryResult<R>> {
    this.pending++;
    const result = this.client.then((client) => client.query<R>(config));
    result.then(
      () => this.answered(),
      (error: unknown) => this.answered(asError(error)),
    );
    return result;
  }

  private answered(failure?: Error): void {
    this.failure ??= failure;
    if (--this.pending > 0) return;
    // As pg-pool's own query does, a connection that answered with an error is closed, not reused.
    this.client.then(
      (client) => client.release(this.failure),
      () => undefined,
    );
  }
}
