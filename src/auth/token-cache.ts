/**
 * Verified-token cache (SPEC §3): an LRU from `tokenHash(token)` (SHA-256, base64url) to the
 * token's Principal, bounded by entries (`tokens.cache.max_entries`) and by bytes
 * (`tokens.cache.max_bytes`). The raw token is never stored: the cache only accepts a hash as its
 * key. An entry never outlives the token's `exp` (or an earlier bound the verifier gives, such as
 * `iat + max_token_age_s`), measured with the injected clock.
 *
 * Bytes are an estimate of what an entry keeps alive on the V8 heap (key, principal, its strings
 * and scope list, lru-cache's bookkeeping, and the identity headers the proxy caches per
 * principal), calibrated by measurement (see `estimateEntryBytes`); `bench/memory.mjs` checks it.
 *
 * @example
 *   const cache = createTokenCache({ maxEntries: 100_000, maxBytes: 64 * 1024 * 1024, clock: Date.now });
 *   const key = tokenHash(token);            // computed once per verification
 *   cache.set(key, principal);               // ttl = principal.exp - now; not stored once expired
 *   cache.get(key);                          // Principal | undefined
 *   cache.bytes;                             // estimated bytes held, ≤ maxBytes
 */
import { LRUCache } from 'lru-cache';
import type { Clock, Principal } from '../types.js';
import { sha256 } from '../hash.js';

export interface TokenCache {
  /** false when `maxEntries` is 0: `get` always misses and `set` does nothing. */
  readonly enabled: boolean;
  /** Entries currently held (expired ones may linger until touched or evicted). */
  readonly size: number;
  /** Estimated bytes the held entries retain (lru-cache's `calculatedSize`); never above `maxBytes`. */
  readonly bytes: number;
  /** The cached Principal for a `tokenHash`, unless absent or expired by the clock. */
  get(key: string): Principal | undefined;
  /**
   * Caches a verified token's Principal under its `tokenHash` until `principal.exp` or
   * `expiresAtMs` (epoch ms), whichever is earlier; without either it lives until evicted. Does
   * nothing when already expired, or when the one entry is larger than `maxBytes`.
   * Throws a TypeError when `key` is not a SHA-256 base64url hash (a raw token, by mistake).
   */
  set(key: string, principal: Principal, expiresAtMs?: number): void;
  clear(): void;
}

export interface TokenCacheOptions {
  /** Entries kept at most; 0 disables the cache. */
  maxEntries: number;
  /** Estimated bytes kept at most (see `estimateEntryBytes`), ≥ 1024. */
  maxBytes: number;
  clock: Clock;
}

/** The cache key and `Principal.tokenHash` of a token: SHA-256, base64url (43 characters). */
export function tokenHash(token: string): string {
  return sha256(token, 'base64url');
}

const HASH_KEY = /^[A-Za-z0-9_-]{43}$/;

interface Entry {
  principal: Principal;
  /** Epoch ms after which the entry must not be used (Infinity = no bound). */
  expiresAtMs: number;
}

