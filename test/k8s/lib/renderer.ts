// Builds and runs the chart renderer.
//
// Where `helm` is on PATH, `helm template` / `helm lint` are used. Otherwise a
// small Go program (test/k8s/helm-render) renders the chart with the engine
// Helm itself uses: Go text/template + sprig + Helm's own functions. It is
// compiled offline against Debian's Go packages (GOPATH mode, no module
// downloads) and cached in node_modules/.cache/orderflow-k8s/ (git-ignored,
// and outside the trees vitest and tsc scan).
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const K8S_TEST_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const REPO_ROOT = resolve(K8S_TEST_DIR, "../..");
export const CHART_DIR = join(REPO_ROOT, "charts/orderflow");
export const CACHE = join(REPO_ROOT, "node_modules/.cache/orderflow-k8s");
const SRC = join(K8S_TEST_DIR, "helm-render");
const GOCODE = "/usr/share/gocode/src";

// Debian packages the renderer compiles against.
export const APT_PACKAGES = [
  "golang-go",
  "golang-github-masterminds-sprig-dev",
  "golang-k8s-sigs-yaml-dev",
  "golang-github-xeipuuv-gojsonschema-dev",
];
const REQUIRED_SOURCES = [
  "github.com/Masterminds/sprig",
  "github.com/Masterminds/semver",
  "sigs.k8s.io/yaml",
  "github.com/xeipuuv/gojsonschema",
];

