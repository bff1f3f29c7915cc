#!/usr/bin/env node
// Memory bench of the verified-token cache: `npm run bench:memory` (builds, then runs this file
// with --expose-gc). Not a test: it prints a table and writes it into bench/RESULTS.md under
// "## Memory (npm run bench:memory)" (that section only; the rest of the file is left alone).
//
// Each scenario runs in its own child process (so RSS is its own): the real verifier from dist/
// verifies distinct HS256 tokens (signed here with node:crypto createHmac: minting a
// million with jose would dominate the run), then reports heapUsed and RSS after gc, the peak
// RSS, and the cache's entry count and estimated bytes. Scenarios:
//   token kind  small  ~330 B: sub, client_type, a two-scope string, jti-less
//               8kb    ~8 KB: the bulk in the scope claim (280 scopes) — kept by the principal,
//                      the issue's "1.4 GB at 100k entries" case
//               8kb-pad ~8 KB: the bulk in a claim nothing maps (`pad`) — dropped after verifying
//   cache       entries   max_entries 100000, max_bytes 1 TiB (bounded by entries only: before)
//               default   max_entries 100000, max_bytes 64 MiB (the schema defaults)
//
// Knobs (env): TOKENS (1000000: tokens per `small` row), TOKENS_8KB (200000: per 8 KB row; the
// cache reaches its bound after 100k at the latest, more only churn it, and an 8 KB token costs
// ~4x a small one to mint and verify; set 1000000 for the full million), SCENARIOS (comma list
// of kind/cache, default: small and 8kb, both bounds; 8kb-pad/… on request), PARALLEL (2: rows
// run at once, each in its own process), RESULTS_FILE (bench/RESULTS.md), DIST (the built dist/
// directory, default ../dist). A heap limit: NODE_OPTIONS=--max-old-space-size=512.
import { fork } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(BENCH_DIR);
const env = process.env;
const TOKENS = Number(env.TOKENS ?? 1_000_000);
const TOKENS_8KB = Number(env.TOKENS_8KB ?? 200_000);
const PARALLEL = Math.max(1, Number(env.PARALLEL ?? 2));
const RESULTS_FILE = resolve(ROOT, env.RESULTS_FILE ?? 'bench/RESULTS.md');
const DIST = resolve(ROOT, env.DIST ?? 'dist');
const SECRET = 'bench-secret-0123456789abcdef-0123456789';
const HEADING = '## Memory (npm run bench:memory)';
const DEFAULT_SCENARIOS = ['small/entries', 'small/default', '8kb/entries', '8kb/default'];
const MiB = 1024 * 1024;

/** dist/ keeps src/'s layout (tsconfig.build.json rootDir src); a build with rootDir '.' nests it in dist/src/. */
function distModule(rel) {
  for (const base of [DIST, join(DIST, 'src')]) {
    const file = join(base, rel);
    if (existsSync(file)) return pathToFileURL(file).href;
  }
  throw new Error(`${rel} not found under ${DIST}: run npm run build first`);
}

// ── child: one scenario ─────────────────────────────────────────────────────────────────────
async function child(kind, cacheMode, count) {
  if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc');
  const { createTokenVerifier } = await import(distModule('auth/verify-token.js'));
  const { GatewayConfigSchema } = await import(distModule('config/schema.js'));
  const cache = cacheMode === 'entries' ? { max_entries: 100_000, max_bytes: 2 ** 40 } : {};
  const tokens = GatewayConfigSchema.parse({
    upstreams: { default: { url: 'http://127.0.0.1:9' } },
    tokens: { cache, issuers: [{ name: 'local', issuer: 'bench', algorithms: ['HS256'], secrets: [SECRET] }] },
  }).tokens;
  const verifier = await createTokenVerifier(tokens, { clock: Date.now });

  const header = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
  const exp = Math.floor(Date.now() / 1000) + 3600;
  const pad = 'p'.repeat(5600);
  const mint = (i) => {
    const claims = { iss: 'bench', sub: `user-${i}`, client_type: 'user', exp };
    if (kind === 'small') claims.scope = 'view_group view_room';
    else if (kind === '8kb-pad') Object.assign(claims, { scope: 'view_group view_room', pad });
    else claims.scope = Array.from({ length: 280 }, (_, j) => `scope_${j}_${String(i).padStart(10, '0')}`).join(' ');
    const input = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
    return `${input}.${createHmac('sha256', SECRET).update(input).digest('base64url')}`;
  };
  const tokenBytes = mint(0).length;

  globalThis.gc();
  const base = process.memoryUsage();
  const started = Date.now();
  const BATCH = 64;
  for (let i = 0; i < count; i += BATCH) {
    const batch = [];
    for (let j = i; j < Math.min(count, i + BATCH); j++) batch.push(verifier.verify(mint(j)));
    await Promise.all(batch);
  }
  const seconds = (Date.now() - started) / 1000;
  globalThis.gc();
  globalThis.gc();
  const m = process.memoryUsage();
  const stats = verifier.cacheStats();
  return {
    kind,
    cacheMode,
    count,
    tokenBytes,
    seconds,
    entries: stats.entries,
    cacheBytes: stats.bytes,
    heapUsed: m.heapUsed,
    heapGrowth: m.heapUsed - base.heapUsed,
    rss: m.rss,
    peakRss: process.resourceUsage().maxRSS * 1024,
  };
}

