// No Docker engine runs here, so the Dockerfile is checked by replaying it:
// every COPY source must exist in the build context (and not be excluded by
// .dockerignore), every RUN step must succeed in a clean directory, and the
// assembled runtime stage must hold what the services need to start.
import { spawnSync } from "node:child_process";
import { createHash, type Hash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jemallocCandidates } from "../../tools/allocator.js";
import { serviceNodeFlags } from "../../tools/node-flags.js";
import { CACHE, REPO_ROOT } from "./lib/renderer.js";

interface Instruction {
  op: string;
  args: string;
  flags: Record<string, string>;
  line: number;
}
interface Stage {
  name: string;
  image: string;
  steps: Instruction[];
}

export function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  const lines = text.split("\n");
  const logical: { text: string; line: number }[] = [];
  let buf = "";
  let start = 0;
  lines.forEach((raw, i) => {
    const line = raw.trimEnd();
    if (buf === "" && (line.trim().startsWith("#") || line.trim() === "")) return;
    if (buf === "") start = i + 1;
    if (line.endsWith("\\")) {
      buf += line.slice(0, -1) + " ";
      return;
    }
    buf += line;
    logical.push({ text: buf.trim(), line: start });
    buf = "";
  });
  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const l of logical) {
    const m = /^(\w+)\s+(.*)$/.exec(l.text);
    if (!m) throw new Error(`Dockerfile:${l.line}: cannot parse "${l.text}"`);
    const op = m[1]!.toUpperCase();
    let rest = m[2]!;
    const flags: Record<string, string> = {};
    while (/^--[\w-]+=\S+\s/.test(rest)) {
      const f = /^--([\w-]+)=(\S+)\s+/.exec(rest)!;
      flags[f[1]!] = f[2]!;
      rest = rest.slice(f[0].length);
    }
    const ins: Instruction = { op, args: rest, flags, line: l.line };
    if (op === "FROM") {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
      if (!f) throw new Error(`Dockerfile:${l.line}: bad FROM`);
      const image = f[1]!.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => globalArgs[a ?? b] ?? "");
      stages.push({ name: f[2] ?? String(stages.length), image, steps: [] });
    } else if (op === "ARG" && stages.length === 0) {
      const [k, v] = rest.split("=");
      globalArgs[k!] = v ?? "";
    } else {
      if (!stages.length) throw new Error(`Dockerfile:${l.line}: ${op} before FROM`);
      stages.at(-1)!.steps.push(ins);
    }
  }
  return { args: globalArgs, stages };
}

/** .dockerignore matcher (Go filepath.Match patterns plus **, and ! exceptions). */
export function dockerIgnore(text: string): (path: string) => boolean {
  const rules = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const negate = l.startsWith("!");
      const pat = (negate ? l.slice(1) : l).replace(/^\/+/, "").replace(/\/+$/, "");
      const re = new RegExp(
        "^" +
          pat
            .split("")
            .map((c, i, a) => {
              if (c === "*" && a[i + 1] === "*") return "";
              if (c === "*" && a[i - 1] === "*") return a[i + 1] === "/" ? "(?:.*/)?" : ".*";
              if (c === "*") return "[^/]*";
              if (c === "?") return "[^/]";
              return /[.+^${}()|[\]\\]/.test(c) ? `\\${c}` : c;
            })
            .join("")
            .replace(/\(\?:\.\*\/\)\?\//g, "(?:.*/)?") +
          "$",
      );
      return { negate, re };
    });
  return (path: string) => {
    // A path is excluded if it or any parent directory matches (last rule wins).
    const parts = path.split("/");
    let excluded = false;
    for (let i = 1; i <= parts.length; i++) {
      const p = parts.slice(0, i).join("/");
      for (const r of rules) if (r.re.test(p)) excluded = !r.negate;
    }
    return excluded;
  };
}

function copyFiltered(src: string, dest: string, ignored: (p: string) => boolean): number {
  let n = 0;
  const rel = relative(REPO_ROOT, src);
  if (ignored(rel)) return 0;
  if (statSync(src).isDirectory()) {
    mkdirSync(dest, { recursive: true });
    for (const e of readdirSync(src)) n += copyFiltered(join(src, e), join(dest, e), ignored);
  } else {
    mkdirSync(join(dest, ".."), { recursive: true });
    cpSync(src, dest);
    n++;
  }
  return n;
}

function hashFiltered(src: string, ignored: (p: string) => boolean, hash: Hash): void {
  const rel = relative(REPO_ROOT, src);
  if (!existsSync(src) || ignored(rel)) return;
  if (statSync(src).isDirectory()) {
    for (const e of readdirSync(src).sort()) hashFiltered(join(src, e), ignored, hash);
  } else {
    hash.update(`${rel}\0`).update(readFileSync(src)).update("\0");
  }
}

