/** Test databases are named `${testDatabasePrefix}<pid>_<n>_<stamp>`; the pid tells whether their run is gone. */
export const testDatabasePrefix = "orderflow_test_";

/** A test system's throw-away folder (servers' data, logs) is `${testDataDirPrefix}<pid>-<random>` in the temp folder. */
export const testDataDirPrefix = "orderflow-test-";

/** The pid in a name that starts with `prefix` and then `<pid><separator>`, if it is one. */
function pidAfter(prefix: string, separator: string, name: string): number | undefined {
  if (!name.startsWith(prefix)) return undefined;
  const pid = Number(name.slice(prefix.length).split(separator)[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** The pid in a test database's name, if it is one. */
export const testDatabasePid = (name: string): number | undefined => pidAfter(testDatabasePrefix, "_", name);

/** The pid in a test system's folder name, if it is one. */
export const testDataDirPid = (name: string): number | undefined => pidAfter(testDataDirPrefix, "-", name);

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
