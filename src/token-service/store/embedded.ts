/**
 * The embedded token store (SPEC §9, the default): a directory, zero set-up, one process.
 *
 * It is PGlite — PostgreSQL compiled to WASM, run in-process — on a NodeFS data directory
 * (`<dir>/pgdata`), so it speaks exactly the SQL of the PostgreSQL backend (sql.ts, queries.ts) and
 * one contract test covers both. Why PGlite and not SQLite: docs/token-store.md.
 *
 * What PGlite leaves to us, done here:
 *   - a directory lock (lock.ts): PGlite takes none and two processes corrupt the directory; a
 *     stale lock (dead pid) is taken over, a live one is an error naming the pid;
 *   - a control socket (control.ts), so `scopegate clients …` works while `serve` holds the lock;
 *   - CHECKPOINT + close on close() (the caller's SIGTERM path), so a clean stop leaves no WAL to replay.
 * Durability: PGlite's NodeFS writes every page and WAL record with a synchronous write(2) before
 * the query resolves (`relaxedDurability` is false by default and does not apply to NodeFS), so a
 * committed write survives `kill -9` of the process (test/token-service/store-crash.test.ts). PGlite
 * runs PostgreSQL with fsync off, so an OS crash or power loss may lose recent writes — see the docs.
 *
 * @example
 *   const store = await openEmbeddedStore('/var/lib/scopegate', { metrics });
 *   await store.createClient({ ... });
 *   process.on('SIGTERM', () => void store.close());
 */
import { PGlite } from '@electric-sql/pglite';
import { EventEmitter } from 'node:events';
import { cp, mkdir, stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { GatewayError } from '../../errors.js';
import type { RevocationRecord, TokenStore } from '../store.js';
import { controlSocketPath, serveControl, type ControlServer } from './control.js';
import { acquireLock, LockHeldError, type HeldLock } from './lock.js';
import { sqlStoreMethods, storeError, type StoreMetrics } from './queries.js';
import { migrate, type Db, type Queryable } from './sql.js';

export interface EmbeddedStoreOptions {
  metrics?: StoreMetrics | undefined;
  /** Serve the control socket for CLI commands (default true). */
  control?: boolean;
  /** Keep retrying for this long while another live process holds the lock, ms (default 0: fail at once). */
  lockWaitMs?: number;
  /** Lock heartbeat, ms (default 5000). */
  heartbeatMs?: number;
  /** Told when a stale lock was taken over. Never receives secrets. */
  logger?: { warn: (obj: object, msg: string) => void } | undefined;
}

/**
 * Environment variable naming a directory that holds a pristine, cleanly closed store (made by
 * `openEmbeddedStore(template)` + `close()`). A NEW store (no `pgdata` yet) starts as a copy of its
 * `pgdata` instead of running PGlite's initdb, which takes 7–25 s on a small machine; migrations
 * still run on the copy. Meant for test suites and CI that create many stores; an existing store
 * is never touched. Unset: initdb as usual.
 */
export const STORE_TEMPLATE_ENV = 'SCOPEGATE_STORE_TEMPLATE';

async function isDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** Seeds `<dir>/pgdata` from the template named by STORE_TEMPLATE_ENV, when there is one and the store is new. */
async function seedFromTemplate(dataDir: string): Promise<void> {
  const template = process.env[STORE_TEMPLATE_ENV];
  if (!template || (await isDir(dataDir))) return;
  const from = join(template, 'pgdata');
  if (!(await isDir(from))) return;
  await cp(from, dataDir, { recursive: true, errorOnExist: true, force: false });
}

function pgliteDb(pg: PGlite): Db {
  const wrap = (q: { query: PGlite['query'] }): Queryable => ({
    async query<T>(text: string, params?: readonly unknown[]) {
      const r = await q.query<T>(text, params ? [...params] : undefined);
      return { rows: r.rows, rowCount: r.affectedRows ?? r.rows.length };
    },
  });
  const base = wrap(pg);
  return {
    query: base.query,
    tx: (fn) => pg.transaction((tx) => fn(wrap(tx as unknown as { query: PGlite['query'] }))),
  };
}

/** Opens (creating when missing) the embedded store in `dir`, an absolute directory path. */
export async function openEmbeddedStore(dir: string, opts: EmbeddedStoreOptions = {}): Promise<TokenStore> {
  if (!isAbsolute(dir)) throw new TypeError(`openEmbeddedStore: dir must be absolute, got ${JSON.stringify(dir)}`);
  await mkdir(dir, { recursive: true, mode: 0o700 });

  const sock = opts.control === false ? undefined : await controlSocketPath(dir);
  const lock = await lockWithWait(dir, sock?.path, opts);

  let pg: PGlite | undefined;
  let control: ControlServer | undefined;
  try {
    const dataDir = join(dir, 'pgdata');
    await seedFromTemplate(dataDir);
    pg = await PGlite.create({ dataDir });
    const db = pgliteDb(pg);
    await migrate(db);

    const events = new EventEmitter();
    events.setMaxListeners(0);
    const methods = sqlStoreMethods(db, {
      metrics: opts.metrics,
      revokedAfterCommit: (recs) => {
        for (const r of recs) events.emit('revoked', r);
      },
    });
    let closing: Promise<void> | undefined;
    const store: TokenStore = {
      kind: 'embedded',
      ...methods,
      watchRevocations(onRevoked, _onListening) {
        // In-process: every revocation of this store goes through this process (the CLI's too, via
        // the control socket), and a watcher hears every commit from this call on: nothing to re-read.
        const h = (r: RevocationRecord) => {
          try {
            onRevoked(r);
          } catch {
            /* a watcher's bug must not undo the revocation or stop the other watchers */
          }
        };
        events.on('revoked', h);
        return () => void events.off('revoked', h);
      },
      async ping() {
        try {
          await pg!.query('SELECT 1');
        } catch (e) {
          throw storeError('ping', e, opts.metrics);
        }
      },
      close() {
        closing ??= (async () => {
          try {
            await control?.close();
            if (!pg!.closed) {
              await pg!.exec('CHECKPOINT').catch(() => {});
              await pg!.close();
            }
          } finally {
            await lock.release();
            await sock?.cleanup();
          }
        })();
        return closing;
      },
    };
    if (sock) control = await serveControl(sock.path, store);
    return store;
  } catch (e) {
    await control?.close().catch(() => {});
    if (pg && !pg.closed) await pg.close().catch(() => {});
    await lock.release();
    await sock?.cleanup();
    throw e instanceof LockHeldError ? e : storeError('open', e, opts.metrics);
  }
}

async function lockWithWait(dir: string, socket: string | undefined, opts: EmbeddedStoreOptions): Promise<HeldLock> {
  const deadline = Date.now() + (opts.lockWaitMs ?? 0);
  for (;;) {
    try {
      const lock = await acquireLock(dir, { socket, heartbeatMs: opts.heartbeatMs });
      if (lock.tookOver) opts.logger?.warn({ store: dir, reason: lock.tookOver }, 'token store: took over a stale lock');
      return lock;
    } catch (e) {
      if (e instanceof LockHeldError && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      if (e instanceof LockHeldError) throw e;
      throw new GatewayError('store_unavailable', { store: 'token', why: `token store ${dir}: cannot take the lock: ${(e as Error).message}` });
    }
  }
}
