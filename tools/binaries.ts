// Installed programs: where on PATH (and the usual sbin folders) a binary is.
import { accessSync, constants, existsSync, readdirSync, realpathSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function searchPath(): string[] {
  const fromEnv = (process.env["PATH"] ?? "").split(delimiter).filter(Boolean);
  return [...new Set([...fromEnv, "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin", "/opt/homebrew/bin"])];
}

/** The first executable of that name on PATH (and the usual sbin folders). */
export function findBinary(name: string, dirs: string[] = searchPath()): string | undefined {
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/** A folder holding both initdb and pg_ctl of one Postgres version. */
export function findPostgresBin(search?: string[]): string | undefined {
  const dirs: string[] = [];
  for (const dir of search ?? searchPath()) {
    const pgCtl = join(dir, "pg_ctl");
    if (isExecutable(pgCtl)) dirs.push(dirname(realpathSync(pgCtl)));
  }
  for (const base of search ? [] : ["/usr/lib/postgresql", "/usr/local/pgsql", "/opt/homebrew/opt"]) {
    if (!existsSync(base)) continue;
    const versions = readdirSync(base).sort((a, b) => Number.parseFloat(b.replace(/\D+/g, "")) - Number.parseFloat(a.replace(/\D+/g, "")));
    for (const version of versions) dirs.push(join(base, version, "bin"));
    dirs.push(join(base, "bin"));
  }
  return dirs.find((dir) => isExecutable(join(dir, "pg_ctl")) && isExecutable(join(dir, "initdb")));
}
