import type { NotificationRow, NotificationStore } from "./store.js";

/**
 * How much earlier than a read's `since` a mark must be to bound it: covers the moment
 * between a mark's time (its transaction's start) and the snapshot its max(seq) comes from.
 */
const markMarginMs = 1_000;

/**
 * The hub's catch-up reads (the watched customers' notifications created since a time, every
 * few seconds), each through the index from a position instead of through every notification
 * those customers ever got. Each read that succeeds leaves a mark: Postgres's time and the
 * newest notification number it saw. A notification created after a mark's time (created_at is
 * its transaction's start) was numbered after every one the mark saw, since an identity
 * sequence only grows, so a read since a time at least `markMarginMs` past a mark looks only
 * above the mark's number.
 */
export class RecentNotifications {
  /** Oldest first; the first one may bound the next read, the later ones the reads after. */
  private marks: Array<{ at: number; seq: string }> = [];
  /**
   * The newest notification number when this process began (see `start`), "0" before: a read
   * no mark bounds yet starts there, not from the first notification ever recorded.
   */
  private floor = "0";

  constructor(private readonly store: Pick<NotificationStore, "createdSince" | "mark">) {}

  /**
   * Takes the first mark. Call it before any watcher can begin: every notification numbered at
   * or below it was inserted before then, so it cannot be one a watcher is owed (a watcher gets
   * what was created after it began), and the hub's first reads, which look further back than
   * any mark made since, need not read below it.
   */
  async start(): Promise<void> {
    const mark = await this.store.mark();
    this.floor = mark.seq;
    this.remember(mark);
  }

  async createdSince(customerIds: string[], since: Date): Promise<NotificationRow[]> {
    const mark = await this.store.mark();
    const rows = await this.store.createdSince(customerIds, since, this.positionFor(since.getTime()));
    this.remember(mark);
    return rows;
  }

  private remember(mark: { at: Date; seq: string }): void {
    this.marks.push({ at: mark.at.getTime(), seq: mark.seq });
  }

  /** The number of the newest mark far enough before `since`, forgetting older marks (the hub's `since` only grows). */
  private positionFor(since: number): string {
    let newest = -1;
    for (let i = 0; i < this.marks.length && this.marks[i]!.at <= since - markMarginMs; i++) newest = i;
    if (newest < 0) return this.floor;
    this.marks = this.marks.slice(newest);
    return this.marks[0]!.seq;
  }
}