// ── parent: run the scenarios, write the table ──────────────────────────────────────────────
function runChild(kind, cacheMode, count) {
  return new Promise((resolveRun) => {
    const p = fork(fileURLToPath(import.meta.url), ['--child', kind, cacheMode, String(count)], {
      execArgv: [...process.execArgv.filter((a) => !a.startsWith('--max-old-space-size')), '--expose-gc'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let result;
    p.on('message', (m) => {
      result = m;
    });
    p.on('exit', (code, signal) => resolveRun(result ?? { kind, cacheMode, count, error: `exited with ${signal ?? code} (out of memory?)` }));
  });
}

const mib = (b) => (b / MiB).toFixed(0);

async function main() {
  const scenarios = (env.SCENARIOS ? env.SCENARIOS.split(',') : DEFAULT_SCENARIOS).map((s) => s.trim()).filter(Boolean);
  const started = Date.now();
  const rows = new Array(scenarios.length);
  let next = 0;
  async function worker() {
    while (next < scenarios.length) {
      const at = next++;
      const [kind, cacheMode] = scenarios[at].split('/');
      const count = kind === 'small' ? TOKENS : TOKENS_8KB;
      console.log(`${scenarios[at]}: ${count} tokens …`);
      const r = await runChild(kind, cacheMode, count);
      rows[at] = r;
      console.log(`${scenarios[at]}: ${r.error ? `FAILED: ${r.error.split('\n')[0]}` : `${r.seconds.toFixed(0)} s, heap ${mib(r.heapUsed)} MiB, RSS ${mib(r.rss)} MiB`}`);
    }
  }
  await Promise.all(Array.from({ length: Math.min(PARALLEL, scenarios.length) }, worker));
  const wall = (Date.now() - started) / 1000;
  const table = [
    '| tokens | verified | token size | cache bound | entries kept | estimated bytes | heapUsed after gc | heap growth | RSS after gc | peak RSS | heap per entry | time |',
    '| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows.map((r) =>
      r.error
        ? `| ${r.kind} | ${r.count.toLocaleString('en-US')} | – | ${r.cacheMode} | – | – | – | – | – | – | – | failed: ${r.error.split('\n')[0]} |`
        : `| ${r.kind} | ${r.count.toLocaleString('en-US')} | ${r.tokenBytes} B | ${r.cacheMode === 'entries' ? '100k entries only' : '100k entries, 64 MiB'} | ${r.entries.toLocaleString('en-US')} | ${mib(r.cacheBytes)} MiB | ${mib(r.heapUsed)} MiB | ${mib(r.heapGrowth)} MiB | ${mib(r.rss)} MiB | ${mib(r.peakRss)} MiB | ${r.entries ? Math.round(r.heapGrowth / r.entries).toLocaleString('en-US') : '–'} B | ${r.seconds.toFixed(0)} s |`,
    ),
  ].join('\n');
  console.log(`\n${table}`);

  const section = `${HEADING}

Written by \`bench/memory.mjs\` on ${new Date().toISOString()}: ${os.cpus().length} CPU(s) (${os.cpus()[0]?.model.trim() ?? 'unknown'}), Node ${process.version}, ${os.type()} ${os.release()} ${os.arch()}.

Distinct HS256 tokens (the "verified" column), each verified once through the real verifier (\`dist/auth/verify-token.js\`, default \`tokens\` settings but for the cache bound), one child process per row, ${PARALLEL} at a time (${wall.toFixed(0)} s in all; load average at the end ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}); memory read after two forced gcs. \`8kb\` carries its bulk in the scope claim (kept by every cached principal), \`8kb-pad\` in a claim nothing maps (dropped once verified). "estimated bytes" is the cache's own \`sizeCalculation\` total (what \`tokens.cache.max_bytes\` bounds); "heap growth" is heapUsed after the run minus before it, so "heap per entry" is the measured cost of one cached token. The estimate also counts the identity headers the proxy caches per forwarded principal (never built here), so it errs high.

${table}
`;
  let text = existsSync(RESULTS_FILE) ? readFileSync(RESULTS_FILE, 'utf8') : '';
  const at = text.indexOf(HEADING);
  if (at === -1) {
    text = `${text.replace(/\n*$/, '\n')}\n${section}`;
  } else {
    const next = text.indexOf('\n## ', at + HEADING.length);
    text = text.slice(0, at) + section + (next === -1 ? '' : text.slice(next + 1));
  }
  writeFileSync(RESULTS_FILE, text);
  console.log(`\nwrote ${RESULTS_FILE}`);
  if (rows.some((r) => r.error)) process.exitCode = 3;
}

if (process.argv[2] === '--child') {
  child(process.argv[3], process.argv[4], Number(process.argv[5])).then(
    (r) => process.send(r, () => process.exit(0)),
    (e) => {
      process.send({ error: String(e?.stack ?? e) }, () => process.exit(1));
    },
  );
} else {
  await main();
}