/** Builds the cache; validates the options once (TypeError). `maxEntries` 0 disables it. */
export function createTokenCache(opts: TokenCacheOptions): TokenCache {
  const { maxEntries, maxBytes, clock } = opts;
  if (!Number.isInteger(maxEntries) || maxEntries < 0) {
    throw new TypeError('"maxEntries" must be a non-negative integer');
  }
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1024) {
    throw new TypeError('"maxBytes" must be an integer of at least 1024');
  }
  if (typeof clock !== 'function') throw new TypeError('"clock" must be a function returning epoch ms');
  if (maxEntries === 0) {
    return { enabled: false, size: 0, bytes: 0, get: () => undefined, set: () => {}, clear: () => {} };
  }
  const lru = new LRUCache<string, Entry>({
    max: maxEntries,
    maxSize: maxBytes,
    sizeCalculation: (entry, key) => estimateEntryBytes(key, entry.principal),
    // No lru-cache ttl: each entry carries its own expiry, checked on every get (below). An
    // expired entry would stay until read or evicted either way (no autopurge), and lru-cache's
    // ttl bookkeeping cost a clock call and a stale check per get on the request path.
  });

  return {
    enabled: true,
    get size() {
      return lru.size;
    },
    get bytes() {
      return lru.calculatedSize;
    },
    get(key) {
      const e = lru.get(key);
      if (!e) return undefined;
      if (clock() >= e.expiresAtMs) {
        lru.delete(key);
        return undefined;
      }
      return e.principal;
    },
    set(key, principal, expiresAtMs) {
      if (!HASH_KEY.test(key)) throw new TypeError('token cache key must be tokenHash(token), never the token itself');
      const bound = Math.min(principal.exp !== undefined ? principal.exp * 1000 : Infinity, expiresAtMs ?? Infinity);
      if (bound <= clock()) return;
      lru.set(key, { principal, expiresAtMs: bound });
    },
    clear() {
      lru.clear();
    },
  };
}

// ── size estimate ───────────────────────────────────────────────────────────────────────────
// V8 on 64-bit Node without pointer compression (Node's default): a sequential string is a
// 16-byte header plus 1 byte per character (Latin-1 only) or 2, rounded up to 8.
//
// ENTRY_OVERHEAD is measured, not derived: inserting 50k–300k principals of known strings and
// dividing heapUsed's growth (after gc) by the entries gave 445–500 bytes besides the strings on
// Node 20 x64 (bench/memory.mjs re-measures it end to end). It covers the Principal object, the
// Entry wrapper and its expiry number, lru-cache's Map slot and key/value array slots, the scope
// array, and the identity-header object (names and wrapper) that src/proxy/upstream-headers.ts
// caches per principal once it is forwarded. lru-cache's typed arrays (next/prev/ttl/size, ~40
// bytes per *allowed* entry, allocated once for max_entries) live outside the heap and outside
// this bound.
/** Per-entry bytes besides the strings (measured 445–500 on Node 20 x64, rounded up). */
export const ENTRY_OVERHEAD = 512;
/** Per scope: the array slot, and the scope's share of the joined X-Auth-Scopes value. */
const PER_SCOPE = 8 + 1;

/** Bytes a string of this content occupies on the V8 heap (header included). */
export function stringBytes(s: string): number {
  let wide = false;
  for (let i = 0; i < s.length; i++) {
    if (s.charCodeAt(i) > 0xff) {
      wide = true;
      break;
    }
  }
  return (16 + (wide ? 2 * s.length : s.length) + 7) & ~7;
}

/**
 * Estimated bytes one cache entry retains: `ENTRY_OVERHEAD`, the key, every string of the
 * principal (the issuer name and mapped values are often shared with the config; they are counted
 * anyway, so the estimate errs high), each scope, and the copies the proxy's identity headers
 * make (the joined scope list; non-ASCII values re-encoded).
 */
export function estimateEntryBytes(key: string, p: Principal): number {
  let n = ENTRY_OVERHEAD + stringBytes(key) + stringBytes(p.issuerName) + stringBytes(p.clientType);
  for (const v of [p.iss, p.subject, p.room, p.roomName, p.group, p.tokenId]) {
    if (v === undefined) continue;
    n += stringBytes(v);
    if (!ASCII.test(v)) n += stringBytes(v) * 2; // safeHeaderValue's UTF-8-as-Latin-1 copy
  }
  let joined = 0;
  for (const s of p.scopes) {
    n += stringBytes(s) + PER_SCOPE;
    joined += ASCII.test(s) ? s.length : s.length * 3; // its share of the joined header value (UTF-8 as Latin-1)
  }
  if (p.scopes.length > 0) n += 16 + joined;
  return n;
}

// eslint-disable-next-line no-control-regex
const ASCII = /^[\x00-\x7f]*$/;
