// Latency below saturation (issue 11): what a sidecar user feels. At a fixed request rate
// (autocannon `overallRate`, default 2000 req/s over 20 connections — well under every door's
// capacity), p50 / p99 / max of: the upstream directly, the Node door, the Bun door, and Node-door
// variants that each remove one suspected cause of its tail:
//   node-nolog    LOG_LEVEL=warn: no access line (pino's async write batching out of the picture)
//   node-semi64   --max-semi-space-size=64: a young generation 4x+ larger, so far fewer scavenges
//   node-gctrace  --trace-gc: the same as `node`, with every GC pause logged; the window's pauses
//                 are summed (count, total, max) and set beside its latency tail
//   node-2nd      a second measured window right after the first, on the same warm process: what
//                 is left of JIT warm-up in the first
// Every contestant is a fresh process, pinned alone to cpu 1; the upstream (bench/lib/upstream.mjs)
// and autocannon share cpu 0. Not a timed test: figures go to bench/LATENCY.md.
//
//   npm run bench:latency                     # build, then every row (20 s windows)
//   RATE=1000 DURATION=30 node bench/latency.mjs
//   ROWS=direct,node,bun node bench/latency.mjs
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeFixtures, scopegateConfig } from './lib/fixtures.mjs';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(BENCH_DIR);
const env = process.env;
const RATE = Number(env.RATE ?? 2000);
const CONNECTIONS = Number(env.CONNS ?? 20);
const WARMUP = Number(env.WARMUP ?? 5);
const DURATION = Number(env.DURATION ?? 20);
const OUT = env.LATENCY_FILE ?? join(BENCH_DIR, 'LATENCY.md');
const ALL_ROWS = ['direct', 'node', 'node-nolog', 'node-semi64', 'node-gctrace', 'node-2nd', 'bun'];
const ROWS = env.ROWS ? env.ROWS.split(',') : ALL_ROWS;
for (const r of ROWS) if (!ALL_ROWS.includes(r)) throw new Error(`unknown row ${r}; rows: ${ALL_ROWS.join(', ')}`);
const HAVE_TASKSET = spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0 && os.cpus().length >= 2;
const BUN = join(ROOT, 'node_modules/.bin/bun');
const UP_PORT = 18280;
const GW_PORT = 18287;

