/**
 * The denylist (src/token-service/revocation.ts) on real stores: the embedded store in a temp
 * dir and two "replicas" (two stores, two denylists) on one PostgreSQL schema — push by
 * LISTEN/NOTIFY, the poll as the safety net, the listener's backend terminated and coming back
 * during a revocation, an unreachable store (not ready, last denylist kept, counted), and the
 * entries bounded by the tokens' expiry; a mass revocation read once (embedded: not at all by the
 * poll) and the re-read window that closes the commit-order hole, with the full read at the next
 * LISTEN behind it; the `scopegate_denylist_entries` gauge and the first sync's log line. Then the
 * whole thing as operators run it: two real
 * gateway processes (`scopegate serve`, dist/) on one PostgreSQL and one on the embedded store —
 * a token used through both, revoked through one (RFC 7009, or `scopegate tokens revoke`), is
 * refused by both within a generous bound of max_lag_ms (the real distribution is measured by
 * bench/revocation-lag.mjs), also when the listening connection was cut during the revocation.
 */
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hashSecret, newId, newSecret } from '../../src/token-service/secrets.js';
import { openTokenStore } from '../../src/token-service/store/open.js';
import { runCli, spawnGateway, type GatewayProcess } from '../helpers/process.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics, type Metrics } from '../../src/observability/metrics.js';
import { createDenylist, type Denylist } from '../../src/token-service/revocation.js';
import { openEmbeddedStore } from '../../src/token-service/store/embedded.js';
import { openPostgresStore } from '../../src/token-service/store/postgres.js';
import type { TokenStore } from '../../src/token-service/store.js';
import { createTestSchema, describePostgres, type TestSchema } from '../helpers/postgres.js';
import { tempDir, testClock, type TempDir } from '../helpers/tokens.js';
import { issue, lagUntilRefused, MAX_LAG_MS, processConfig, revokeAt, verdict } from './processes.js';

function quietLogger() {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  return { logger: createLogger({ level: 'debug', destination: sink }), lines };
}

async function counter(metrics: Metrics, name: string, labels: Record<string, string>): Promise<number> {
  const m = await metrics.registry.getSingleMetric(name)?.get();
  return m?.values.find((v) => Object.entries(labels).every(([k, val]) => (v.labels as Record<string, unknown>)[k] === val))?.value ?? 0;
}

/** Polls `cond` every 5 ms; resolves with the elapsed ms once true, rejects after `timeoutMs`. */
async function within(cond: () => boolean, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return performance.now() - t0;
}

const HOUR = 3_600_000;

/** Reads of the revocation log a denylist made through `counting(store)`. */
interface LogRead {
  afterSeq: number;
  reread: boolean;
  rows: number;
}

/** The same store, recording each revocationsAfter and ping the denylist makes (what it costs, not what it does). */
function counting(store: TokenStore): { store: TokenStore; reads: LogRead[]; pings: () => number } {
  const reads: LogRead[] = [];
  let pings = 0;
  const wrapped: TokenStore = {
    ...store,
    async revocationsAfter(afterSeq, now, o) {
      const page = await store.revocationsAfter(afterSeq, now, o);
      reads.push({ afterSeq, reread: o?.throughSeq !== undefined, rows: page.records.length });
      return page;
    },
    async ping() {
      pings++;
      return store.ping();
    },
  };
  return { store: wrapped, reads, pings: () => pings };
}

async function gauge(metrics: Metrics): Promise<number | undefined> {
  return (await metrics.registry.getSingleMetric('scopegate_denylist_entries')?.get())?.values[0]?.value;
}