function hardlinkCopy(from: string, to: string): void {
  let r = spawnSync("cp", ["-al", from, to], { encoding: "utf8" });
  if (r.status !== 0) {
    // Different filesystems: copy instead of linking.
    rmSync(to, { recursive: true, force: true });
    r = spawnSync("cp", ["-a", from, to], { encoding: "utf8" });
  }
  if (r.status !== 0) throw new Error(`cp ${from} ${to}: ${r.stderr}`);
}

function splitArgs(s: string): string[] {
  if (s.startsWith("[")) return JSON.parse(s) as string[];
  return s.split(/\s+/).filter(Boolean);
}

function installsDebianPackages(step: Instruction): boolean {
  return step.op === "RUN" && /\bapt-get\b/.test(step.args);
}

const dockerfile = readFileSync(join(REPO_ROOT, "Dockerfile"), "utf8");
const ignoreText = existsSync(join(REPO_ROOT, ".dockerignore")) ? readFileSync(join(REPO_ROOT, ".dockerignore"), "utf8") : "";
const parsed = parseDockerfile(dockerfile);
const ignored = dockerIgnore(ignoreText);
const SERVICES = ["order", "inventory", "fraud", "payment", "notification"];

describe("Dockerfile (static)", () => {
  it("is multi-stage on Node 24 and ends in a non-root runtime stage", () => {
    expect(parsed.stages.length).toBeGreaterThanOrEqual(2);
    for (const s of parsed.stages) expect(s.image, `stage ${s.name}`).toMatch(/(^node:24|nodejs24)/);
    const runtime = parsed.stages.at(-1)!;
    const user = runtime.steps.filter((s) => s.op === "USER").at(-1)?.args;
    expect(user, "runtime stage must set USER").toBeDefined();
    expect(["root", "0", "0:0"]).not.toContain(user);
    expect(runtime.steps.some((s) => s.op === "RUN" && /npm (ci|install)(?!.*--omit=dev)/.test(s.args)), "no dev install in runtime").toBe(false);
    const entry = runtime.steps.find((s) => s.op === "ENTRYPOINT");
    expect(entry && splitArgs(entry.args)[0]).toBe("node");
  });

  it("starts node with the services' flags, as npm start does", () => {
    const entry = parsed.stages.at(-1)!.steps.find((s) => s.op === "ENTRYPOINT");
    expect(entry && splitArgs(entry.args)).toEqual(["node", ...serviceNodeFlags]);
  });

  it("runs the services on the jemalloc its runtime stage installs, as root before USER", () => {
    const runtime = parsed.stages.at(-1)!;
    const installs = runtime.steps.filter(installsDebianPackages);
    expect(installs.map((s) => s.args)).toEqual([expect.stringMatching(/apt-get install -y --no-install-recommends libjemalloc2 /)]);
    const install = installs[0]!;
    expect(runtime.steps.indexOf(install)).toBeLessThan(runtime.steps.findIndex((s) => s.op === "USER"));
    for (const stage of parsed.stages.slice(0, -1)) expect(stage.steps.filter(installsDebianPackages), `stage ${stage.name}`).toEqual([]);
    const link = /ln -s "([^"]+)" (\S+)$/.exec(install.args);
    expect(link, "the install step links the library to a fixed path").not.toBeNull();
    const preload = runtime.steps.filter((s) => s.op === "ENV").map((s) => /\bLD_PRELOAD=(\S+)/.exec(s.args)?.[1]).find((v) => v !== undefined);
    expect(preload).toBe(link![2]);
    // Debian's multiarch directory, as `uname -m` names it inside the image, is where tools/allocator.ts looks first.
    const linked = spawnSync("sh", ["-c", `echo "${link![1]}"`], { encoding: "utf8" }).stdout.trim();
    expect(linked).toBe(jemallocCandidates[0]);
  });

  it("COPYs only paths that exist in the build context and are not .dockerignored", () => {
    const problems: string[] = [];
    for (const stage of parsed.stages) {
      for (const s of stage.steps.filter((x) => x.op === "COPY" && !x.flags.from)) {
        const parts = splitArgs(s.args);
        for (const src of parts.slice(0, -1)) {
          const p = src.replace(/^\.\//, "").replace(/\/$/, "");
          if (!existsSync(join(REPO_ROOT, p))) problems.push(`line ${s.line}: ${src} does not exist`);
          else if (ignored(p)) problems.push(`line ${s.line}: ${src} is excluded by .dockerignore`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it("COPY --from names an earlier stage", () => {
    const names = new Set<string>();
    for (const stage of parsed.stages) {
      for (const s of stage.steps.filter((x) => x.op === "COPY" && x.flags.from)) expect(names.has(s.flags.from!), `line ${s.line}`).toBe(true);
      names.add(stage.name);
    }
  });

  it(".dockerignore keeps local build output and dependencies out of the context", () => {
    for (const p of ["node_modules", "services/order/node_modules", "dist", ".git", ".env"]) expect(ignored(p), p).toBe(true);
    for (const p of ["package.json", "services/order/main.ts", "services/order/migrations/1_x.sql"]) expect(ignored(p), p).toBe(false);
  });
});

describe("Dockerfile replay in a clean directory", () => {
  let root = "";
  const stageDirs = new Map<string, { dir: string; workdir: string }>();
  let runtimeDir = "";

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "orderflow-docker-"));
    // Layer cache with Docker's semantics: a RUN step's result is reused when
    // everything before it in its stage (instructions and the content of the
    // files COPY'd) is unchanged; restored as hard links, so it is cheap. A
    // fresh clone (CI) replays every step. ORDERFLOW_DOCKER_NO_CACHE=1 forces that.
    const layerRoot = join(CACHE, "docker-layers");
    const useCache = process.env.ORDERFLOW_DOCKER_NO_CACHE !== "1";
    mkdirSync(layerRoot, { recursive: true });
    const usedLayers = new Set<string>();
    const stageHashes = new Map<string, string>();
    for (const stage of parsed.stages) {
      const dir = join(root, stage.name);
      // Pass 1: the layer key of every step (Docker's cache key: all earlier
      // instructions of the stage and the content of what they COPY).
      const layer = createHash("sha256").update(`FROM ${stage.image}\n`);
      const keys = stage.steps.map((s) => {
        layer.update(`${s.op} ${JSON.stringify(s.flags)} ${s.args}\n`);
        if (s.op === "COPY" && s.flags.from) layer.update(`from-stage ${stageHashes.get(s.flags.from) ?? ""}\n`);
        else if (s.op === "COPY") for (const src of splitArgs(s.args).slice(0, -1)) hashFiltered(join(REPO_ROOT, src), ignored, layer);
        return layer.copy().digest("hex").slice(0, 24);
      });
      stageHashes.set(stage.name, layer.digest("hex"));
      // The newest cached RUN layer holds everything before it: start from there.
      let resumeAfter = -1;
      if (useCache) stage.steps.forEach((s, i) => {
        if (s.op === "RUN" && existsSync(join(layerRoot, keys[i]!, ".complete"))) resumeAfter = i;
      });
      if (resumeAfter >= 0) {
        hardlinkCopy(join(layerRoot, keys[resumeAfter]!, "tree"), dir);
        usedLayers.add(keys[resumeAfter]!);
        console.log(`stage ${stage.name}: reused the cached layer of line ${stage.steps[resumeAfter]!.line} (inputs unchanged)`);
      } else {
        mkdirSync(dir, { recursive: true });
      }
      let workdir = "/";
      // prefer-offline: reuse the local npm cache instead of revalidating every package.
      const env: Record<string, string> = { ...(process.env as Record<string, string>), npm_config_prefer_offline: "true" };
      stage.steps.forEach((s, i) => {
        if (s.op === "WORKDIR") workdir = s.args;
        else if (s.op === "ENV") {
          for (const m of s.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) env[m[1]!] = m[2]!.replace(/^"|"$/g, "");
        }
        if (i <= resumeAfter) return;
        if (s.op === "COPY") {
          const parts = splitArgs(s.args);
          const dest = parts.at(-1)!;
          for (const src of parts.slice(0, -1)) {
            if (s.flags.from) {
              const st = stageDirs.get(s.flags.from);
              if (!st) throw new Error(`line ${s.line}: unknown stage ${s.flags.from}`);
              // Absolute paths inside the stage are under its WORKDIR.
              const rel = src.startsWith("/") ? relative(st.workdir, src) : src;
              if (rel.startsWith("..")) throw new Error(`line ${s.line}: ${src} is outside WORKDIR ${st.workdir}; the replay maps WORKDIR only`);
              const from = join(st.dir, rel);
              if (!existsSync(from)) throw new Error(`Dockerfile line ${s.line}: COPY --from=${s.flags.from} ${src}: not produced by that stage`);
              const target = dest.endsWith("/") && parts.length > 2 ? join(dir, dest, src.split("/").at(-1)!) : join(dir, dest);
              cpSync(from, target, { recursive: true });
            } else {
              const target = dest.endsWith("/") || parts.length > 2 ? join(dir, dest, src.replace(/\/$/, "").split("/").at(-1)!) : join(dir, dest);
              copyFiltered(join(REPO_ROOT, src), target, ignored);
            }
          }
        } else if (installsDebianPackages(s)) {
          // The image's root filesystem is not here: "Dockerfile (static)" checks this step instead.
          console.log(`not replayed: stage ${stage.name} line ${s.line} installs Debian packages`);
        } else if (s.op === "RUN") {
          const started = Date.now();
          // Lower priority: under `npm test` this runs beside the end-to-end tests.
          const r = spawnSync("nice", ["-n", "10", "sh", "-ec", s.args], { cwd: dir, env, encoding: "utf8", maxBuffer: 64 << 20 });
          if (r.status !== 0) {
            throw new Error(`Dockerfile line ${s.line} (stage ${stage.name}) failed when replayed: RUN ${s.args}\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
          }
          console.log(`replayed stage ${stage.name} line ${s.line} in ${((Date.now() - started) / 1000).toFixed(1)}s: RUN ${s.args.slice(0, 60)}`);
          // Keep only expensive layers (dependency installs): saving a cheap
          // one costs more than re-running it.
          if (useCache && Date.now() - started > 5_000) {
            const cached = join(layerRoot, keys[i]!);
            rmSync(cached, { recursive: true, force: true });
            mkdirSync(cached, { recursive: true });
            hardlinkCopy(dir, join(cached, "tree"));
            writeFileSync(join(cached, ".complete"), "");
            usedLayers.add(keys[i]!);
          }
        }
      });
      stageDirs.set(stage.name, { dir, workdir });
    }
    runtimeDir = stageDirs.get(parsed.stages.at(-1)!.name)!.dir;
    // Drop layers this Dockerfile no longer produces.
    for (const k of readdirSync(layerRoot)) if (!usedLayers.has(k)) rmSync(join(layerRoot, k), { recursive: true, force: true });
  }, 300_000);

  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it("runtime stage has every service's entrypoint and its migrations", () => {
    for (const s of SERVICES) expect(existsSync(join(runtimeDir, "dist/services", s, "main.js")), `dist/services/${s}/main.js`).toBe(true);
    for (const s of SERVICES) {
      const src = join(REPO_ROOT, "services", s, "migrations");
      if (!existsSync(src)) continue;
      const want = readdirSync(src).filter((f) => f.endsWith(".sql"));
      expect(want.length).toBeGreaterThan(0);
      for (const f of want) expect(existsSync(join(runtimeDir, "services", s, "migrations", f)), `services/${s}/migrations/${f}`).toBe(true);
    }
    expect(existsSync(join(runtimeDir, "package.json")), "package.json (the code finds migrations from it)").toBe(true);
    const cmd = splitArgs(parsed.stages.at(-1)!.steps.find((x) => x.op === "CMD")!.args);
    expect(existsSync(join(runtimeDir, cmd[0]!)), `CMD ${cmd[0]}`).toBe(true);
  });

  it("runtime node_modules has production dependencies only", () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    const lock = JSON.parse(readFileSync(join(REPO_ROOT, "package-lock.json"), "utf8")) as { packages: Record<string, { dev?: boolean }> };
    for (const d of Object.keys(pkg.dependencies)) expect(existsSync(join(runtimeDir, "node_modules", d)), d).toBe(true);
    // Packages the lock marks dev-only (not also needed by a production dependency).
    const devOnly = Object.entries(lock.packages)
      .filter(([k, v]) => v.dev === true && /^node_modules\/(@[^/]+\/)?[^/]+$/.test(k))
      .map(([k]) => k.slice("node_modules/".length));
    expect(devOnly).toContain("vitest");
    for (const d of devOnly) expect(existsSync(join(runtimeDir, "node_modules", d, "package.json")), `dev-only package ${d} in runtime image`).toBe(false);
    expect(existsSync(join(runtimeDir, "src")), "no sources").toBe(false);
    expect(existsSync(join(runtimeDir, "services/order/main.ts")), "no TypeScript sources").toBe(false);
  });

  it("every package the compiled code imports is in the runtime node_modules", () => {
    const missing = new Set<string>();
    const builtins = new Set(builtinModules);
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith(".js")) {
          const text = readFileSync(p, "utf8");
          for (const m of text.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*["']([^"'./][^"']*)["']|import\(\s*["']([^"'./][^"']*)["']\s*\)|^import\s+["']([^"'./][^"']*)["']/gm)) {
            const spec = m[1] ?? m[2] ?? m[3]!;
            if (spec.startsWith("node:") || builtins.has(spec.split("/")[0]!)) continue;
            const name = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!;
            if (!existsSync(join(runtimeDir, "node_modules", name))) missing.add(`${name} (${relative(runtimeDir, p)})`);
          }
        }
      }
    };
    walk(join(runtimeDir, "dist"));
    expect([...missing]).toEqual([]);
  });
});
