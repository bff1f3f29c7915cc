/**
 * The denylist (SPEC §9 "Sessions and revocation"): the jtis revoked in the token store, held in
 * memory on every replica so the request path checks a revoked token with one `Map.has` — after
 * verification, cached or not — instead of a database round trip per request.
 *
 * How a revocation reaches this replica within `maxLagMs`:
 *   - `add(jti, expiresAt)`: a revocation made by this replica is in its own denylist at once;
 *   - push: `store.watchRevocations` (PostgreSQL LISTEN/NOTIFY; in-process events for the embedded
 *     store), where the backend has it; NOTIFY has no replay, so every reconnect re-syncs;
 *   - poll, the safety net: `store.revokedSince(watermark − syncMarginMs, now)` every
 *     `maxLagMs / 2` (Kong polls every 5 s; we poll inside the lag bound). The watermark is the
 *     local time at which the last successful sync started; the margin (default 60 s) absorbs
 *     clock skew between the revoking replica (it writes `revoked_at` with its own clock) and
 *     this one, so each poll re-reads about a minute of revocations — a few rows.
 * `start()` does the first, full sync (`revokedSince(0, now)`), then subscribes and polls.
 *
 * An entry lives only until its token's `exp` (a purge every `purgeEveryMs` drops expired ones,
 * so the map stays bounded by the tokens still alive). A replica that cannot reach the store
 * keeps its last denylist, answers `ready() === false` (for /readyz) and counts each failed sync
 * as `scopegate_store_errors_total{op="revocation_sync"}`; the next successful poll catches up
 * from its watermark, however long the outage was.
 *
 * @example
 *   const denylist = createDenylist(store, { clock: Date.now, maxLagMs: 1000, logger, metrics });
 *   await denylist.start();                 // full sync; never rejects (not ready until it works)
 *   if (principal.tokenId !== undefined && denylist.has(principal.tokenId)) deny('token_revoked');
 *   denylist.add('at_x', exp * 1000);       // after store.revoke on this replica
 *   denylist.ready();                       // false while the store is unreachable
 *   await denylist.close();
 */
import { clip } from '../clip.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { Clock } from '../types.js';
import type { RevocationRecord, TokenStore } from './store.js';

export interface DenylistOptions {
  clock: Clock;
  /** `token_service.revocation.max_lag_ms`: the poll runs every maxLagMs / 2 (integer ≥ 10). */
  maxLagMs: number;
  logger: Pick<Logger, 'warn' | 'info' | 'debug'>;
  metrics: Pick<Metrics, 'storeErrors'>;
  /** How far before the watermark each poll reads, ms (default 60 000; clock skew between replicas). */
  syncMarginMs?: number | undefined;
  /** How often expired entries are dropped, ms (default 30 000). */
  purgeEveryMs?: number | undefined;
}

export interface Denylist {
  /** Synchronous: is this jti revoked (and its token not yet expired when last purged)? */
  has(jti: string): boolean;
  /** Adds a revocation made here, immediately; kept until `expiresAt` (epoch ms). */
  add(jti: string, expiresAt: number): void;
  /** First full sync, then push + poll. Resolves after the first sync attempt, never rejects. */
  start(): Promise<void>;
  /** One sync now (tests, and the reconnect path); resolves true when it succeeded. */
  sync(): Promise<boolean>;
  /** Started, and the last sync with the store succeeded. */
  ready(): boolean;
  /** Entries held. */
  readonly size: number;
  close(): Promise<void>;
}

function intOption(name: string, v: number | undefined, def: number, min: number): number {
  const n = v ?? def;
  if (!Number.isSafeInteger(n) || n < min) throw new TypeError(`createDenylist: ${name} must be an integer ≥ ${min}, got ${String(v)}`);
  return n;
}