function which(cmd: string): string | null {
  const r = spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

/**
 * True when a real helm can render the chart: helm is on PATH and the chart's
 * dependencies have been fetched (`helm dependency build`), since `helm
 * template` refuses a chart whose enabled dependency is missing.
 */
export function helmOnPath(): boolean {
  if (which("helm") === null) return false;
  const charts = join(CHART_DIR, "charts");
  return existsSync(charts) && readdirSync(charts).some((f) => f === "nats" || f.startsWith("nats-"));
}

function goToolchainReady(): boolean {
  return which("go") !== null && REQUIRED_SOURCES.every((p) => existsSync(join(GOCODE, p)));
}

function installGoToolchain(): void {
  if (goToolchainReady()) return;
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  const hint = `install them: apt-get install -y ${APT_PACKAGES.join(" ")}`;
  if (!isRoot || which("apt-get") === null) {
    throw new Error(`k8s checks need Go and Debian's Go packages to render the chart offline; ${hint}`);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  // Parallel test processes may get here together: serialise on a lock file
  // (dpkg's own lock would make the second apt-get fail instead of wait).
  mkdirSync(CACHE, { recursive: true });
  const lock = join(CACHE, "apt.lock");
  const apt = (...args: string[]) => spawnSync("flock", [lock, "apt-get", ...args], { env, encoding: "utf8" });
  let r = apt("install", "-y", "-q", ...APT_PACKAGES);
  if (r.status !== 0) {
    apt("update", "-q");
    r = apt("install", "-y", "-q", ...APT_PACKAGES);
  }
  if (r.status !== 0 || !goToolchainReady()) {
    throw new Error(`apt-get could not install the Go toolchain for the k8s checks; ${hint}\n${r.stderr}`);
  }
}

let binaryPath: string | null = null;

/** Returns the path of the compiled renderer, building it when its source changed. */
export function ensureRenderer(): string {
  if (binaryPath) return binaryPath;
  const source = readFileSync(join(SRC, "main.go"));
  const hash = createHash("sha256").update(source).digest("hex").slice(0, 16);
  const bin = join(CACHE, `helm-render-${hash}`);
  if (!existsSync(bin)) {
    installGoToolchain();
    // Test files run in parallel processes: build in a private GOPATH and
    // rename the binary into place, so concurrent builds cannot collide.
    const gopath = join(CACHE, `gopath-${process.pid}`);
    rmSync(gopath, { recursive: true, force: true });
    // GOPATH-mode shim: Debian installs semantic-import-versioned modules
    // without their /vN suffix, so map the /v3 import paths onto them.
    for (const mod of ["Masterminds/sprig", "Masterminds/semver"]) {
      const dir = join(gopath, "src/github.com", mod);
      mkdirSync(dir, { recursive: true });
      symlinkSync(join(GOCODE, "github.com", mod), join(dir, "v3"));
    }
    symlinkSync(SRC, join(gopath, "src/helmrender"));
    const env = {
      ...process.env,
      GO111MODULE: "off",
      GOPATH: `${gopath}:/usr/share/gocode`,
      GOFLAGS: "",
      GOPROXY: "off",
      GOTOOLCHAIN: "local",
      GOCACHE: join(CACHE, "gocache"),
      CGO_ENABLED: "0",
    };
    const tmp = `${bin}.${process.pid}.tmp`;
    const r = spawnSync("go", ["build", "-o", tmp, "helmrender"], { env, cwd: gopath, encoding: "utf8" });
    rmSync(gopath, { recursive: true, force: true });
    if (r.status !== 0) throw new Error(`building the Go chart renderer failed:\n${r.stderr}`);
    renameSync(tmp, bin);
  }
  binaryPath = bin;
  return bin;
}

export interface RenderOptions {
  valuesFiles?: string[];
  values?: unknown; // written to a temp values file, applied last
  releaseName?: string;
  namespace?: string;
  upgrade?: boolean;
  notes?: boolean;
  apiVersions?: string[];
  kubeVersion?: string;
}

export interface RenderResult {
  ok: boolean;
  manifest: string;
  notes: string;
  stderr: string;
  engine: "helm" | "go-renderer";
}

let tmpCounter = 0;

export function renderChart(opts: RenderOptions = {}): RenderResult {
  const files = [...(opts.valuesFiles ?? [])];
  if (opts.values !== undefined) {
    mkdirSync(join(CACHE, "tmp"), { recursive: true });
    const f = join(CACHE, "tmp", `values-${process.pid}-${tmpCounter++}.json`);
    writeFileSync(f, JSON.stringify(opts.values));
    files.push(f);
  }
  const name = opts.releaseName ?? "orderflow";
  const ns = opts.namespace ?? "orderflow";
  if (helmOnPath()) {
    const args = ["template", name, CHART_DIR, "--namespace", ns, ...files.flatMap((f) => ["-f", f])];
    for (const a of opts.apiVersions ?? []) args.push("--api-versions", a);
    if (opts.kubeVersion) args.push("--kube-version", opts.kubeVersion);
    if (opts.upgrade) args.push("--is-upgrade");
    const r = spawnSync("helm", args, { encoding: "utf8", maxBuffer: 64 << 20 });
    return { ok: r.status === 0, manifest: r.stdout, notes: "", stderr: r.stderr, engine: "helm" };
  }
  const bin = ensureRenderer();
  const args = ["--chart", CHART_DIR, "--name", name, "--namespace", ns, ...files.flatMap((f) => ["-f", f])];
  if (opts.upgrade) args.push("--upgrade");
  if (opts.notes) args.push("--notes");
  if (opts.apiVersions?.length) args.push("--api-versions", opts.apiVersions.join(","));
  if (opts.kubeVersion) args.push("--kube-version", opts.kubeVersion);
  const r = spawnSync(bin, args, { encoding: "utf8", maxBuffer: 64 << 20 });
  let manifest = r.stdout;
  let notes = "";
  const i = manifest.indexOf("# NOTES\n");
  if (opts.notes && i >= 0) {
    notes = manifest.slice(i + "# NOTES\n".length);
    manifest = manifest.slice(0, i);
  }
  return { ok: r.status === 0, manifest, notes, stderr: r.stderr, engine: "go-renderer" };
}

/** `helm lint` where helm exists; null otherwise. */
export function helmLint(valuesFiles: string[]): { ok: boolean; output: string } | null {
  if (!helmOnPath()) return null;
  try {
    const out = execFileSync("helm", ["lint", CHART_DIR, ...valuesFiles.flatMap((f) => ["-f", f])], { encoding: "utf8" });
    return { ok: true, output: out };
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string };
    return { ok: false, output: `${err.stdout ?? ""}${err.stderr ?? ""}` };
  }
}
