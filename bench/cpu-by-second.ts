// Each process's CPU second by second while a saga step runs, beside the step's end-to-end
// p99 by second: a step's slow seconds next to what the machine was doing then.
import { type LatencySummary, sum } from "./stats.js";
import { ResourceMonitor } from "./resources.js";

/** Per process (and `machine`, all cores), the % of one core used in each second since start(). */
export type CpuBySecond = Record<string, number[]>;

export class CpuSecondSampler {
  private readonly seconds: Array<Record<string, number>> = [];
  private last: { at: number; cpu: Map<string, number> } | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly monitor: Pick<ResourceMonitor, "cpu">) {}

  start(): this {
    this.last = { at: performance.now(), cpu: this.monitor.cpu() };
    this.timer = setInterval(() => this.sample(), 1_000);
    this.timer.unref();
    return this;
  }

  stop(): CpuBySecond {
    clearInterval(this.timer);
    const out: CpuBySecond = {};
    for (const [index, second] of this.seconds.entries()) for (const [name, percent] of Object.entries(second)) (out[name] ??= [])[index] = percent;
    return out;
  }

  private sample(): void {
    const at = performance.now();
    const cpu = this.monitor.cpu();
    if (this.last) this.seconds.push(ResourceMonitor.percentOfElapsed(this.last.cpu, cpu, at - this.last.at));
    this.last = { at, cpu };
  }
}

export interface SlowSecondsCpu {
  /** Seconds from the step's start whose p99 was over twice the median second's. */
  slow: number[];
  /** Mean % of one core in the slow seconds and in the others, per process; the largest rises first, machine first of all. */
  cpu: Array<{ name: string; slow: number; others: number }>;
}

/**
 * What the processes used in a step's slow seconds against the rest of the step: whether a
 * burst of latency came with more work (a process busier than usual) or with less CPU to go
 * round. Undefined when no second stood out or the step has no CPU by second.
 */
export function slowSecondsCpu(e2eBySecond: readonly LatencySummary[], cpuBySecond: CpuBySecond | undefined): SlowSecondsCpu | undefined {
  if (!cpuBySecond) return undefined;
  const p99s = e2eBySecond.map((second) => (second.count > 0 ? second.p99 : undefined));
  const sorted = p99s.filter((p99): p99 is number => p99 !== undefined).sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  if (median === undefined) return undefined;
  const measured = (index: number): boolean => Object.values(cpuBySecond).some((seconds) => seconds[index] !== undefined);
  const slow = p99s.flatMap((p99, index) => (p99 !== undefined && p99 > 2 * median && measured(index) ? [index] : []));
  const others = p99s.flatMap((p99, index) => (p99 !== undefined && p99 <= 2 * median && measured(index) ? [index] : []));
  if (slow.length === 0 || others.length === 0) return undefined;
  const mean = (seconds: readonly (number | undefined)[], indexes: readonly number[]): number => {
    const values = indexes.map((index) => seconds[index] ?? 0);
    return Math.round((sum(values) / values.length) * 10) / 10;
  };
  const cpu = Object.entries(cpuBySecond)
    .map(([name, seconds]) => ({ name, slow: mean(seconds, slow), others: mean(seconds, others) }))
    .sort((a, b) => Number(b.name === "machine") - Number(a.name === "machine") || b.slow - b.others - (a.slow - a.others));
  return { slow, cpu };
}