export function createDenylist(store: TokenStore, opts: DenylistOptions): Denylist {
  if (!store || typeof store.revokedSince !== 'function') throw new TypeError('createDenylist: store must be a TokenStore');
  if (typeof opts.clock !== 'function') throw new TypeError('createDenylist: clock must be a function');
  const maxLagMs = intOption('maxLagMs', opts.maxLagMs, 1000, 10);
  const marginMs = intOption('syncMarginMs', opts.syncMarginMs, 60_000, 0);
  const purgeEveryMs = intOption('purgeEveryMs', opts.purgeEveryMs, 30_000, 1);
  const pollEveryMs = Math.max(5, Math.floor(maxLagMs / 2));
  const { clock, logger, metrics } = opts;

  /** jti → expiresAt (epoch ms). */
  const entries = new Map<string, number>();
  /** Local time at which the last successful sync started; undefined = next sync is a full one. */
  let watermark: number | undefined;
  let lastOk = false;
  let started = false;
  let closed = false;
  let inflight: Promise<boolean> | undefined;
  /** A sync was asked for while one ran (a reconnect during a poll): run one more after it. */
  let again = false;
  let pollTimer: NodeJS.Timeout | undefined;
  let purgeTimer: NodeJS.Timeout | undefined;
  let unwatch: (() => void) | undefined;
  let failures = 0;

  function put(jti: string, expiresAt: number, now: number): void {
    if (typeof jti !== 'string' || jti === '' || !Number.isFinite(expiresAt) || expiresAt <= now) return;
    const cur = entries.get(jti);
    if (cur === undefined || cur < expiresAt) entries.set(jti, expiresAt);
  }

  function purge(): void {
    const now = clock();
    for (const [jti, exp] of entries) if (exp <= now) entries.delete(jti);
  }

  async function syncOnce(): Promise<boolean> {
    const startedAt = clock();
    const since = watermark === undefined ? 0 : Math.max(0, watermark - marginMs);
    let rows: RevocationRecord[];
    try {
      rows = await store.revokedSince(since, startedAt);
    } catch (e) {
      metrics.storeErrors.inc({ op: 'revocation_sync' });
      // Log the first failure of an outage and then every 100th, not every poll.
      if (failures++ % 100 === 0) {
        logger.warn(
          { event: 'revocation_sync_failed', failures, err: clip(e instanceof Error ? e.message : String(e), 200) },
          'denylist: cannot sync revocations from the token store; keeping the last denylist (not ready)',
        );
      }
      lastOk = false;
      return false;
    }
    if (closed) return false;
    for (const r of rows) put(r.jti, r.expiresAt, startedAt);
    if (!lastOk && failures > 0) logger.info({ event: 'revocation_sync_recovered', after_failures: failures }, 'denylist: token store reachable again; revocations re-synced');
    failures = 0;
    watermark = startedAt;
    lastOk = true;
    return true;
  }

  function sync(): Promise<boolean> {
    if (closed) return Promise.resolve(false);
    if (inflight) {
      again = true;
      return inflight;
    }
    inflight = (async () => {
      let ok: boolean;
      do {
        again = false;
        ok = await syncOnce();
      } while (again && !closed);
      return ok;
    })().finally(() => {
      inflight = undefined;
    });
    return inflight;
  }

  return {
    has(jti) {
      return entries.has(jti);
    },
    add(jti, expiresAt) {
      put(jti, expiresAt, clock());
    },
    sync,
    async start() {
      if (started) throw new TypeError('createDenylist: start() called twice');
      started = true;
      await sync();
      if (closed) return;
      if (store.watchRevocations) {
        unwatch = store.watchRevocations(
          (r) => put(r.jti, r.expiresAt, clock()),
          () => void sync(),
        );
      }
      pollTimer = setInterval(() => void sync(), pollEveryMs);
      pollTimer.unref();
      purgeTimer = setInterval(purge, purgeEveryMs);
      purgeTimer.unref();
    },
    ready() {
      return started && lastOk && !closed;
    },
    get size() {
      return entries.size;
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(pollTimer);
      clearInterval(purgeTimer);
      unwatch?.();
      await inflight?.catch(() => false);
    },
  };
}
