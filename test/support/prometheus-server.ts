// A Prometheus server for tests: scrapes the given targets every second, as the chart's
// ServiceMonitors would (each target with the labels Prometheus would give it there), loads
// rule files, and answers instant queries over its HTTP API.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../tools/ports.js";
import { errorMessage } from "../../services/platform/errors.js";
import { prometheusBinaries } from "./prometheus-binaries.js";
import { eventually } from "./saga-system.js";

export interface ScrapeTarget {
  /** host:port serving /metrics. */
  address: string;
  /** Labels every sample of the target gets: `job`, `namespace`, `pod`, … */
  labels: Record<string, string>;
}

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface PromRule {
  name: string;
  type: "alerting" | "recording";
  health: string;
  lastError?: string;
  lastEvaluation: string;
}

export class PrometheusServer {
  private constructor(
    private readonly process: ChildProcess,
    private readonly dir: string,
    readonly url: string,
    private readonly output: () => string,
  ) {}

  static async start(targets: readonly ScrapeTarget[], ruleFiles: ReadonlyArray<{ name: string; content: unknown }> = []): Promise<PrometheusServer> {
    const { prometheus } = prometheusBinaries();
    const dir = mkdtempSync(join(tmpdir(), "orderflow-prometheus-"));
    const rules = ruleFiles.map(({ name, content }) => {
      const file = join(dir, `${name}.json`);
      writeFileSync(file, JSON.stringify(content));
      return file;
    });
    // Prometheus reads YAML, of which JSON is a part.
    const config = {
      global: { scrape_interval: "1s", evaluation_interval: "1s" },
      rule_files: rules,
      scrape_configs: targets.map((target, i) => ({ job_name: `target-${i}`, static_configs: [{ targets: [target.address], labels: target.labels }] })),
    };
    writeFileSync(join(dir, "prometheus.yml"), JSON.stringify(config));
    const port = await freePort();
    let output = "";
    const child = spawn(prometheus, [`--config.file=${join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${join(dir, "data")}`, `--web.listen-address=127.0.0.1:${port}`, "--log.level=warn"], { stdio: ["ignore", "pipe", "pipe"] });
    for (const stream of [child.stdout, child.stderr]) stream?.on("data", (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
    const server = new PrometheusServer(child, dir, `http://127.0.0.1:${port}`, () => output);
    await server.until(async () => (await fetch(`${server.url}/-/ready`)).ok, 20_000, "to be ready");
    return server;
  }

  /** `GET /api/v1/<path>`'s data; throws with Prometheus's error when it answers one. */
  async api<T>(path: string): Promise<T> {
    const response = await fetch(`${this.url}/api/v1/${path}`);
    const body = (await response.json()) as { status: string; data: T; error?: string; errorType?: string };
    if (body.status !== "success") throw new Error(`Prometheus refused ${decodeURIComponent(path)}: ${body.errorType}: ${body.error}`);
    return body.data;
  }

  async query(expr: string): Promise<PromSample[]> {
    return (await this.api<{ result: PromSample[] }>(`query?query=${encodeURIComponent(expr)}`)).result;
  }

  async labelValues(label: string, match: string): Promise<string[]> {
    return this.api<string[]>(`label/${label}/values?match[]=${encodeURIComponent(match)}`);
  }

  async rules(): Promise<PromRule[]> {
    return (await this.api<{ groups: Array<{ rules: PromRule[] }> }>("rules")).groups.flatMap((group) => group.rules);
  }

  async alerts(): Promise<Array<{ labels: Record<string, string>; state: string }>> {
    return (await this.api<{ alerts: Array<{ labels: Record<string, string>; state: string }> }>("alerts")).alerts;
  }

  /** Resolves once `check` holds, polling; fails with Prometheus's last output after `timeoutMs`. */
  async until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
    const running = async () => {
      if (this.process.exitCode !== null) throw new Error(`Prometheus exited (${this.process.exitCode})`);
      return check();
    };
    await eventually(running, timeoutMs, `Prometheus ${what}`, 250).catch((error: unknown) => {
      throw new Error(`${errorMessage(error)}; its output: ${this.output()}`);
    });
  }

  async stop(): Promise<void> {
    if (this.process.exitCode === null) {
      const exited = new Promise((resolve) => this.process.once("exit", resolve));
      this.process.kill("SIGTERM");
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