describe('denylist on the embedded store', () => {
  let dir: TempDir;
  let store: TokenStore;
  const opened: Denylist[] = [];
  beforeAll(async () => {
    dir = await tempDir();
    store = await openEmbeddedStore(`${dir.path}/store`, { control: false });
  });
  afterEach(async () => {
    for (const d of opened.splice(0)) await d.close();
  });
  afterAll(async () => {
    await store.close();
    await dir.cleanup();
  });
  const make = (o: Partial<Parameters<typeof createDenylist>[1]> = {}) => {
    const { logger } = quietLogger();
    const d = createDenylist(store, { clock: Date.now, maxLagMs: 200, logger, metrics: createMetrics({ processMetrics: false }), ...o });
    opened.push(d);
    return d;
  };

  it('is empty and not ready before start, and ready after the first full sync', async () => {
    await store.revoke([{ jti: 'before-start', expiresAt: Date.now() + HOUR }], Date.now() - 10 * HOUR);
    const d = make();
    expect(d.ready()).toBe(false);
    expect(d.has('before-start')).toBe(false);
    await d.start();
    expect(d.ready()).toBe(true);
    // Revoked ten hours "ago" (older than any poll margin): only the full sync finds it.
    expect(d.has('before-start')).toBe(true);
    expect(d.has('never-revoked')).toBe(false);
  });

  it('holds a local add at once, before any store round trip', async () => {
    const d = make();
    await d.start();
    d.add('local-now', Date.now() + HOUR);
    expect(d.has('local-now')).toBe(true);
  });

  it('changes its version on every new entry only, and never shares one with another denylist', async () => {
    const d = make();
    const other = make();
    await d.start();
    const v0 = d.version();
    expect(other.version()).not.toBe(v0);
    d.add('versioned', Date.now() + HOUR);
    const v1 = d.version();
    expect(v1).not.toBe(v0);
    d.add('versioned', Date.now() + HOUR / 2); // an earlier expiry changes nothing
    expect(d.version()).toBe(v1);
    expect(d.has('never-added')).toBe(false);
    expect(d.version()).toBe(v1); // lookups never move it
    d.add('versioned', Date.now() + 2 * HOUR); // a later one is kept: a new version
    expect(d.version()).not.toBe(v1);
    // The gateway's stamp (src/core/decide.ts) is only ever compared for equality with these.
    const seen = new Set([v0, v1, d.version(), other.version()]);
    expect(seen.size).toBe(4);
  });

  it('sees a revocation made through the store (pushed in-process) without waiting for a poll', async () => {
    const d = make({ maxLagMs: 60_000 }); // poll every 30 s: only the push can be this quick
    await d.start();
    await store.revoke([{ jti: 'pushed', expiresAt: Date.now() + HOUR }], Date.now());
    await within(() => d.has('pushed'), 1000);
  });

  it('finds a revocation by polling when the store pushes nothing', async () => {
    const noPush: TokenStore = { ...store, watchRevocations: undefined };
    const d = createDenylist(noPush, { clock: Date.now, maxLagMs: 100, logger: quietLogger().logger, metrics: createMetrics({ processMetrics: false }) });
    opened.push(d);
    await d.start();
    await store.revoke([{ jti: 'polled', expiresAt: Date.now() + HOUR }], Date.now());
    // Within a poll period (50 ms) plus a query; asserted loosely.
    await within(() => d.has('polled'), 1000);
  });

  it('drops an entry once its token has expired, so it stays bounded', async () => {
    const clock = testClock(Date.now());
    const d = make({ clock, purgeEveryMs: 20 });
    await d.start();
    d.add('short', clock() + 1000);
    d.add('long', clock() + HOUR);
    expect(d.has('short')).toBe(true);
    clock.advance(1001);
    await within(() => !d.has('short'), 1000);
    expect(d.has('long')).toBe(true);
    // An already expired token is never added at all.
    d.add('dead', clock() - 1);
    expect(d.has('dead')).toBe(false);
  });

  it('keeps its last denylist, reports not ready and counts the error when the store is gone', async () => {
    const own = await tempDir();
    const s = await openEmbeddedStore(`${own.path}/store`, { control: false });
    const metrics = createMetrics({ processMetrics: false });
    const { logger, lines } = quietLogger();
    const d = createDenylist(s, { clock: Date.now, maxLagMs: 40, logger, metrics });
    opened.push(d);
    await s.revoke([{ jti: 'kept', expiresAt: Date.now() + HOUR }], Date.now());
    await d.start();
    expect(d.ready()).toBe(true);
    await s.close(); // every query now fails, as with a database that went away
    await within(() => !d.ready(), 2000);
    expect(d.has('kept')).toBe(true);
    expect(await counter(metrics, 'scopegate_store_errors_total', { op: 'revocation_sync' })).toBeGreaterThan(0);
    expect(lines.some((l) => l.includes('revocation_sync_failed'))).toBe(true);
    await own.cleanup();
  });

  it('refuses bad options once, at construction', () => {
    const base = { clock: Date.now, logger: quietLogger().logger, metrics: createMetrics({ processMetrics: false }) };
    expect(() => createDenylist(store, { ...base, maxLagMs: 5 })).toThrow(/maxLagMs/);
    expect(() => createDenylist(store, { ...base, maxLagMs: 1.5 })).toThrow(/maxLagMs/);
    expect(() => createDenylist(store, { ...base, maxLagMs: 1000, syncMarginMs: -1 })).toThrow(/syncMarginMs/);
    expect(() => createDenylist(store, { ...base, maxLagMs: 1000, rereadSeqs: 10_001 })).toThrow(/rereadSeqs/);
    expect(() => createDenylist(store, { ...base, maxLagMs: 1000, pageSize: 0 })).toThrow(/pageSize/);
    expect(() => createDenylist(store, { ...base, maxLagMs: 1000, listenWaitMs: -1 })).toThrow(/listenWaitMs/);
    expect(() => createDenylist({} as TokenStore, { ...base, maxLagMs: 1000 })).toThrow(/TokenStore/);
  });

  it('the first full sync pages through the log, logs its count and feeds scopegate_denylist_entries until close', async () => {
    const own = await tempDir();
    const s = await openEmbeddedStore(`${own.path}/store`, { control: false });
    try {
      const now = Date.now();
      await s.revoke(Array.from({ length: 2500 }, (_, i) => ({ jti: `pre-${i}`, expiresAt: now + HOUR })), now);
      await s.revoke([{ jti: 'pre-expired', expiresAt: now + 1 }], now - 10);
      const metrics = createMetrics({ processMetrics: false });
      const { logger, lines } = quietLogger();
      const c = counting(s);
      const d = createDenylist(c.store, { clock: Date.now, maxLagMs: 1000, logger, metrics, pageSize: 1000 });
      opened.push(d);
      expect(await gauge(metrics)).toBe(0); // registered without a denylist: 0, not absent
      await within(() => Date.now() > now + 1, 100);
      await d.start();
      expect(d.size).toBe(2500);
      expect(c.reads.map((r) => r.rows)).toEqual([1000, 1000, 500]); // three pages from seq 0, the expired one skipped
      expect(c.reads.every((r, i) => (i === 0 ? r.afterSeq === 0 : r.afterSeq > 0))).toBe(true);
      const synced = lines.map((l) => JSON.parse(l) as { msg: string; event?: string; entries?: number }).filter((l) => l.event === 'denylist_synced');
      expect(synced).toHaveLength(1);
      expect(synced[0]!.msg).toBe('denylist: synced 2500 live revocations');
      expect(await gauge(metrics)).toBe(2500);
      d.add('local', Date.now() + HOUR);
      expect(await gauge(metrics)).toBe(2501);
      await d.close();
      expect(await gauge(metrics)).toBe(0);
    } finally {
      await s.close();
      await own.cleanup();
    }
  });

  it('a mass revocation is pushed whole, and the polls after it read no rows (the push is complete here)', async () => {
    const c = counting(store);
    const d = createDenylist(c.store, { clock: Date.now, maxLagMs: 40, logger: quietLogger().logger, metrics: createMetrics({ processMetrics: false }) });
    opened.push(d);
    await d.start();
    const startReads = c.reads.length;
    const now = Date.now();
    const burst = Array.from({ length: 20_000 }, (_, i) => ({ jti: `mass-${i}`, expiresAt: now + HOUR }));
    await store.revoke(burst, now); // one call, one transaction, as deleting a big client does
    expect(d.has('mass-0') && d.has('mass-19999')).toBe(true); // pushed by the time revoke resolved
    const pings = c.pings();
    await within(() => c.pings() >= pings + 5, 5000); // five polls (20 ms each) after the burst
    expect(c.reads.slice(startReads)).toEqual([]); // they read nothing: ping only
    expect(d.ready()).toBe(true);
    expect(burst.every((e) => d.has(e.jti))).toBe(true);
  });
});

