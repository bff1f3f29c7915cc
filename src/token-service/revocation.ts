/**
 * The denylist (SPEC §9 "Sessions and revocation"): the jtis revoked in the token store, held in
 * memory on every replica so the request path checks a revoked token with one `Map.has` — after
 * verification, cached or not — instead of a database round trip per request.
 *
 * The store numbers every revocation with a sequence (`seq`, migration 2 in store/sql.ts) and
 * `store.revocationsAfter(cursor, …)` pages through the log after a cursor. A revocation reaches
 * this replica within `maxLagMs` by:
 *   - `add(jti, expiresAt)`: a revocation made by this replica is in its own denylist at once;
 *   - push, `store.watchRevocations`: PostgreSQL LISTEN/NOTIFY, or in-process events for the
 *     embedded store;
 *   - a full read, `revocationsAfter(0, …)` page by page: at start, and on PostgreSQL each time
 *     the listener is LISTENing (`onListening`: the first time and after every reconnect);
 *   - the poll, every `maxLagMs / 2` (Kong polls every 5 s; we poll inside the lag bound).
 *
 * Why that is complete on PostgreSQL. NOTIFY is sent inside the revoking transaction and delivered
 * at commit to every session LISTENing then; it has no replay. So a revocation that commits while
 * our listener LISTENs is pushed, and one that commits while it does not (not yet connected, or
 * down) is in the table when the full read that follows the next LISTEN starts — the listener
 * retries forever (100 ms … 5 s backoff), and the read's first page runs after the LISTEN, so a
 * commit during the paging is pushed. Push + a full read on every LISTEN lose nothing, whatever
 * the order in which transactions commit. At start the full read waits (up to `listenWaitMs`,
 * 2 s) for the first LISTEN, so normally there is one full read, not two.
 *
 * The poll is there for the lag bound when the push is down (a listener reconnecting, or dead
 * without knowing it — TCP keepalive takes minutes), for NOTIFY payloads too big to send (store/
 * postgres.ts) and to tell /readyz the store answers. It reads what is new, `seq > cursor`, each
 * row once, `pageSize` rows a query; so a burst of 100 000 revocations is read once, in 100
 * queries, not once per poll as the old 60 s time window did. seq is taken when a row is written,
 * not at commit: a transaction that took seq 100 can commit after one that took 101 was read, and
 * `seq > 101` never returns it (the commit-order hole). So each poll also re-reads the last
 * `rereadSeqs` (1000) seqs below the cursor, of those revoked since its previous sync minus
 * `syncMarginMs` (60 s; it also absorbs clock skew: the revoking replica writes `revokedAt` with its
 * own clock): a query of at most 1000 rows whatever the burst, and none once a minute has passed
 * without revocations. A late committer escapes that only if it held its seq while more than 1000
 * later seqs were taken and read, or ran longer than the margin — then NOTIFY (listener up) or the
 * full read at the next LISTEN (listener down) still brings it; only the poll's lag bound is lost
 * for it.
 *
 * The embedded store's push is complete by construction: one process holds the directory, every
 * revocation goes through it (the CLI's through the control socket) and PGlite runs one
 * transaction at a time. So there the poll reads no rows at all: it is a `store.ping()`, for
 * readiness and the error count, and the full read happens once, at start, after subscribing (so
 * nothing committed during it is missed). That matters because PGlite runs on this thread.
 *
 * Measured with scripts/denylist-burst.mjs (100 000 jtis revoked with store.revoke in batches of
 * 10 000, a poll every 500 ms, then 10 s watched; 2 shared cores; event-loop delay from
 * perf_hooks.monitorEventLoopDelay at 5 ms resolution):
 *   - embedded, old 60 s window: every poll re-read the 100 000 rows, 0.75–1.2 s each on this
 *     thread; reads filled 10.1–10.2 s of the 10 s; delay p50 860–880 ms, max 1.0–1.2 s.
 *     Now: the polls read 0 rows (20 pings, ~20 ms in all); delay p99 6–8 ms, max 8–20 ms, as
 *     idle. (The revoking calls themselves still hold the thread ~250 ms per 10 000 rows.)
 *   - PostgreSQL, old: 2 000 000 rows in 10 s, 3.7–4.8 s of parsing, stalls up to 102–174 ms.
 *     Now: the 100 000 read once, then at most 1000 rows a poll for the margin's minute (20 000 in
 *     10 s), 160–210 ms of reads in all; stalls ≤ 9–31 ms.
 *
 * An entry lives only until its token's `exp` (a purge every `purgeEveryMs` drops expired ones,
 * so the map stays bounded by the tokens still alive); its size is `scopegate_denylist_entries`,
 * read at scrape time, and the first full sync logs `denylist: synced N live revocations`. A
 * replica that cannot reach the store keeps its last denylist, answers `ready() === false` (for
 * /readyz) and counts each failed sync as `scopegate_store_errors_total{op="revocation_sync"}`;
 * the next successful poll continues from its cursor, however long the outage was.
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
import { MAX_REVOCATION_PAGE, type RevocationRecord, type TokenStore } from './store.js';

export interface DenylistOptions {
  clock: Clock;
  /** `token_service.revocation.max_lag_ms`: the poll runs every maxLagMs / 2 (integer ≥ 10). */
  maxLagMs: number;
  logger: Pick<Logger, 'warn' | 'info' | 'debug'>;
  /** `denylistEntries` (scopegate_denylist_entries) is optional: without it no gauge is fed. */
  metrics: Pick<Metrics, 'storeErrors'> & Partial<Pick<Metrics, 'denylistEntries'>>;
  /** The re-read keeps entries revoked since the previous sync minus this, ms (default 60 000). */
  syncMarginMs?: number | undefined;
  /** How many seqs below the cursor each poll re-reads (default 1000, at most 10 000; 0: none). */
  rereadSeqs?: number | undefined;
  /** Rows per query when reading new entries or everything (default 1000, at most 10 000). */
  pageSize?: number | undefined;
  /** At start on PostgreSQL, how long the full read waits for the first LISTEN, ms (default 2000). */
  listenWaitMs?: number | undefined;
  /** How often expired entries are dropped, ms (default 30 000). */
  purgeEveryMs?: number | undefined;
}

