/** Test databases are named `${testDatabasePrefix}<pid>_<n>_<stamp>`; the pid tells whether their run is gone. */
export const testDatabasePrefix = "orderflow_test_";

/** The pid in a test database's name, if it is one. */
export function testDatabasePid(name: string): number | undefined {
  if (!name.startsWith(testDatabasePrefix)) return undefined;
  const pid = Number(name.slice(testDatabasePrefix.length).split("_")[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