describePostgres('denylist on two replicas sharing PostgreSQL', () => {
  let schema: TestSchema;
  let a: TokenStore;
  let b: TokenStore;
  const opened: Denylist[] = [];
  beforeAll(async () => {
    schema = await createTestSchema('denylist');
    a = await openPostgresStore(schema.url, { reconnectMinMs: 20, reconnectMaxMs: 100 });
    b = await openPostgresStore(schema.url, { reconnectMinMs: 20, reconnectMaxMs: 100 });
  });
  afterEach(async () => {
    for (const d of opened.splice(0)) await d.close();
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await schema?.drop();
  });
  const make = (store: TokenStore, maxLagMs: number, metrics: Metrics = createMetrics({ processMetrics: false })) => {
    const d = createDenylist(store, { clock: Date.now, maxLagMs, logger: quietLogger().logger, metrics });
    opened.push(d);
    return d;
  };

  it("refuses on replica B what replica A revoked, well within max_lag_ms (NOTIFY)", async () => {
    const maxLag = 1000;
    const onB = make(b, maxLag);
    await onB.start();
    const t0 = performance.now();
    await a.revoke([{ jti: 'pg-push', expiresAt: Date.now() + HOUR }], Date.now());
    await within(() => onB.has('pg-push'), 5 * maxLag);
    expect(performance.now() - t0).toBeLessThan(5 * maxLag);
  });

  it('still converges when the LISTEN backend is terminated and comes back during the revocation', async () => {
    const maxLag = 300;
    const onB = make(b, maxLag);
    await onB.start();
    const admin = await schema.client();
    try {
      // Wait until B's listener is connected, then cut it.
      await within(() => true, 10);
      for (let i = 0; i < 100; i++) {
        const { rowCount } = await admin.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'scopegate-revocations' AND query ILIKE 'LISTEN%'`);
        if ((rowCount ?? 0) > 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const killed = await admin.query(`SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = 'scopegate-revocations' AND pid <> pg_backend_pid()`);
      expect(killed.rowCount).toBeGreaterThan(0);
      // Revoked while no replica listens: NOTIFY is lost; the poll and the reconnect re-sync find it.
      const t0 = performance.now();
      await a.revoke([{ jti: 'pg-during-outage', expiresAt: Date.now() + HOUR }], Date.now());
      await within(() => onB.has('pg-during-outage'), 5 * maxLag);
      expect(performance.now() - t0).toBeLessThan(5 * maxLag);
      // And the listener is back: a later revocation arrives too.
      await a.revoke([{ jti: 'pg-after-outage', expiresAt: Date.now() + HOUR }], Date.now());
      await within(() => onB.has('pg-after-outage'), 5 * maxLag);
    } finally {
      await admin.end();
    }
  });

  it('revokeFamily on one replica reaches the other (what a refresh replay or RFC 7009 revoke does)', async () => {
    const now = Date.now();
    for (const jti of ['fam-at-1', 'fam-at-2']) {
      await a.recordToken({ jti, kind: 'access', clientId: 'c1', ownerType: 'client', ownerId: 'c1', subject: 'c1', scopes: [], familyId: 'fam-x', createdAt: now, expiresAt: now + HOUR });
    }
    const onB = make(b, 500);
    await onB.start();
    const revoked = await a.revokeFamily('fam-x', Date.now());
    expect(revoked.map((r) => r.jti).sort()).toEqual(['fam-at-1', 'fam-at-2']);
    await within(() => onB.has('fam-at-1') && onB.has('fam-at-2'), 2500);
  });

  it('starts with one full read: it waits for its first LISTEN instead of reading twice', async () => {
    await a.revoke([{ jti: `pg-one-read-${Date.now()}`, expiresAt: Date.now() + HOUR }], Date.now()); // a non-empty log: polls read after seq > 0
    const c = counting(b);
    const d = createDenylist(c.store, { clock: Date.now, maxLagMs: 100, logger: quietLogger().logger, metrics: createMetrics({ processMetrics: false }) });
    opened.push(d);
    await d.start();
    await within(() => c.reads.filter((r) => !r.reread).length >= 8, 5000); // some polls later
    expect(c.reads.filter((r) => !r.reread && r.afterSeq === 0)).toHaveLength(1); // the re-read window may start at 0, a full read only at start
  });

  it('after a burst, each new row is read once and each re-read is bounded by rereadSeqs, however big the burst', async () => {
    const c = counting(b);
    const d = createDenylist(c.store, { clock: Date.now, maxLagMs: 40, logger: quietLogger().logger, metrics: createMetrics({ processMetrics: false }), rereadSeqs: 100 });
    opened.push(d);
    await d.start();
    const from = c.reads.length;
    const now = Date.now();
    const n = 5000;
    await a.revoke(Array.from({ length: n }, (_, i) => ({ jti: `pg-mass-${i}-${now}`, expiresAt: now + HOUR })), now);
    await within(() => d.has(`pg-mass-0-${now}`) && d.has(`pg-mass-${n - 1}-${now}`), 5000);
    const polls = () => c.reads.slice(from).filter((r) => r.reread).length;
    const at = polls();
    await within(() => polls() >= at + 10, 5000); // ten polls after the burst arrived
    const after = c.reads.slice(from);
    const newRows = after.filter((r) => !r.reread).reduce((sum, r) => sum + r.rows, 0);
    expect(newRows).toBeGreaterThanOrEqual(n); // read (once) by the poll too, pushed or not
    expect(newRows).toBeLessThan(n + 100); // …but not again: the old 60 s window read all n every poll
    const rereads = after.filter((r) => r.reread);
    expect(Math.max(...rereads.map((r) => r.rows))).toBeLessThanOrEqual(100);
    expect(rereads.at(-1)!.rows).toBe(100); // the window is real: the last 100 seqs, all revoked within the margin
  });

  it('the commit-order hole: a revocation that took a lower seq and commits after a higher one was read is found by the re-read; without it, only by the full read at the next LISTEN', async () => {
    const maxLag = 100;
    const withWindow = make(b, maxLag);
    const noWindow = createDenylist(b, { clock: Date.now, maxLagMs: maxLag, logger: quietLogger().logger, metrics: createMetrics({ processMetrics: false }), rereadSeqs: 0 });
    opened.push(noWindow);
    await withWindow.start();
    await noWindow.start();
    const late = `pg-late-${Date.now()}`;
    const early = `pg-early-${Date.now()}`;
    // A transaction takes its seq and stays open; it sends no NOTIFY, as if its push were lost.
    const slow = await schema.client();
    try {
      await slow.query('BEGIN');
      await slow.query('INSERT INTO revocations (jti, expires_at, revoked_at) VALUES ($1, $2, $3)', [late, Date.now() + HOUR, Date.now()]);
      // A later revocation takes a higher seq, commits first and is read by both (pushed and polled).
      await a.revoke([{ jti: early, expiresAt: Date.now() + HOUR }], Date.now());
      await within(() => withWindow.has(early) && noWindow.has(early), 5 * maxLag);
      await new Promise((r) => setTimeout(r, 3 * maxLag)); // polls pass the cursor beyond the open seq
      await slow.query('COMMIT');
    } finally {
      await slow.end();
    }
    const t0 = performance.now();
    await within(() => withWindow.has(late), 5 * maxLag);
    expect(performance.now() - t0).toBeLessThan(5 * maxLag);
    // Without the window the poll never sees it (seq > cursor only) …
    await new Promise((r) => setTimeout(r, 5 * maxLag));
    expect(noWindow.has(late)).toBe(false);
    // … and the full read that follows a LISTEN does: cut the listener, it comes back, the table is read.
    const admin = await schema.client();
    try {
      const killed = await admin.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'scopegate-revocations' AND query LIKE 'LISTEN %' AND query LIKE $1`,
        [`%${schema.name}%`],
      );
      expect(killed.rowCount).toBeGreaterThan(0);
    } finally {
      await admin.end();
    }
    await within(() => noWindow.has(late), 10_000);
  });

  it('a replica whose database is unreachable keeps its denylist and is not ready', async () => {
    const c = await openPostgresStore(schema.url);
    const metrics = createMetrics({ processMetrics: false });
    const onC = make(c, 40, metrics);
    await a.revoke([{ jti: 'pg-kept', expiresAt: Date.now() + HOUR }], Date.now());
    await onC.start();
    expect(onC.has('pg-kept')).toBe(true);
    await c.close();
    await within(() => !onC.ready(), 2000);
    expect(onC.has('pg-kept')).toBe(true);
    expect(await counter(metrics, 'scopegate_store_errors_total', { op: 'revocation_sync' })).toBeGreaterThan(0);
  });
});


