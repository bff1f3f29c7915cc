/**
 * The store behind rate limiting (SPEC §4): one call per window per request. Two implementations,
 * one contract test (test/contract/rate-limit-store.test.ts): memory-store.ts (synchronous,
 * bounded LRU) and redis-store.ts (one atomic Lua script per hit; single node or Cluster).
 */
export interface RateLimitStore {
  readonly kind: 'memory' | 'redis';
  /**
   * Adds `consume ? 1 : 0` to the counter of (`key`, window starting at `windowStartMs`) and
   * returns the counter after the add. The store expires the counter after `windowMs`.
   * A local store answers synchronously (no promise, no microtask per request); a remote one
   * returns a promise.
   */
  increment(key: string, windowStartMs: number, windowMs: number, consume: boolean): number | Promise<number>;
  /** Resolves when the store answers (a cluster: when every slot is served); rejects when it does not. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
