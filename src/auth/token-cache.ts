/**
 * Verified-token cache (SPEC §3): a bounded LRU from SHA-256(token) to its Principal. The raw token
 * is never stored. An entry never outlives the token's `exp` (or an earlier bound the verifier
 * gives, such as `iat + max_token_age_s`), measured with the injected clock.
 *
 * @example
 *   const cache = createTokenCache({ maxEntries: 100_000, clock: Date.now });
 *   cache.set(token, principal);            // ttl = principal.exp - now; not stored once expired
 *   cache.get(token);                        // Principal | undefined
 */
import { LRUCache } from 'lru-cache';
import type { Clock, Principal } from '../types.js';
import { sha256 } from '../hash.js';

export interface TokenCache {
  /** false when `maxEntries` is 0: `get` always misses and `set` does nothing. */
  readonly enabled: boolean;
  /** Entries currently held (expired ones may linger until touched or evicted). */
  readonly size: number;
  /** The cached Principal, unless absent or expired by the clock. */
  get(token: string): Principal | undefined;
  /**
   * Caches a verified token's Principal until `principal.exp` or `expiresAtMs` (epoch ms),
   * whichever is earlier; without either it lives until evicted. Does nothing when already expired.
   */
  set(token: string, principal: Principal, expiresAtMs?: number): void;
  clear(): void;
}

interface Entry {
  principal: Principal;
  /** Epoch ms after which the entry must not be used (Infinity = no bound). */
  expiresAtMs: number;
}

/** Builds the cache. `maxEntries` 0 disables it. */
export function createTokenCache(opts: { maxEntries: number; clock: Clock }): TokenCache {
  const { maxEntries, clock } = opts;
  if (!Number.isInteger(maxEntries) || maxEntries < 0) {
    throw new TypeError('"maxEntries" must be a non-negative integer');
  }
  if (maxEntries === 0) {
    return { enabled: false, size: 0, get: () => undefined, set: () => {}, clear: () => {} };
  }
  const lru = new LRUCache<string, Entry>({
    max: maxEntries,
    // lru-cache measures ttl with `perf.now()`; give it our clock so both agree, and no
    // resolution caching so a moved test clock is seen at once.
    perf: { now: clock },
    ttlResolution: 0,
  });
  const keyOf = (token: string) => sha256(token, 'base64url');

  return {
    enabled: true,
    get size() {
      return lru.size;
    },
    get(token) {
      const key = keyOf(token);
      const e = lru.get(key);
      if (!e) return undefined;
      // lru-cache's ttl is the first guard; this one holds even if its timing differs by a tick.
      if (clock() >= e.expiresAtMs) {
        lru.delete(key);
        return undefined;
      }
      return e.principal;
    },
    set(token, principal, expiresAtMs) {
      const bound = Math.min(principal.exp !== undefined ? principal.exp * 1000 : Infinity, expiresAtMs ?? Infinity);
      const ttl = bound - clock();
      if (ttl <= 0) return;
      const entry: Entry = { principal, expiresAtMs: bound };
      if (Number.isFinite(ttl)) lru.set(keyOf(token), entry, { ttl: Math.ceil(ttl) });
      else lru.set(keyOf(token), entry);
    },
    clear() {
      lru.clear();
    },
  };
}
