/**
 * In-process rate-limit store: one bounded lru-cache entry per limit key holding the current
 * window's start and count. Memory stays bounded by `maxKeys` however many distinct tokens
 * arrive (least recently used keys go first). Expiry is decided by the injected clock only.
 *
 * @example
 *   const store = createMemoryStore({ maxKeys: 100_000, clock: systemClock });
 *   const w = 300_000, start = Math.floor(Date.now() / w) * w;
 *   const count = await store.increment('jti:local:abc', start, w, true); // 1, 2, ...
 */
import { LRUCache } from 'lru-cache';
import type { Clock, RateLimitStore } from '../types.js';

export interface MemoryStoreOptions {
  /** Distinct limit keys kept at most (a positive integer). */
  maxKeys: number;
  /** Epoch-ms clock used for every expiry decision. */
  clock: Clock;
}

/** The memory store, plus read-only introspection used by tests and diagnostics. */
export interface MemoryStore extends RateLimitStore {
  readonly kind: 'memory';
  /** Entries currently held (never more than `maxKeys`). */
  readonly size: number;
  /** Milliseconds until `key`'s entry expires by the injected clock; 0 when absent or expired. */
  remainingTtlMs(key: string): number;
}

interface Entry {
  windowStartMs: number;
  count: number;
  /** When the entry stops counting, by the injected clock: its window's end (at least 1 ms on). */
  endMs: number;
}

/**
 * Creates the bounded in-memory store. `increment` answers synchronously (a number, no promise).
 *
 * @example
 *   const store = createMemoryStore({ maxKeys: 100, clock: () => frozenNow });
 */
export function createMemoryStore(opts: MemoryStoreOptions): MemoryStore {
  if (!Number.isInteger(opts.maxKeys) || opts.maxKeys < 1) {
    throw new TypeError(`createMemoryStore: maxKeys must be a positive integer, got ${String(opts.maxKeys)}`);
  }
  if (typeof opts.clock !== 'function') throw new TypeError('createMemoryStore: clock must be a function');
  const clock = opts.clock;
  // Recency bound only: each entry carries its own end, read with the injected clock (a frozen
  // test clock stays exact). lru-cache's ttl did the same with two clock reads and a stale check
  // per get on the request path.
  const cache = new LRUCache<string, Entry>({ max: opts.maxKeys });

  return {
    kind: 'memory',
    get size() {
      return cache.size;
    },
    remainingTtlMs(key) {
      const e = cache.peek(key);
      return e === undefined ? 0 : Math.max(0, e.endMs - clock());
    },
    increment(key, windowStartMs, windowMs, consume) {
      const add = consume ? 1 : 0;
      const prev = cache.get(key);
      const now = clock();
      if (prev !== undefined && now < prev.endMs && prev.windowStartMs >= windowStartMs) {
        // The current window (or, when the wall clock stepped back, a newer one: counting into it
        // means a clock step never grants extra budget). Counted in place: the entry already
        // expires at that window's end, and get() has refreshed its recency.
        prev.count += add;
        return prev.count;
      }
      // No entry, one that has ended, or one from an older window: that count is worth 0 now.
      if (add === 0) return 0; // reads create nothing
      // A window that has already ended keeps 1 ms.
      const left = Math.min(windowMs, Math.max(1, windowStartMs + windowMs - now));
      cache.set(key, { windowStartMs, count: add, endMs: now + left });
      return add;
    },
    ping() {
      return Promise.resolve();
    },
    // Nothing to release (no sockets, no timers). Deliberately keeps counting if a request that
    // started before a reload still calls in: closing must never break an in-flight request.
    close() {
      return Promise.resolve();
    },
  };
}
