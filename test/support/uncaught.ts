/**
 * The uncaught exceptions raised while `run` runs and `settleMs` after it (deferred errors land
 * late); a listener of its own keeps them from ending the test process.
 */
export async function uncaughtDuring(run: () => Promise<void>, settleMs = 20): Promise<unknown[]> {
  const uncaught: unknown[] = [];
  const collect = (error: unknown): void => void uncaught.push(error);
  process.on("uncaughtException", collect);
  try {
    await run();
    await new Promise((resolve) => setTimeout(resolve, settleMs));
  } finally {
    process.off("uncaughtException", collect);
  }
  return uncaught;
}
