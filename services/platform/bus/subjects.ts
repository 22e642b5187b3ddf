/**
 * Whether every subject `filter` matches is one `pattern` matches too (NATS wildcards: `*` one
 * token, `>` one or more trailing tokens): e.g. `inventory.cmd.>` is within `inventory.>` and not
 * within `inventory.evt.>`.
 */
export function subjectWithin(filter: string, pattern: string): boolean {
  const f = filter.split(".");
  const p = pattern.split(".");
  for (let i = 0; i < p.length; i++) {
    const token = p[i];
    if (token === ">") return i < f.length;
    const own = f[i];
    if (own === undefined || own === ">") return false;
    if (token !== "*" && (own === "*" || own !== token)) return false;
  }
  return f.length === p.length;
}
