import DataLoader from "dataloader";

/**
 * A DataLoader that sends what was asked for in one turn of the event loop as one batch
 * (at most `maxBatchSize`): under load the round trips grow fewer instead of one per
 * call; at low load nothing waits. Nothing is cached: every load is read anew.
 */
export function batchPerTurn<K, V>(loadBatch: (keys: readonly K[]) => Promise<ArrayLike<V | Error>>, maxBatchSize: number): DataLoader<K, V> {
  return new DataLoader(loadBatch, { cache: false, maxBatchSize, batchScheduleFn: (callback) => setImmediate(callback) });
}