export interface Denylist {
  /** Synchronous: is this jti revoked (and its token not yet expired when last purged)? */
  has(jti: string): boolean;
  /** Adds a revocation made here, immediately; kept until `expiresAt` (epoch ms). */
  add(jti: string, expiresAt: number): void;
  /** Subscribes, does the first full sync, then polls. Resolves after the first sync attempt, never rejects. */
  start(): Promise<void>;
  /** One sync now (tests, and the re-sync path); resolves true when it succeeded. */
  sync(): Promise<boolean>;
  /** Started, and the last sync with the store succeeded. */
  ready(): boolean;
  /** Entries held. */
  readonly size: number;
  /**
   * Changes whenever an entry is added, and differs between any two denylists (a process-wide
   * counter): a caller that found a token not revoked at version v may skip the lookup while
   * version() is still v (the decision does, for cached tokens: a 100 000-entry Map miss per
   * request was 1 % of the Node door's CPU in the rig's profile, this is a property read).
   */
  version(): number;
  close(): Promise<void>;
}

/** Shared by every denylist in the process, so that no two denylist states have the same version. */
let versions = 0;

function intOption(name: string, v: number | undefined, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = v ?? def;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new TypeError(`createDenylist: ${name} must be an integer from ${min}${max < Number.MAX_SAFE_INTEGER ? ` to ${max}` : ' up'}, got ${String(v)}`);
  }
  return n;
}

/** Lets timers and sockets run between two pages (PGlite answers on this thread, without I/O in between). */
const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));