const children = new Set();
const pinned = (cpu, cmd, args) => (HAVE_TASKSET ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args]);
function start(cpu, cmd, args, extraEnv, logFile, pipe = false) {
  const [c, a] = pinned(cpu, cmd, args);
  const log = openSync(logFile, 'a');
  const child = spawn(c, a, { cwd: ROOT, env: { ...env, ...extraEnv }, stdio: ['ignore', pipe ? 'pipe' : log, log], detached: true });
  closeSync(log);
  child.exited = new Promise((resolve) => child.on('exit', (code, signal) => (children.delete(child), resolve({ code, signal }))));
  children.add(child);
  return child;
}
async function stop(child) {
  if (!children.has(child)) return;
  try {
    process.kill(-child.pid, 'SIGTERM');
  } catch {
    /* gone */
  }
  const t = setTimeout(() => {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, 3000);
  await child.exited;
  clearTimeout(t);
}
process.on('exit', () => {
  for (const c of children) {
    try {
      process.kill(-c.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

async function waitFor(url, ms = 30_000) {
  const until = Date.now() + ms;
  for (;;) {
    try {
      await fetch(url);
      return;
    } catch {
      if (Date.now() > until) throw new Error(`${url} did not answer within ${ms} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

// The load child: autocannon at a fixed overall rate, tokens rotated per connection. Prints one
// RESULT line per window; `windows` measured windows back to back after one warm-up.
const LOAD = `
import autocannon from 'autocannon';
import { readFileSync } from 'node:fs';
const [url, tokensFile, conns, rate, warm, dur, windows] = process.argv.slice(1);
const tokens = JSON.parse(readFileSync(tokensFile, 'utf8'));
const path = new URL(url).pathname;
let n = 0;
const run = (duration) => autocannon({
  url, connections: Number(conns), overallRate: Number(rate), duration: Number(duration),
  requests: [{ method: 'GET', path, setupRequest: (r) => ({ ...r, headers: { authorization: 'Bearer ' + tokens[n++ % tokens.length] } }) }],
});
await run(warm);
for (let w = 0; w < Number(windows); w++) {
  const t0 = Date.now();
  const r = await run(dur);
  console.log('RESULT ' + JSON.stringify({ t0, t1: Date.now(), rps: r.requests.average, p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, p999: r.latency.p99_9, max: r.latency.max, mean: r.latency.mean, non2xx: r.non2xx, errors: r.errors, timeouts: r.timeouts }));
}
`;

async function load(url, tokensFile, windows, logFile) {
  const child = start(0, process.execPath, ['--input-type=module', '-e', LOAD, url, tokensFile, String(CONNECTIONS), String(RATE), String(WARMUP), String(DURATION), String(windows)], {}, logFile, true);
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => (out += d));
  const exit = await child.exited;
  const results = out.split('\n').filter((l) => l.startsWith('RESULT ')).map((l) => JSON.parse(l.slice(7)));
  if (results.length !== windows) throw new Error(`load child failed (${JSON.stringify(exit)}): ${readFileSync(logFile, 'utf8').slice(-2000)}`);
  return results;
}

/** --trace-gc lines: `[pid:0x..]  12345 ms: Scavenge 10.1 (12.3) -> 9.8 (13.3) MB, 1.23 / 0.00 ms ...`. */
function gcPauses(logFile, fromMs, toMs, startedAt) {
  const pauses = [];
  for (const line of readFileSync(logFile, 'utf8').split('\n')) {
    const m = /\s(\d+) ms: (Scavenge|Mark-Compact|Mark-sweep|Minor Mark-Sweep|Mark-Compact \(reduce\))[^,]*, ([\d.]+) \/ ([\d.]+) ms/.exec(line);
    if (!m) continue;
    const at = startedAt + Number(m[1]);
    if (at >= fromMs && at <= toMs) pauses.push({ kind: m[2], ms: Number(m[3]) });
  }
  const sum = pauses.reduce((s, p) => s + p.ms, 0);
  const max = pauses.reduce((s, p) => Math.max(s, p.ms), 0);
  const byKind = {};
  for (const p of pauses) byKind[p.kind] = (byKind[p.kind] ?? 0) + 1;
  return { count: pauses.length, totalMs: Math.round(sum), maxMs: max, byKind };
}

const runDir = mkdtempSync(join(os.tmpdir(), 'sg-latency-'));
const fx = await makeFixtures(runDir, 1000);
const tokensFile = join(runDir, 'tokens-hs256.json');
writeFileSync(join(runDir, 'gw.yaml'), scopegateConfig({ port: GW_PORT, upstreamUrl: `http://127.0.0.1:${UP_PORT}`, alg: 'hs256', rateLimit: 'memory' }));
const upstream = start(0, process.execPath, [join(BENCH_DIR, 'lib/upstream.mjs')], { PORT: String(UP_PORT) }, join(runDir, 'upstream.log'));
await waitFor(`http://127.0.0.1:${UP_PORT}/`);

const rows = [];
try {
  for (const row of ROWS) {
    process.stderr.write(`latency: ${row} ...\n`);
    const logFile = join(runDir, `${row}.log`);
    if (row === 'direct') {
      const [r] = await load(`http://127.0.0.1:${UP_PORT}/v2/room/42`, tokensFile, 1, join(runDir, `load-${row}.log`));
      rows.push({ row, ...r });
      continue;
    }
    const runtime = row === 'bun' ? BUN : process.execPath;
    const flags = row === 'node-semi64' ? ['--max-semi-space-size=64'] : row === 'node-gctrace' ? ['--trace-gc'] : [];
    const gwEnv = { BENCH_HS_SECRET: fx.hsSecret, LOG_LEVEL: row === 'node-nolog' ? 'warn' : 'info' };
    const startedAt = Date.now();
    const gw = start(1, runtime, [...flags, 'dist/cli.js', 'serve', '--config', join(runDir, 'gw.yaml')], gwEnv, logFile);
    try {
      await waitFor(`http://127.0.0.1:${GW_PORT}/`);
      const windows = row === 'node-2nd' ? 2 : 1;
      const results = await load(`http://127.0.0.1:${GW_PORT}/v2/room/42`, tokensFile, windows, join(runDir, `load-${row}.log`));
      const r = results.at(-1);
      const extra = row === 'node-gctrace' ? { gc: gcPauses(logFile, r.t0, r.t1, startedAt) } : row === 'node-2nd' ? { first: results[0] } : {};
      rows.push({ row, ...r, ...extra });
    } finally {
      await stop(gw);
    }
  }
} finally {
  await stop(upstream);
}

const f = (x) => (x === undefined || x === null ? '—' : Number(x).toFixed(x >= 100 ? 0 : x >= 10 ? 1 : 2));
const direct = rows.find((r) => r.row === 'direct');
const lines = [
  '| row | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | p99 − direct | non-2xx | errors |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map((r) => `| ${r.row} | ${Math.round(r.rps)} | ${f(r.p50)} | ${f(r.p90)} | ${f(r.p99)} | ${f(r.p999)} | ${f(r.max)} | ${direct && r.row !== 'direct' ? f(r.p99 - direct.p99) : '—'} | ${r.non2xx} | ${r.errors + r.timeouts} |`),
];
const notes = [];
const gcRow = rows.find((r) => r.gc);
if (gcRow) {
  const g = gcRow.gc;
  notes.push(`- node-gctrace window: ${g.count} GC pauses (${Object.entries(g.byKind).map(([k, v]) => `${v} ${k}`).join(', ')}), ${g.totalMs} ms paused in all, longest ${f(g.maxMs)} ms; its p99 ${f(gcRow.p99)} ms, max ${f(gcRow.max)} ms.`);
}
const second = rows.find((r) => r.first);
if (second) notes.push(`- node-2nd: first window p50 ${f(second.first.p50)} / p99 ${f(second.first.p99)} / max ${f(second.first.max)} ms, second window on the same process p50 ${f(second.p50)} / p99 ${f(second.p99)} / max ${f(second.max)} ms.`);
const table = lines.join('\n');
console.log(table + '\n' + notes.join('\n'));
const md = `# Latency below saturation

Written by \`node bench/latency.mjs\` (${new Date().toISOString()}): ${RATE} req/s overall (autocannon \`overallRate\`),
${CONNECTIONS} connections, ${WARMUP} s warm-up, ${DURATION} s window, HS256 tokens (1000 rotated), memory rate-limit store,
\`LOG_LEVEL=info\` (one access line per request) unless the row says otherwise; ${HAVE_TASKSET ? 'contestant alone on cpu 1, upstream + autocannon on cpu 0' : 'no pinning'};
${os.cpus().length} cpu (${os.cpus()[0]?.model ?? '?'}), node ${process.version}, bun ${spawnSync(BUN, ['--version'], { encoding: 'utf8' }).stdout?.trim() ?? '?'}.
Rows are described in the script's header. autocannon's latencies are whole milliseconds.

${table}

${notes.join('\n')}
`;
writeFileSync(OUT, md + (env.LATENCY_APPEND ? `\n${readFileSync(env.LATENCY_APPEND, 'utf8')}` : ''));
rmSync(runDir, { recursive: true, force: true });
