#!/usr/bin/env node
// A mass revocation against a denylist, measured (src/token-service/revocation.ts; the numbers
// are in its header and in docs/token-service.md). Not a test and not part of `npm run bench`:
// it needs a quiet machine to mean much.
//
//   node scripts/denylist-burst.mjs [--dist dist] [--store embedded|postgres://…] [--n 100000]
//                                   [--batch 10000] [--watch-ms 10000] [--max-lag-ms 1000]
//
// Opens a fresh store (embedded: a temp directory, SCOPEGATE_STORE_TEMPLATE honoured; postgres: a
// private schema of the given database, dropped at the end), starts a denylist on it (one poll
// every max-lag-ms / 2), watches the event loop while idle, revokes `n` jtis with store.revoke in
// batches of `batch` (yielding to the event loop between two), then watches the event loop for
// `watch-ms` while the polls run. Reports the event-loop delay (perf_hooks.monitorEventLoopDelay)
// and the longest gap between the ticks of a 5 ms timer — the longest time this process could not
// answer a request — and the revocation rows the denylist's store calls returned. `--dist` names
// the compiled tree to load (another build, e.g. of an older commit, to compare before and after).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    dist: { type: 'string', default: 'dist' },
    store: { type: 'string', default: 'embedded' },
    n: { type: 'string', default: '100000' },
    batch: { type: 'string', default: '10000' },
    'watch-ms': { type: 'string', default: '10000' },
    'max-lag-ms': { type: 'string', default: '1000' },
  },
});
const int = (name) => {
  const v = Number(args[name]);
  if (!Number.isSafeInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer, got ${args[name]}`);
  return v;
};
const N = int('n');
const BATCH = int('batch');
const WATCH_MS = int('watch-ms');
const MAX_LAG_MS = int('max-lag-ms');
const dist = resolve(args.dist);
const load = (p) => import(pathToFileURL(join(dist, p)).href);

const { openTokenStore } = await load('token-service/store/open.js');
const { createDenylist } = await load('token-service/revocation.js');
const { createMetrics } = await load('observability/metrics.js');
const { createLogger } = await load('observability/logger.js');

const HOUR = 3_600_000;
const say = (line) => process.stdout.write(`${line}\n`);
let cleanup = async () => {};
let location = args.store;
if (location === 'embedded') {
  const dir = await mkdtemp(join(tmpdir(), 'sg-burst-'));
  location = join(dir, 'store');
  cleanup = () => rm(dir, { recursive: true, force: true });
} else if (/^postgres(ql)?:\/\//.test(location)) {
  const pg = (await import('pg')).default;
  const schema = `sg_burst_${Math.random().toString(36).slice(2, 10)}`;
  const admin = new pg.Client({ connectionString: location });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  await admin.end();
  const base = location;
  const u = new URL(location);
  u.searchParams.set('options', `-c search_path=${schema}`);
  location = u.toString();
  cleanup = async () => {
    const c = new pg.Client({ connectionString: base });
    await c.connect();
    await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await c.end();
  };
} else throw new Error(`--store must be 'embedded' or a postgres:// URL, got ${location}`);

const t0 = performance.now();
const store = await openTokenStore(location, { control: false });
say(`store ${store.kind} open in ${Math.round(performance.now() - t0)} ms (dist: ${dist})`);

// Count what the denylist's reads return; everything else passes through unchanged. A
// revocationsAfter with throughSeq is the re-read window, one from seq 0 a full read.
const reads = { calls: 0, rows: 0, ms: 0, maxMs: 0, reread: 0 };
const counted = new Proxy(store, {
  get(target, prop) {
    const v = target[prop];
    if (typeof v !== 'function') return v;
    if (!['revokedSince', 'revocationsAfter', 'ping'].includes(String(prop))) return v.bind(target);
    return async (...a) => {
      const s = performance.now();
      const out = await v.apply(target, a);
      const ms = performance.now() - s;
      reads.calls++;
      reads.ms += ms;
      reads.maxMs = Math.max(reads.maxMs, ms);
      const rows = Array.isArray(out) ? out.length : (out?.records?.length ?? 0);
      reads.rows += rows;
      if (prop === 'revocationsAfter' && a[2]?.throughSeq !== undefined) reads.reread += rows;
      return out;
    };
  },
});

const metrics = createMetrics({ processMetrics: false });
const logger = createLogger({ level: 'warn' });
const denylist = createDenylist(counted, { clock: Date.now, maxLagMs: MAX_LAG_MS, logger, metrics });
await denylist.start();

/** Watches the loop for `ms` (or while `work` runs): monitorEventLoopDelay's histogram and the longest 5 ms-timer gap. */
async function watch(ms, work) {
  const h = monitorEventLoopDelay({ resolution: 5 });
  const before = { ...reads };
  let last = performance.now();
  let maxGap = 0;
  let over100 = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    const gap = now - last;
    if (gap > maxGap) maxGap = gap;
    if (gap > 100) over100++;
    last = now;
  }, 5);
  h.enable();
  await (work ? work() : new Promise((r) => setTimeout(r, ms)));
  h.disable();
  clearInterval(tick);
  // Work that never yields to timers (PGlite answers through microtasks) leaves no tick at all.
  maxGap = Math.max(maxGap, performance.now() - last);
  const q = (p) => (h.percentile(p) / 1e6).toFixed(1);
  return {
    p50: q(50),
    p99: q(99),
    max: (h.max / 1e6).toFixed(1),
    maxTimerGap: maxGap.toFixed(1),
    gapsOver100ms: over100,
    reads: reads.calls - before.calls,
    rowsRead: reads.rows - before.rows,
    ofWhichReread: reads.reread - before.reread,
    readMs: Math.round(reads.ms - before.ms),
    slowestReadMs: Math.round(reads.maxMs),
  };
}

const fmt = (o) => Object.entries(o).map(([k, v]) => `${k}=${v}`).join(' ');
say(`idle ${WATCH_MS / 5} ms, ${denylist.size} entries: ${fmt(await watch(WATCH_MS / 5))}`);

const now = Date.now();
const tr = performance.now();
const during = watch(0, async () => {
  for (let i = 0; i < N; i += BATCH) {
    const entries = [];
    for (let j = i; j < Math.min(N, i + BATCH); j++) entries.push({ jti: `burst-${j}`, expiresAt: now + HOUR });
    await store.revoke(entries, Date.now());
    // Batches arrive as separate requests or control-socket calls in real use. Without this a
    // tight loop of PGlite calls never lets a timer run: PGlite answers through microtasks.
    await new Promise((r) => setImmediate(r));
  }
});
const d = await during;
say(`revoked ${N} jtis in batches of ${BATCH}: ${Math.round(performance.now() - tr)} ms; meanwhile (the revoking calls block too): ${fmt(d)}`);
reads.maxMs = 0;
const w = await watch(WATCH_MS);
say(`after the burst, ${WATCH_MS} ms: ${fmt(w)}`);
say(`denylist.size=${denylist.size} (want ≥ ${N})`);
const ok = denylist.size >= N && [0, 1, N - 1].every((j) => denylist.has(`burst-${j}`));
await denylist.close();
await store.close();
await cleanup();
if (!ok) {
  console.error('FAILED: the denylist does not hold every revoked jti');
  process.exit(1);
}