export function createDenylist(store: TokenStore, opts: DenylistOptions): Denylist {
  if (!store || typeof store.revocationsAfter !== 'function' || typeof store.ping !== 'function') {
    throw new TypeError('createDenylist: store must be a TokenStore');
  }
  if (typeof opts.clock !== 'function') throw new TypeError('createDenylist: clock must be a function');
  const maxLagMs = intOption('maxLagMs', opts.maxLagMs, 1000, 10);
  const marginMs = intOption('syncMarginMs', opts.syncMarginMs, 60_000, 0);
  const rereadSeqs = intOption('rereadSeqs', opts.rereadSeqs, 1000, 0, MAX_REVOCATION_PAGE);
  const pageSize = intOption('pageSize', opts.pageSize, 1000, 1, MAX_REVOCATION_PAGE);
  const listenWaitMs = intOption('listenWaitMs', opts.listenWaitMs, 2000, 0);
  const purgeEveryMs = intOption('purgeEveryMs', opts.purgeEveryMs, 30_000, 1);
  const pollEveryMs = Math.max(5, Math.floor(maxLagMs / 2));
  const { clock, logger, metrics } = opts;
  /** The embedded store pushes every revocation (see the header): its poll reads nothing. */
  const pushComplete = store.kind === 'embedded' && typeof store.watchRevocations === 'function';

  /** jti → expiresAt (epoch ms). */
  const entries = new Map<string, number>();
  let version = ++versions;
  /** The highest seq read from the store's log. */
  let cursor = 0;
  /** Local time at which the last successful sync started; the re-read's time bound. */
  let watermark: number | undefined;
  /** The next sync reads everything: at start, and after each (re-)LISTEN of the push. */
  let needFull = true;
  let fullLogged = false;
  let lastOk = false;
  let started = false;
  /** start() has begun its first sync: from now on a LISTEN triggers a sync itself. */
  let syncBegun = false;
  let closed = false;
  let inflight: Promise<boolean> | undefined;
  /** A sync was asked for while one ran (a LISTEN during a poll): run one more after it. */
  let again = false;
  let pollTimer: NodeJS.Timeout | undefined;
  let purgeTimer: NodeJS.Timeout | undefined;
  let unwatch: (() => void) | undefined;
  let untrack: (() => void) | undefined;
  let listened = false;
  let endListenWait: (() => void) | undefined;
  let failures = 0;

  function put(jti: string, expiresAt: number, now: number): void {
    if (typeof jti !== 'string' || jti === '' || !Number.isFinite(expiresAt) || expiresAt <= now) return;
    const cur = entries.get(jti);
    if (cur === undefined || cur < expiresAt) {
      entries.set(jti, expiresAt);
      version = ++versions;
    }
  }

  function putAll(recs: readonly RevocationRecord[], now: number): void {
    for (const r of recs) put(r.jti, r.expiresAt, now);
  }

  function purge(): void {
    const now = clock();
    for (const [jti, exp] of entries) if (exp <= now) entries.delete(jti);
  }

  /** Pages through the log after `after`, advancing the cursor page by page; returns the rows read. */
  async function readAfter(after: number, now: number): Promise<number> {
    let at = after;
    let rows = 0;
    for (;;) {
      const page = await store.revocationsAfter(at, now, { limit: pageSize });
      if (closed) return rows;
      putAll(page.records, now);
      rows += page.records.length;
      at = Math.max(at, page.cursor);
      cursor = Math.max(cursor, at);
      if (page.done) return rows;
      await yieldToLoop();
      if (closed) return rows;
    }
  }

  async function syncOnce(): Promise<boolean> {
    const startedAt = clock();
    const t0 = performance.now();
    const full = needFull;
    needFull = false; // a LISTEN from now on asks for another full read
    let rows = 0;
    try {
      if (full) rows = await readAfter(0, startedAt);
      else if (pushComplete) await store.ping();
      else {
        if (rereadSeqs > 0 && cursor > 0 && watermark !== undefined) {
          // The commit-order hole: a bounded window below the cursor, recent revocations only.
          const page = await store.revocationsAfter(Math.max(0, cursor - rereadSeqs), startedAt, {
            limit: rereadSeqs,
            throughSeq: cursor,
            minRevokedAt: Math.max(0, watermark - marginMs),
          });
          if (closed) return false;
          putAll(page.records, startedAt);
          rows += page.records.length;
        }
        rows += await readAfter(cursor, startedAt);
      }
    } catch (e) {
      if (full) needFull = true;
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
    if (!lastOk && failures > 0) logger.info({ event: 'revocation_sync_recovered', after_failures: failures }, 'denylist: token store reachable again; revocations re-synced');
    failures = 0;
    watermark = startedAt;
    lastOk = true;
    if (full) {
      const fields = { event: 'denylist_synced', entries: entries.size, rows, ms: Math.round(performance.now() - t0) };
      if (!fullLogged) logger.info(fields, `denylist: synced ${entries.size} live revocations`);
      else logger.debug(fields, `denylist: re-synced ${entries.size} live revocations (the push listener is LISTENing again)`);
      fullLogged = true;
    }
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

  /** The push listener is LISTENing (again): what committed before is read from the table. */
  function onListening(): void {
    if (closed) return;
    needFull = true;
    listened = true;
    endListenWait?.();
    if (syncBegun) void sync();
  }

  function waitForListening(ms: number): Promise<void> {
    if (listened || ms === 0) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => endListenWait?.(), ms);
      endListenWait = () => {
        clearTimeout(timer);
        endListenWait = undefined;
        resolve();
      };
    });
  }

  return {
    has(jti) {
      return entries.has(jti);
    },
    version: () => version,
    add(jti, expiresAt) {
      put(jti, expiresAt, clock());
    },
    sync,
    async start() {
      if (started) throw new TypeError('createDenylist: start() called twice');
      started = true;
      untrack = metrics.denylistEntries?.track(() => entries.size);
      // Subscribe first: what commits during the full read is pushed (embedded: from this call on;
      // PostgreSQL: from its LISTEN on, which the full read waits for).
      if (store.watchRevocations) {
        unwatch = store.watchRevocations((r) => put(r.jti, r.expiresAt, clock()), onListening);
        if (!pushComplete) await waitForListening(listenWaitMs);
      }
      if (closed) return;
      syncBegun = true;
      await sync();
      if (closed) return;
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
      endListenWait?.();
      clearInterval(pollTimer);
      clearInterval(purgeTimer);
      unwatch?.();
      untrack?.();
      await inflight?.catch(() => false);
    },
  };
}
