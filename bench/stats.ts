// Latency summaries. Samples are kept whole (a bench step holds at most a few
// hundred thousand numbers) and sorted once, so percentiles are exact.

export interface LatencySummary {
  /** Number of samples. */
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Collects latencies in milliseconds. */
export class Samples {
  private values: Float64Array;
  private length = 0;

  constructor(initial = 1024) {
    this.values = new Float64Array(initial);
  }

  add(ms: number): void {
    if (this.length === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.length++] = ms;
  }

  get count(): number {
    return this.length;
  }

  /** How many samples lie within [from, to]. */
  countWithin(from: number, to: number): number {
    let count = 0;
    for (let i = 0; i < this.length; i++) {
      const value = this.values[i] ?? 0;
      if (value >= from && value <= to) count += 1;
    }
    return count;
  }

  /** The samples in ascending order (a copy). */
  sorted(): Float64Array {
    return Float64Array.from(this.values.subarray(0, this.length)).sort();
  }

  summary(): LatencySummary {
    return summarize(this.values.subarray(0, this.length));
  }
}

/** Exact percentiles (nearest rank); all zeros when there are no samples. */
export function summarize(input: Float64Array | readonly number[]): LatencySummary {
  const sorted = Float64Array.from(input).sort();
  const count = sorted.length;
  if (count === 0) return { count: 0, p50: 0, p90: 0, p99: 0, max: 0, mean: 0 };
  const rank = (p: number): number => sorted[Math.min(count - 1, Math.max(0, Math.ceil((p / 100) * count) - 1))] ?? 0;
  let sum = 0;
  for (const value of sorted) sum += value;
  return { count, p50: round(rank(50)), p90: round(rank(90)), p99: round(rank(99)), max: round(sorted[count - 1] ?? 0), mean: round(sum / count) };
}

export function sum(values: Iterable<number>): number {
  let total = 0;
  for (const value of values) total += value;
  return total;
}

export function round(value: number, digits = 2): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

/** A figure as the reports print it: whole and grouped from 100 up, one decimal below. */
export function figure(value: number): string {
  return Math.abs(value) >= 100 ? Math.round(value).toLocaleString("en-US") : String(Math.round(value * 10) / 10);
}

/** A latency in ms for a table: whole from 100 ms, one decimal from 10, two below. */
export function milliseconds(value: number): string {
  return value >= 100 ? String(Math.round(value)) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
}