// ── real gateway processes ─────────────────────────────────────────────────────────────────────

describePostgres('revocation across two gateway processes on one PostgreSQL', () => {
  let schema: TestSchema;
  let up: Upstream;
  let dir: TempDir;
  let gws: GatewayProcess[] = [];
  let client: { id: string; secret: string };

  beforeAll(async () => {
    schema = await createTestSchema('revlag');
    up = await startUpstream();
    dir = await tempDir();
    const file = await dir.write('gw.yaml', processConfig({ upstream: up.url, store: schema.url }));
    gws = await Promise.all([spawnGateway(file, { timeoutMs: 60_000 }), spawnGateway(file, { timeoutMs: 60_000 })]);
    const store = await openTokenStore(schema.url);
    client = { id: newId('cl'), secret: newSecret() };
    await store.createClient({ id: client.id, name: 'lag test', secretHash: await hashSecret(client.secret), clientType: 'group', scopes: ['view_group'], createdAt: Date.now() });
    await store.close();
  }, 90_000);
  afterAll(async () => {
    await Promise.all(gws.map((g) => g.kill()));
    await up?.close();
    await dir?.cleanup();
    await schema?.drop();
  });

  it('a token used through both, revoked through one, is refused by both within max_lag_ms', async () => {
    const [a, b] = gws as [GatewayProcess, GatewayProcess];
    const token = await issue(a.url, client);
    expect(await verdict(a.url, token)).toBe('');
    expect(await verdict(b.url, token)).toBe(''); // now in B's verified-token cache too
    await revokeAt(a.url, client, token);
    const t0 = performance.now(); // the call has answered: the revocation is committed
    const lags = await lagUntilRefused([a.url, b.url], token, t0, 5 * MAX_LAG_MS);
    for (const lag of lags) expect(lag).toBeLessThan(5 * MAX_LAG_MS);
  });

  it('the same when the LISTEN connections were cut and come back during the revocation', async () => {
    const [a, b] = gws as [GatewayProcess, GatewayProcess];
    const token = await issue(b.url, client);
    expect(await verdict(a.url, token)).toBe('');
    expect(await verdict(b.url, token)).toBe('');
    const admin = await schema.client();
    try {
      const killed = await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'scopegate-revocations' AND pid <> pg_backend_pid()`);
      expect(killed.rowCount).toBeGreaterThanOrEqual(2);
    } finally {
      await admin.end();
    }
    await revokeAt(b.url, client, token);
    const t0 = performance.now();
    const lags = await lagUntilRefused([a.url, b.url], token, t0, 5 * MAX_LAG_MS);
    for (const lag of lags) expect(lag).toBeLessThan(5 * MAX_LAG_MS);
    // Both listeners reconnected (the log says so) and keep pushing.
    await a.waitForLine(/revocation listener lost/, 5000);
    const later = await issue(a.url, client);
    expect(await verdict(b.url, later)).toBe('');
    await revokeAt(a.url, client, later);
    const t1 = performance.now();
    for (const lag of await lagUntilRefused([b.url], later, t1, 5 * MAX_LAG_MS)) expect(lag).toBeLessThan(5 * MAX_LAG_MS);
  });
});

describe('revocation on a gateway process with the embedded store', () => {
  let up: Upstream;
  let dir: TempDir;
  let gw: GatewayProcess;
  let file: string;
  let client: { id: string; secret: string };

  beforeAll(async () => {
    up = await startUpstream();
    dir = await tempDir();
    file = await dir.write('gw.yaml', processConfig({ upstream: up.url, store: `${dir.path}/store` }));
    // PGlite's first start (initdb) is slow on a busy machine.
    gw = await spawnGateway(file, { timeoutMs: 60_000 });
    // Through the running server's control socket, as `scopegate clients create` does.
    const store = await openTokenStore(`${dir.path}/store`, { attach: true });
    client = { id: newId('cl'), secret: newSecret() };
    await store.createClient({ id: client.id, name: 'embedded', secretHash: await hashSecret(client.secret), clientType: 'group', scopes: ['view_group'], createdAt: Date.now() });
    await store.close();
  }, 90_000);
  afterAll(async () => {
    await gw?.kill();
    await up?.close();
    await dir?.cleanup();
  });

  it('`scopegate tokens revoke` (another process) makes the serving gateway refuse a cached token within max_lag_ms', async () => {
    const token = await issue(gw.url, client);
    expect(await verdict(gw.url, token)).toBe('');
    const jti = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')).jti as string;
    const t0 = performance.now();
    const r = await runCli(['tokens', 'revoke', '--config', file, jti]);
    expect(r.code, r.stderr).toBe(0);
    const [lag] = await lagUntilRefused([gw.url], token, t0, 5 * MAX_LAG_MS + 5000);
    // The CLI's own start-up is in the measurement; the gateway's part is the push (in-process).
    expect(lag).toBeLessThan(5 * MAX_LAG_MS + 5000);
  }, 60_000);

  it('RFC 7009 revoke on the gateway itself is refused at once', async () => {
    const token = await issue(gw.url, client);
    expect(await verdict(gw.url, token)).toBe('');
    await revokeAt(gw.url, client, token);
    expect(await verdict(gw.url, token)).toBe('token_revoked');
  });

  it('says how many entries it holds: the start-up log line and scopegate_denylist_entries on /metrics', async () => {
    const line = JSON.parse(await gw.waitForLine(/denylist: synced/)) as { msg: string; entries: number };
    expect(line.msg).toBe('denylist: synced 0 live revocations'); // a new store
    const res = await fetch(`${gw.adminUrl!}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain('# TYPE scopegate_denylist_entries gauge');
    // The two tokens revoked above (CLI and RFC 7009), still alive.
    expect(Number(/^scopegate_denylist_entries (\d+)$/m.exec(text)?.[1])).toBe(2);
  });
});
