/**
 * The PostgreSQL token store (SPEC §9): several replicas share clients, tokens, keys and
 * revocations through one database. Queries go through a `pg` Pool; the schema (sql.ts) is
 * migrated at open under an advisory lock, so replicas starting together don't race.
 *
 * Revocations are pushed with LISTEN/NOTIFY: the revoking transaction NOTIFYs
 * `{"jti","expiresAt","revokedAt"}` (well under PostgreSQL's 8000-byte payload limit; a larger
 * one is skipped — the re-sync covers it) on a channel named after the schema, so deployments in
 * two schemas of one database never see each other's. `watchRevocations` listens on a DEDICATED
 * non-pooled `pg.Client`; when that connection drops it reconnects with capped exponential backoff
 * (100 ms doubling to 5 s, jittered). Each time it is LISTENing — the first time too — it calls
 * `onListening`: NOTIFY has no replay, so the consumer re-reads the table then (what committed
 * before the LISTEN is in the table, what commits after is pushed); a watcher added while the
 * listener is already up is told at once. Every error surfaces as a rejected promise (GatewayError
 * `store_unavailable`) or, for the listener, as a reconnect; `error` events are always handled,
 * never an unhandled crash.
 *
 * @example
 *   const store = await openPostgresStore('postgres://scopegate@db/scopegate', { metrics, poolMax: 10 });
 *   const stop = store.watchRevocations!((r) => denylist.add(r.jti, r.expiresAt), () => void fullResync());
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { clip } from '../../clip.js';
import type { RevocationRecord, TokenStore } from '../store.js';
import { sqlStoreMethods, storeError, type StoreMetrics } from './queries.js';
import { migrate, type Db, type Queryable } from './sql.js';

export interface PostgresStoreOptions {
  metrics?: StoreMetrics | undefined;
  /** Pool size (default 10). */
  poolMax?: number;
  /** Waiting for a pooled connection or a new one, ms (default 5000). */
  connectTimeoutMs?: number;
  /** Listener reconnect backoff bounds, ms (default 100 … 5000). */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Told about listener failures and reconnects. Never receives the URL or a secret. */
  logger?: { warn: (obj: object, msg: string) => void } | undefined;
}

const MAX_PAYLOAD_BYTES = 7_900;

function quoteIdent(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}

/** The NOTIFY channel of a schema: readable when short enough, else hashed (identifiers are 63 bytes). */
export function revocationChannel(schema: string): string {
  const plain = `scopegate_revocations:${schema}`;
  if (Buffer.byteLength(plain) <= 63) return plain;
  return `scopegate_revocations:${createHash('sha256').update(schema).digest('hex').slice(0, 32)}`;
}

function poolDb(pool: pg.Pool): Db {
  const wrap = (c: pg.Pool | pg.PoolClient): Queryable => ({
    async query<T>(text: string, params?: readonly unknown[]) {
      const r = await c.query(text, params ? [...params] : undefined);
      return { rows: r.rows as T[], rowCount: r.rowCount ?? r.rows.length };
    },
  });
  return {
    query: wrap(pool).query,
    async tx(fn) {
      const client = await pool.connect();
      let broken = false;
      try {
        await client.query('BEGIN');
        const out = await fn(wrap(client));
        await client.query('COMMIT');
        return out;
      } catch (e) {
        try {
          await client.query('ROLLBACK');
        } catch {
          broken = true; // the connection is gone: do not return it to the pool
        }
        throw e;
      } finally {
        client.release(broken || undefined);
      }
    },
  };
}

/** A NOTIFY payload back to a record; anything malformed is undefined (never a throw, never a partial record). */
export function parsePayload(text: string): RevocationRecord | undefined {
  try {
    const v = JSON.parse(text) as Partial<RevocationRecord>;
    if (typeof v.jti !== 'string' || !Number.isFinite(v.expiresAt) || !Number.isFinite(v.revokedAt)) return undefined;
    return { jti: v.jti, expiresAt: v.expiresAt!, revokedAt: v.revokedAt! };
  } catch {
    return undefined;
  }
}

