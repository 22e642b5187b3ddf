/**
 * A counter summed over a family of processes (every Postgres backend, say) that does not fall
 * when one of them exits: a process gone keeps the last value read of it. Summed afresh, a
 * backend that ended between two readings took its CPU seconds out of the sum, and the
 * difference read below zero (-7 to -61 % of a core in a second).
 */
export class FamilyCounter {
  private readonly last = new Map<number, number>();
  private retired = 0;

  /** The family's total now, given each live process's value. */
  total(values: ReadonlyMap<number, number>): number {
    for (const [pid, previous] of this.last) {
      const now = values.get(pid);
      // Gone, or its pid taken by a new process whose count started again.
      if (now === undefined || now < previous) {
        this.retired += previous;
        this.last.delete(pid);
      }
    }
    let sum = this.retired;
    for (const [pid, value] of values) {
      this.last.set(pid, value);
      sum += value;
    }
    return sum;
  }
}