export async function openPostgresStore(url: string, opts: PostgresStoreOptions = {}): Promise<TokenStore> {
  const poolMax = opts.poolMax ?? 10;
  const connectTimeoutMs = opts.connectTimeoutMs ?? 5_000;
  const minMs = opts.reconnectMinMs ?? 100;
  const maxMs = opts.reconnectMaxMs ?? 5_000;
  if (!Number.isInteger(poolMax) || poolMax < 1) throw new TypeError(`openPostgresStore: poolMax must be a positive integer, got ${poolMax}`);
  if (!(minMs > 0 && maxMs >= minMs)) throw new TypeError('openPostgresStore: need 0 < reconnectMinMs <= reconnectMaxMs');
  const { metrics, logger } = opts;

  const pool = new pg.Pool({
    connectionString: url,
    max: poolMax,
    connectionTimeoutMillis: connectTimeoutMs,
    idleTimeoutMillis: 30_000,
    application_name: 'scopegate-token-store',
  });
  // An idle pooled connection that dies emits 'error' on the pool; the next query gets a fresh one.
  pool.on('error', (e) => {
    metrics?.storeErrors.inc({ op: 'pool' });
    logger?.warn({ err: clip(e.message, 200) }, 'token store: idle postgres connection failed');
  });
  const db = poolDb(pool);

  let channel: string;
  try {
    await migrate(db);
    const { rows } = await db.query<{ s: string | null }>('SELECT current_schema() AS s');
    if (!rows[0]?.s) throw new Error('no current schema: the search_path names no existing schema');
    channel = revocationChannel(rows[0].s);
  } catch (e) {
    await pool.end().catch(() => {});
    throw storeError('open', e, metrics);
  }

  const methods = sqlStoreMethods(db, {
    metrics,
    revokedInTx: async (q, recs) => {
      const payloads = recs.map((r) => JSON.stringify(r)).filter((p) => Buffer.byteLength(p) <= MAX_PAYLOAD_BYTES);
      if (payloads.length) await q.query('SELECT pg_notify($1, p) FROM unnest($2::text[]) AS u(p)', [channel, payloads]);
    },
  });

  // ── the listener: one dedicated connection per store, shared by its watchers ──
  interface Watcher {
    onRevoked: (r: RevocationRecord) => void;
    onListening: () => void;
  }
  const watchers = new Set<Watcher>();
  let listener: pg.Client | undefined;
  /** `listener` has LISTENed and not failed since: every commit from now on reaches the watchers. */
  let listening = false;
  let retryTimer: NodeJS.Timeout | undefined;
  let attempt = 0;
  let closed = false;

  const safe = (f: () => void) => {
    try {
      f();
    } catch {
      /* a watcher's bug must not stop the others or the listener */
    }
  };

  function scheduleReconnect(): void {
    if (closed || watchers.size === 0 || retryTimer) return;
    const base = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 20));
    attempt++;
    const delay = base / 2 + Math.random() * (base / 2);
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      void connectListener();
    }, delay);
    retryTimer.unref();
  }

  async function connectListener(): Promise<void> {
    if (closed || watchers.size === 0 || listener) return;
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: connectTimeoutMs, keepAlive: true, application_name: 'scopegate-revocations' });
    listener = client;
    let failed = false;
    const fail = (e: unknown) => {
      if (failed) return;
      failed = true;
      if (listener === client) {
        listener = undefined;
        listening = false;
      }
      client.removeAllListeners('notification');
      client.end().catch(() => {});
      if (closed) return;
      metrics?.storeErrors.inc({ op: 'watchRevocations' });
      logger?.warn({ err: clip(e instanceof Error ? e.message : String(e), 200) }, 'token store: revocation listener lost; reconnecting');
      scheduleReconnect();
    };
    client.on('error', fail);
    client.on('end', () => fail(new Error('connection ended')));
    client.on('notification', (n) => {
      if (n.channel !== channel || n.payload === undefined) return;
      const rec = parsePayload(n.payload);
      if (rec) for (const w of watchers) safe(() => w.onRevoked(rec));
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${quoteIdent(channel)}`);
    } catch (e) {
      fail(e);
      return;
    }
    if (failed) return;
    if (closed || watchers.size === 0) {
      failed = true;
      listener = undefined;
      await client.end().catch(() => {});
      return;
    }
    // Notifications committed before this LISTEN were not heard (never, or while the connection
    // was down): every watcher re-reads the table now.
    attempt = 0;
    listening = true;
    for (const w of watchers) safe(() => w.onListening());
  }

  function stopListener(): void {
    clearTimeout(retryTimer);
    retryTimer = undefined;
    const c = listener;
    listener = undefined;
    listening = false;
    if (c) {
      c.removeAllListeners('end');
      c.removeAllListeners('notification');
      c.on('error', () => {});
      c.end().catch(() => {});
    }
  }

  return {
    kind: 'postgres',
    ...methods,
    watchRevocations(onRevoked, onListening) {
      if (closed) return () => {};
      const w: Watcher = { onRevoked, onListening };
      watchers.add(w);
      // Already LISTENing: this watcher hears every commit from now on; tell it so (asynchronously, like the first LISTEN).
      if (listening) queueMicrotask(() => watchers.has(w) && safe(() => w.onListening()));
      else void connectListener();
      return () => {
        watchers.delete(w);
        if (watchers.size === 0) stopListener();
      };
    },
    async ping() {
      try {
        await pool.query('SELECT 1');
      } catch (e) {
        throw storeError('ping', e, metrics);
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      watchers.clear();
      stopListener();
      await pool.end().catch(() => {});
    },
  };
}
