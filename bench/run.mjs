#!/usr/bin/env node
// scopegate's own throughput bench: `npm run bench` (builds, then runs this file).
//
// One upstream (node:http, {"ok":true}) and, one at a time, each contestant in its own child
// process: `direct` (no proxy), bare `http-proxy`, bare `undici`, scopegate's CLI in its proxy
// configurations (memory / Redis / Redis Cluster store, RS256, no limits, the Bun door), and the
// token service's client_credentials issue rate (hot-client cache, and scrypt on every request).
// autocannon runs in a child too. With taskset, the contestant sits alone on PROXY_CPU (1) and the
// upstream + load generator (+ the bench's own Redis Cluster) on LOAD_CPU (0).
//
// Knobs (env): DURATION (10 s), WARMUP (2 s), CONNECTIONS (50), REPS (1), CONTESTANTS (comma list,
// default all; `scopegate` = the scopegate proxy rows, `token-issue` = the two token rows),
// TOKENS (1000 per alg), PROXY_CPU, LOAD_CPU,
// REDIS_URL (redis://127.0.0.1:6379), REDIS_CLUSTER (comma list of a Redis Cluster's seed URLs
// for the scopegate-redis-cluster row; unset: the bench starts its own three-master cluster with
// redis-server / redis-cli on free ports and stops it at the end, or skips the row with a note
// when those are missing), REDIS_CLUSTER_CPU (LOAD_CPU: where that cluster runs),
// TOKEN_CONNECTIONS (10: connections of the hot token row), TOKEN_COLD_CONNECTIONS (4: of the cold
// one, libuv's threadpool size), TOKEN_CLIENTS (2000: clients the cold token row walks, more than
// the hot-client cache's 1000),
// RESULTS_FILE (bench/RESULTS.md), KEEP_RUN_DIR=1,
// NOISE_MAX (15), NOISY_RETRIES (2), PROFILE=1 (scopegate runs with --cpu-prof into the run dir,
// which is then kept; profiling slows it down, so such a run's numbers are not results).
// Exit status: 0 all rows valid, 3 some row invalid, 1 the bench itself failed.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { makeFixtures, scopegateConfig, tokenServiceConfig } from './lib/fixtures.mjs';
import { REDIS_SERVER, clusterToolsMissing, startRedisCluster } from './lib/redis-cluster.mjs';
import { seedTokenClients } from './lib/token-clients.mjs';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(BENCH_DIR);
const BUN = join(ROOT, 'node_modules', '.bin', 'bun');
const env = process.env;
const num = (name, dflt) => {
  const v = env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(String(v).replace(/s$/, ''));
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got "${v}"`);
  return n;
};
const DURATION = num('DURATION', 10);
const WARMUP = num('WARMUP', 2);
const CONNECTIONS = num('CONNECTIONS', 50);
const REPS = Math.max(1, num('REPS', 1));
const N_TOKENS = Math.max(1, num('TOKENS', 1000));
const REDIS_URL = env.REDIS_URL || 'redis://127.0.0.1:6379';
const REDIS_CLUSTER = (env.REDIS_CLUSTER || '').split(',').map((s) => s.trim()).filter(Boolean);
const RESULTS_FILE = env.RESULTS_FILE || join(BENCH_DIR, 'RESULTS.md');
const URL_PATH = '/v2/room/42';
const NOISE_MAX = num('NOISE_MAX', 15);
const NOISY_RETRIES = num('NOISY_RETRIES', 2);
const TOKEN_CONNECTIONS = Math.max(1, num('TOKEN_CONNECTIONS', 10));
// scrypt runs on libuv's threadpool (4 threads): more connections than that only queue.
const TOKEN_COLD_CONNECTIONS = Math.max(1, num('TOKEN_COLD_CONNECTIONS', 4));
const TOKEN_CLIENTS = num('TOKEN_CLIENTS', 2000);
const TOKEN_PATH = '/v2/oauth/token';
const TOKEN_BODY = 'grant_type=client_credentials&scope=send_notification';

const HAVE_TASKSET = spawnSync('taskset', ['-V'], { stdio: 'ignore' }).status === 0 && os.cpus().length >= 2;
const PROXY_CPU = env.PROXY_CPU ?? '1';
const LOAD_CPU = env.LOAD_CPU ?? '0';
const REDIS_CLUSTER_CPU = env.REDIS_CLUSTER_CPU ?? LOAD_CPU;

/** Every contestant, in run order. `alg` picks the token set the load sends. */
const ALL = [
  { name: 'direct', kind: 'direct', alg: 'hs256', what: 'autocannon straight at the upstream (ceiling)' },
  { name: 'http-proxy', kind: 'node', script: 'lib/http-proxy.mjs', alg: 'hs256', what: 'bare http-proxy, keep-alive agent, no auth' },
  { name: 'undici', kind: 'node', script: 'lib/undici-proxy.mjs', alg: 'hs256', what: 'bare undici Pool.stream, no auth' },
  { name: 'scopegate-hs256', kind: 'scopegate', alg: 'hs256', rateLimit: 'memory', what: 'HS256, memory rate-limit store' },
  { name: 'scopegate-rs256', kind: 'scopegate', alg: 'rs256', rateLimit: 'memory', what: 'RS256 (jwks_file), memory store' },
  { name: 'scopegate-nolimit', kind: 'scopegate', alg: 'hs256', rateLimit: 'off', what: 'HS256, rate_limit.enabled: false' },
  { name: 'scopegate-redis', kind: 'scopegate', alg: 'hs256', rateLimit: 'redis', what: 'HS256, Redis rate-limit store' },
  { name: 'scopegate-redis-cluster', kind: 'scopegate', alg: 'hs256', rateLimit: 'redis-cluster', what: 'HS256, Redis Cluster rate-limit store (REDIS_CLUSTER, or 3 masters the bench starts)' },
  { name: 'scopegate-bun-hs256', kind: 'scopegate', alg: 'hs256', rateLimit: 'memory', runtime: 'bun', what: 'the Bun door: HS256, memory store' },
  { name: 'scopegate-bun-rs256', kind: 'scopegate', alg: 'rs256', rateLimit: 'memory', runtime: 'bun', what: 'the Bun door: RS256 (jwks_file), memory store' },
  { name: 'token-issue-hot', kind: 'token', alg: 'hs256', client: 'hot', what: 'token service: POST /v2/oauth/token client_credentials, one client (hot-client cache: scrypt once per 60 s)' },
  { name: 'token-issue-cold', kind: 'token', alg: 'hs256', client: 'cold', what: 'token service: client_credentials, another client every request (TOKEN_CLIENTS): scrypt N=2^15 r=8 p=1 every time' },
];

/** scopegate's config for a contestant; the cluster row is the Redis row with redis_cluster seeds. */
function contestantConfig(c, port) {
  if (c.kind === 'token') return tokenServiceConfig({ port, upstreamUrl, storeDir: tokenStoreDir });
  return scopegateConfig({
    port,
    upstreamUrl,
    alg: c.alg,
    rateLimit: c.rateLimit,
    jwksFile: fixtures.jwksFile,
    redisUrl: REDIS_URL,
    redisCluster: clusterSeeds,
  });
}

// ---------------------------------------------------------------------------------------------
// Child processes: each in its own process group, all stopped on exit, failure or signal.

const children = new Set();

function pinned(cpu, cmd, args) {
  return HAVE_TASKSET ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args];
}

/**
 * Spawns a pinned child in its own process group. stderr (and stdout unless `pipeStdout`) go to
 * `logFile`: an unread stdout pipe would stall a process that logs once its buffer is full.
 */
function startChild(label, cpu, cmd, args, extraEnv, logFile, pipeStdout = false) {
  const [c, a] = pinned(cpu, cmd, args);
  const log = openSync(logFile, 'a');
  const child = spawn(c, a, { cwd: ROOT, env: { ...env, ...extraEnv }, stdio: ['ignore', pipeStdout ? 'pipe' : log, log], detached: true });
  closeSync(log);
  child.label = label;
  child.logFile = logFile;
  child.exitInfo = null;
  child.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      child.exitInfo = { code, signal };
      children.delete(child);
      resolve(child.exitInfo);
    });
  });
  child.on('error', (e) => {
    child.exitInfo = { code: null, signal: null, error: e.message };
    children.delete(child);
  });
  children.add(child);
  return child;
}

function signalGroup(child, sig) {
  try {
    process.kill(-child.pid, sig);
  } catch {
    /* already gone */
  }
}

/** SIGTERM the child's group, SIGKILL after 3 s. */
async function stopChild(child) {
  if (!child || child.exitInfo) return;
  signalGroup(child, 'SIGTERM');
  const t = setTimeout(() => signalGroup(child, 'SIGKILL'), 3000);
  await child.exited;
  clearTimeout(t);
}

let cleaningUp = false;
function killAllSync() {
  for (const c of children) signalGroup(c, 'SIGKILL');
}
process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, async () => {
    if (cleaningUp) return;
    cleaningUp = true;
    process.stderr.write(`\nbench: ${sig}, stopping ${children.size} child process(es)\n`);
    await Promise.all([...children].map(stopChild));
    if (runDir && !env.KEEP_RUN_DIR) rmSync(runDir, { recursive: true, force: true });
    process.exit(130);
  });
}

function tail(file, lines = 15) {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until something answers HTTP on the port (any status), or the child dies. */
async function waitHttp(port, child, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child?.exitInfo) throw new Error(`${child.label} exited during start-up (${JSON.stringify(child.exitInfo)}):\n${tail(child.logFile)}`);
    try {
      await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) });
      return;
    } catch {
      await sleep(100);
    }
  }
  throw new Error(`${child?.label ?? 'server'} did not answer on 127.0.0.1:${port} within ${timeoutMs} ms:\n${child ? tail(child.logFile) : ''}`);
}

/** true when something speaking Redis answers a PING at the URL's host:port. */
function redisReachable(url) {
  return new Promise((resolve) => {
    let u;
    try {
      u = new URL(url);
    } catch {
      return resolve(false);
    }
    const sock = net.connect(Number(u.port || 6379), u.hostname || '127.0.0.1');
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.on('error', () => done(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => done(/^[+-]/.test(d.toString())));
  });
}

/** utime+stime of a process in clock ticks (all threads), or null. */
function cpuTicks(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return null;
  }
}
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// ---------------------------------------------------------------------------------------------
// One contestant turn: start, check, load, stop.

const basic = (id, secret) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;

/** One client_credentials request; resolves { status, body }. */
async function askToken(port, authorization) {
  const res = await fetch(`http://127.0.0.1:${port}${TOKEN_PATH}`, {
    method: 'POST',
    headers: { authorization, 'content-type': 'application/x-www-form-urlencoded' },
    body: TOKEN_BODY,
  });
  return { status: res.status, body: await res.text() };
}

/** The token rows' check: the hot client gets a token (a JWT, Bearer), a wrong secret gets 401. */
async function checkToken(port) {
  const problems = [];
  const ok = await askToken(port, basic(tokenClients.hot.id, tokenClients.hot.secret));
  let json = null;
  try {
    json = JSON.parse(ok.body);
  } catch {
    /* reported below */
  }
  if (ok.status !== 200 || !/^[\w-]+\.[\w-]+\.[\w-]+$/.test(json?.access_token ?? '') || !/^bearer$/i.test(json?.token_type ?? '')) {
    problems.push(`client_credentials: ${ok.status} ${ok.body.slice(0, 200)}`);
  }
  const bad = await askToken(port, basic(tokenClients.hot.id, `${tokenClients.hot.secret}x`));
  if (bad.status !== 401) problems.push(`wrong secret: ${bad.status} (want 401)`);
  return problems;
}

async function check(port, c) {
  if (c.kind === 'token') return checkToken(port);
  const url = `http://127.0.0.1:${port}${URL_PATH}`;
  const token = fixtures.tokens[c.alg][0];
  const problems = [];
  const ok = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  const body = await ok.text();
  if (ok.status !== 200 || body !== '{"ok":true}') problems.push(`valid token: ${ok.status} ${body.slice(0, 200)}`);
  if (c.kind === 'scopegate') {
    const hasLimit = ok.headers.has('x-ratelimit-limit');
    if (c.rateLimit === 'off' && hasLimit) problems.push('rate_limit disabled but X-Ratelimit-Limit sent');
    if (c.rateLimit !== 'off' && !hasLimit) problems.push('rate limit on but no X-Ratelimit-Limit header');
    const none = await fetch(url);
    await none.text();
    if (none.status !== 401) problems.push(`no token: ${none.status} (want 401)`);
    const bad = await fetch(url, { headers: { authorization: `Bearer ${token.slice(0, -4)}AAAA` } });
    await bad.text();
    if (bad.status !== 401) problems.push(`bad signature: ${bad.status} (want 401)`);
  }
  return problems;
}

/** Machine-wide busy and steal ticks (all cpus) from /proc/stat, or null. */
function machineTicks() {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    const busy = f[0] + f[1] + f[2] + f[5] + f[6];
    return { busy, steal: f[7] ?? 0 };
  } catch {
    return null;
  }
}

function sample(pids) {
  return { at: process.hrtime.bigint(), machine: machineTicks(), procs: pids.map((p) => (p ? cpuTicks(p) : null)) };
}

/**
 * One warm-up + measured autocannon run in a pinned child. Besides autocannon's numbers, returns
 * the contestant's CPU % and `otherPct`: machine CPU busy time during the window not spent by the
 * contestant, the upstream or the load child (other sessions' work; also loopback softirq), in %
 * of one core.
 */
async function runLoad(port, c, pid) {
  const token = c.kind === 'token';
  const url = `http://127.0.0.1:${port}${token ? TOKEN_PATH : URL_PATH}`;
  const tokensFile = token ? tokenSpecFile(c) : join(runDir, `tokens-${c.alg}.json`);
  const logFile = join(runDir, `load-${c.name}.log`);
  const child = startChild(
    `load(${c.name})`,
    LOAD_CPU,
    process.execPath,
    [join(BENCH_DIR, 'load.mjs'), url, tokensFile, String(connectionsOf(c)), String(WARMUP), String(DURATION)],
    {},
    logFile,
    true,
  );
  // The bench's own Redis Cluster is ours too: its CPU is not "other" work.
  const extra = c.rateLimit === 'redis-cluster' ? clusterPids : [];
  const pids = [pid, upstreamPid, child.pid, ...extra];
  let out = '';
  let t0 = null;
  let t1 = null;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    out += d;
    if (t0 === null && out.includes('measure-start\n')) t0 = sample(pids);
    if (t1 === null && out.includes('measure-end\n')) t1 = sample(pids);
  });
  const exit = await child.exited;
  const line = out.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`load generator failed (${JSON.stringify(exit)}):\n${tail(logFile)}`);
  const r = JSON.parse(line.slice(7));
  if (t0 && t1) {
    const secs = Number(t1.at - t0.at) / 1e9;
    const pct = (a, b) => (a == null || b == null ? null : ((b - a) / CLK_TCK / secs) * 100);
    const procPct = pids.map((_, i) => pct(t0.procs[i], t1.procs[i]));
    r.cpuPct = procPct[0];
    if (t0.machine && t1.machine) {
      const ours = procPct.reduce((s, x) => s + (x ?? 0), 0);
      r.otherPct = Math.max(0, pct(t0.machine.busy, t1.machine.busy) - ours);
      r.stealPct = pct(t0.machine.steal, t1.machine.steal);
    }
  }
  return r;
}

const connectionsOf = (c) => (c.kind !== 'token' ? CONNECTIONS : c.client === 'cold' ? TOKEN_COLD_CONNECTIONS : TOKEN_CONNECTIONS);

/**
 * What one secret check costs: the product's own hashSecret (scrypt N=2^15, r=8, p=1, as stored
 * for every client) timed 7 times in a child pinned like the contestant; the median, in ms.
 */
function measureScrypt() {
  const code = `const { hashSecret } = await import(${JSON.stringify(pathToFileURL(join(ROOT, 'dist', 'token-service', 'secrets.js')).href)});
const t = [];
for (let i = 0; i < 7; i++) { const a = process.hrtime.bigint(); await hashSecret('bench-secret'); t.push(Number(process.hrtime.bigint() - a) / 1e6); }
console.log(JSON.stringify(t));`;
  const [cmd, args] = pinned(PROXY_CPU, process.execPath, ['--input-type=module', '-e', code]);
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  try {
    return median(JSON.parse(r.stdout.trim().split('\n').pop()));
  } catch {
    console.log(`note: timing scrypt failed: ${(r.stderr || r.error?.message || '').slice(0, 300)}`);
    return null;
  }
}

/** The load spec of a token row: the hot client's Authorization, or every cold client's in turn. */
function tokenSpecFile(c) {
  const file = join(runDir, `load-${c.name}.json`);
  const authorizations = c.client === 'hot' ? [basic(tokenClients.hot.id, tokenClients.hot.secret)] : tokenClients.cold.ids.map((id) => basic(id, tokenClients.cold.secret));
  writeFileSync(file, JSON.stringify({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: TOKEN_BODY, authorizations }));
  return file;
}

async function turn(c, rep) {
  const row = { name: c.name, kind: c.kind, what: c.what, rep, valid: false, notes: [] };
  let child = null;
  let port = upstreamPort;
  try {
    if (c.kind !== 'direct') {
      port = await freePort();
      const logFile = join(runDir, `${c.name}-rep${rep}.log`);
      if (c.kind === 'node') {
        child = startChild(c.name, PROXY_CPU, process.execPath, [join(BENCH_DIR, c.script)], { PORT: String(port), UPSTREAM_URL: upstreamUrl }, logFile);
      } else {
        if (c.kind === 'token' && !tokenClients) {
          tokenStoreDir = join(runDir, 'token-store');
          tokenClients = await seedTokenClients({ root: ROOT, storeDir: tokenStoreDir, cold: TOKEN_CLIENTS });
        }
        const cfgFile = join(runDir, `${c.name}.yaml`);
        writeFileSync(cfgFile, contestantConfig(c, port));
        child = startChild(
          c.name,
          PROXY_CPU,
          c.runtime === 'bun' ? BUN : process.execPath,
          [...(env.PROFILE && c.runtime !== 'bun' ? ['--cpu-prof', '--cpu-prof-dir', join(runDir, 'profiles'), '--cpu-prof-name', `${c.name}-rep${rep}.cpuprofile`] : []), join(ROOT, 'dist', 'cli.js'), 'serve', '--config', cfgFile],
          { LOG_LEVEL: env.LOG_LEVEL || 'info', BENCH_HS_SECRET: fixtures.hsSecret, NODE_ENV: 'production' },
          logFile,
        );
      }
      await waitHttp(port, child);
    }
    const problems = await check(port, c);
    if (problems.length) {
      row.notes.push(...problems.map((p) => `check: ${p}`));
      return row;
    }
    let r;
    for (let attempt = 1; ; attempt++) {
      r = await runLoad(port, c, child?.pid);
      r.tries = attempt;
      const noise = (r.otherPct ?? 0) + (r.stealPct ?? 0);
      if (noise <= NOISE_MAX || attempt > NOISY_RETRIES || child?.exitInfo) break;
      process.stdout.write(`noisy (other ${fmt(r.otherPct)} %, steal ${fmt(r.stealPct)} %), again in 5 s ... `);
      await sleep(5000);
    }
    if ((r.otherPct ?? 0) + (r.stealPct ?? 0) > NOISE_MAX) r.noisy = true;
    Object.assign(row, r);
    const warm = r.warmup ?? { non2xx: 0, errors: 0, timeouts: 0 };
    if (child?.exitInfo) row.notes.push(`crashed during load: ${JSON.stringify(child.exitInfo)}; stderr:\n${tail(child.logFile)}`);
    if (r.non2xx || r.errors || r.timeouts) row.notes.push(`measured: non2xx=${r.non2xx} errors=${r.errors} timeouts=${r.timeouts} status=${JSON.stringify(r.statusCodes)}`);
    if (warm.non2xx || warm.errors || warm.timeouts) row.notes.push(`warm-up: non2xx=${warm.non2xx} errors=${warm.errors} timeouts=${warm.timeouts} status=${JSON.stringify(warm.statusCodes)}`);
    if (c.kind === 'token' && r.rps > 0 && r.cpuPct != null) row.cpuMsPerReq = (r.cpuPct / 100 / r.rps) * 1000;
    row.valid = row.notes.length === 0 && r.requests > 0;
    if (child) {
      const errText = tail(child.logFile, 5);
      if (errText && !row.valid) row.notes.push(`log tail:\n${errText}`);
    }
  } catch (e) {
    row.notes.push(String(e?.message ?? e));
  } finally {
    await stopChild(child);
  }
  return row;
}

// ---------------------------------------------------------------------------------------------
// Report.

const fmt = (n, d = 0) => (n == null || Number.isNaN(n) ? '–' : n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }));

function aggregate(rows) {
  const by = new Map();
  for (const r of rows) {
    if (!by.has(r.name)) by.set(r.name, []);
    by.get(r.name).push(r);
  }
  const agg = [];
  for (const [name, rs] of by) {
    const valid = rs.every((r) => r.valid);
    const ok = rs.filter((r) => r.rps != null);
    agg.push({
      name,
      kind: rs[0].kind,
      what: rs[0].what,
      valid,
      reps: rs.map((r) => r.rps),
      rps: ok.length ? median(ok.map((r) => r.rps)) : null,
      p50: ok.length ? median(ok.map((r) => r.p50)) : null,
      p99: ok.length ? median(ok.map((r) => r.p99)) : null,
      cpuPct: ok.some((r) => r.cpuPct != null) ? median(ok.filter((r) => r.cpuPct != null).map((r) => r.cpuPct)) : null,
      otherPct: ok.some((r) => r.otherPct != null) ? Math.max(...ok.map((r) => r.otherPct ?? 0)) : null,
      stealPct: ok.some((r) => r.stealPct != null) ? Math.max(...ok.map((r) => r.stealPct ?? 0)) : null,
      tries: rs.reduce((s, r) => s + (r.tries ?? 0), 0),
      cpuMsPerReq: ok.some((r) => r.cpuMsPerReq != null) ? median(ok.filter((r) => r.cpuMsPerReq != null).map((r) => r.cpuMsPerReq)) : null,
      rotated: rs.reduce((s, r) => s + (r.rotated ?? 0), 0),
      distinct: rs[0].distinct ?? null,
      noisy: rs.some((r) => r.noisy),
      non2xx: rs.reduce((s, r) => s + (r.non2xx ?? 0) + (r.warmup?.non2xx ?? 0), 0),
      errors: rs.reduce((s, r) => s + (r.errors ?? 0) + (r.timeouts ?? 0) + (r.warmup?.errors ?? 0) + (r.warmup?.timeouts ?? 0), 0),
      notes: rs.flatMap((r) => r.notes.map((n) => (rs.length > 1 ? `rep ${r.rep}: ${n}` : n))),
    });
  }
  const ref = (n) => agg.find((a) => a.name === n && a.valid)?.rps ?? null;
  const ratio = (a, b) => (a != null && b != null && b > 0 ? a / b : null);
  for (const a of agg) {
    // The token rows answer another request (POST /v2/oauth/token): no proxy ratio.
    const proxied = a.valid && a.kind !== 'token';
    a.vsHttpProxy = proxied ? ratio(a.rps, ref('http-proxy')) : null;
    a.vsUndici = proxied ? ratio(a.rps, ref('undici')) : null;
    a.vsDirect = proxied ? ratio(a.rps, ref('direct')) : null;
  }
  const pairs = [
    ['scopegate memory vs scopegate no-limits', 'scopegate-hs256', 'scopegate-nolimit'],
    ['scopegate redis vs scopegate no-limits', 'scopegate-redis', 'scopegate-nolimit'],
    ['scopegate redis cluster vs single redis', 'scopegate-redis-cluster', 'scopegate-redis'],
    ['scopegate RS256 vs HS256 (both memory)', 'scopegate-rs256', 'scopegate-hs256'],
    ['Bun door vs Node door (HS256)', 'scopegate-bun-hs256', 'scopegate-hs256'],
    ['Bun door vs Node door (RS256)', 'scopegate-bun-rs256', 'scopegate-rs256'],
    ['scopegate no-limits vs bare undici', 'scopegate-nolimit', 'undici'],
    ['bare undici vs bare http-proxy', 'undici', 'http-proxy'],
    ['token issue: hot-client cache vs scrypt every request', 'token-issue-hot', 'token-issue-cold'],
  ].map(([label, a, b]) => ({ label, a, b, value: ratio(ref(a), ref(b)) }));
  return { agg, pairs };
}

function table(agg, markdown) {
  const head = ['contestant', 'req/s', 'p50 ms', 'p99 ms', 'proxy CPU %', 'other %', 'steal %', 'non-2xx', 'errors', '× http-proxy', '× undici', '× direct', 'valid'];
  const rows = agg.map((a) => [
    a.name,
    fmt(a.rps),
    fmt(a.p50, 2),
    fmt(a.p99, 2),
    a.name === 'direct' ? '–' : fmt(a.cpuPct),
    fmt(a.otherPct),
    fmt(a.stealPct),
    fmt(a.non2xx),
    fmt(a.errors),
    a.vsHttpProxy == null ? '–' : fmt(a.vsHttpProxy, 2),
    a.vsUndici == null ? '–' : fmt(a.vsUndici, 2),
    a.vsDirect == null ? '–' : fmt(a.vsDirect, 2),
    (a.valid ? 'ok' : 'INVALID') + (a.noisy ? ' (noisy)' : ''),
  ]);
  if (markdown) {
    const line = (cells) => `| ${cells.join(' | ')} |`;
    return [line(head), line(head.map((_, i) => (i === 0 || i === head.length - 1 ? '---' : '---:'))), ...rows.map(line)].join('\n');
  }
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

function machine() {
  const cpus = os.cpus();
  return {
    nproc: cpus.length,
    cpu: cpus[0]?.model ?? 'unknown',
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    loadavg: os.loadavg().map((x) => x.toFixed(2)).join(' '),
    pinning: HAVE_TASKSET ? `taskset: contestant on cpu ${PROXY_CPU}; upstream + autocannon on cpu ${LOAD_CPU}` : 'none (taskset missing or < 2 cpus)',
  };
}

function markdownReport({ agg, pairs }, m, skipped, startedAt) {
  const knobs = `DURATION=${DURATION} WARMUP=${WARMUP} CONNECTIONS=${CONNECTIONS} REPS=${REPS} TOKENS=${N_TOKENS}`;
  const lines = [
    '# scopegate bench results',
    '',
    `Written by \`bench/run.mjs\` (\`npm run bench\`) on ${startedAt}. See [README.md](README.md) for what each row is.`,
    '',
    '## Machine',
    '',
    `- ${m.nproc} CPU(s): ${m.cpu}`,
    `- Node ${m.node}, ${m.os}`,
    `- load average at start: ${m.loadavg}`,
    `- pinning: ${m.pinning}`,
    '',
    '## Command and knobs',
    '',
    '```sh',
    `${knobs}${env.CONTESTANTS ? ` CONTESTANTS=${env.CONTESTANTS}` : ''} npm run bench`,
    '```',
    '',
    `Load: autocannon, ${CONNECTIONS} connections, pipelining 1, ${WARMUP} s warm-up then ${DURATION} s measured, GET \`${URL_PATH}\`, ` +
      `${N_TOKENS} distinct tokens per algorithm rotated (each connection walks the list from its own offset). ` +
      `Upstream: node:http answering \`{"ok":true}\`. req/s, p50 and p99 are medians over ${REPS} repetition(s); non-2xx and errors are summed over warm-up and measured runs. ` +
      '"proxy CPU %" is the contestant process\'s CPU time during the measured window (100 = one core). ' +
      '"other %" is CPU busy time on the whole machine during the window not spent by the contestant, the upstream or autocannon ' +
      '(other work on the machine, plus loopback softirq time that no process is charged for), max over repetitions; ' +
      `a window with other + steal above ${NOISE_MAX} % is measured again after 5 s, up to ${NOISY_RETRIES} times, then kept and marked "noisy".`,
    '',
    '## Results',
    '',
    table(agg, true),
    '',
    '## Ratios',
    '',
    '| comparison | ratio (req/s) |',
    '| --- | ---: |',
    ...pairs.map((p) => `| ${p.label} (\`${p.a}\` / \`${p.b}\`) | ${p.value == null ? '–' : fmt(p.value, 3)} |`),
    '',
  ];
  const tokenRows = agg.filter((a) => a.kind === 'token');
  if (tokenRows.length) {
    lines.push(
      '## Token issue',
      '',
      `\`token-issue-*\` rows: tokens issued per second by the token service (\`POST ${TOKEN_PATH}\`, HipChat's client_credentials: Basic + form, \`scope=send_notification\`), ` +
        `one \`scopegate serve\` on the embedded store (in-process, PGlite), ${TOKEN_CONNECTIONS} connections for the hot row (TOKEN_CONNECTIONS) and ${TOKEN_COLD_CONNECTIONS} for the cold one (TOKEN_COLD_CONNECTIONS: scrypt runs on libuv's 4 threads, more would only queue), same pinning, warm-up and window as the proxy rows. ` +
        'Each issue reads the client from the store, checks its secret, signs an ES256 token and records it in the store. ' +
        'The client secret is stored as scrypt (N=2^15, r=8, p=1): `token-issue-cold` walks ' +
        `${fmt(TOKEN_CLIENTS)} clients (TOKEN_CLIENTS, one per request, more than the hot-client cache's 1000 entries, so none is ever found there) and pays that hash every time; ` +
        '`token-issue-hot` is one client asking in a loop, which the hot-client cache answers after its first request: it keeps the SHA-256 of the secret that last verified and the store hash it verified against, ' +
        'and a hit needs the same secret (constant-time compare) and that same hash still in the store (read on every request), so a rotated secret or deleted client takes effect at once; an entry lives 60 s.' +
        (scryptMs != null ? ` One scrypt hash of a secret (the product's \`hashSecret\`, timed alone in a child on the contestant's cpu before the rows, median of 7): **${fmt(scryptMs, 0)} ms**.` : ''),
      '',
      '| row | tokens/s | CPU ms per token (contestant) | requests built (≈ sent, warm-up included) / distinct clients |',
      '| --- | ---: | ---: | --- |',
      ...tokenRows.map((a) => `| ${a.name} | ${fmt(a.rps)} | ${fmt(a.cpuMsPerReq, 2)} | ${fmt(a.rotated)} / ${fmt(a.distinct)} |`),
      '',
    );
  }
  if (REPS > 1) {
    lines.push('## Per repetition (req/s)', '', ...agg.map((a) => `- ${a.name}: ${a.reps.map((x) => fmt(x)).join(', ')}`), '');
  }
  const notes = agg.filter((a) => a.notes.length);
  if (notes.length || skipped.length) {
    lines.push('## Notes', '');
    for (const s of skipped) lines.push(`- ${s}`);
    for (const a of notes) lines.push(`- **${a.name}**:`, '', '```', ...a.notes, '```', '');
    lines.push('');
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Main.

let runDir;
let fixtures;
let upstreamPort;
let upstreamUrl;
let upstreamPid;
/** The token rows' store and clients, made before the first token row starts. */
let tokenStoreDir;
let tokenClients;
/** Seeds of the Redis Cluster the cluster row uses (REDIS_CLUSTER, or the bench's own), and its pids. */
let clusterSeeds = REDIS_CLUSTER;
let clusterPids = [];
let ownCluster = null;
/** Median ms of one scrypt hash (measured when a token row runs). */
let scryptMs = null;

/**
 * RESULTS.md also holds sections other benches write (`## Memory …`, `## Revocation lag …`):
 * this bench replaces only its own part and keeps every other `## ` section as it was. The
 * `## Token service (bench/token-issue.mjs)` section of the script the token rows replaced is kept
 * only until a run measures those rows.
 */
function keepOtherSections(mine, measuredTokens) {
  if (!existsSync(RESULTS_FILE)) return mine;
  const old = readFileSync(RESULTS_FILE, 'utf8');
  const own = new Set([...mine.matchAll(/^## (.+)$/gm)].map((m) => m[1].split(' (')[0]));
  const kept = old
    .split(/^(?=## )/m)
    .filter((sec) => sec.startsWith('## ') && !own.has(sec.slice(3).split('\n')[0].split(' (')[0]) && /^## (Memory|Revocation|Token service|Forward auth)/.test(sec))
    .filter((sec) => !(measuredTokens && sec.startsWith('## Token service (bench/token-issue.mjs)')));
  return kept.length ? `${mine.trimEnd()}\n\n${kept.map((k) => k.trimEnd()).join('\n\n')}\n` : mine;
}

async function main() {
  const startedAt = new Date().toISOString();
  const wanted = env.CONTESTANTS
    ? env.CONTESTANTS.split(',')
        .map((s) => s.trim())
        .filter(Boolean)
        .flatMap((s) => (s === 'scopegate' ? ALL.filter((c) => c.kind === 'scopegate').map((c) => c.name) : s === 'token-issue' ? ALL.filter((c) => c.kind === 'token').map((c) => c.name) : [s]))
    : ALL.map((c) => c.name);
  const unknown = wanted.filter((w) => !ALL.some((c) => c.name === w));
  if (unknown.length) throw new Error(`unknown contestant(s): ${unknown.join(', ')}; known: ${ALL.map((c) => c.name).join(', ')}, scopegate, token-issue`);
  if (!Number.isInteger(TOKEN_CLIENTS) || TOKEN_CLIENTS <= 1000) throw new Error(`TOKEN_CLIENTS must be an integer above 1000 (the hot-client cache's size), got ${TOKEN_CLIENTS}`);
  let list = ALL.filter((c) => wanted.includes(c.name));
  const skipped = [];

  if (list.some((c) => c.kind === 'scopegate' || c.kind === 'token') && !existsSync(join(ROOT, 'dist', 'cli.js'))) {
    throw new Error('dist/cli.js is missing: run `npm run build` (or use `npm run bench`)');
  }
  if (list.some((c) => c.rateLimit === 'redis') && !(await redisReachable(REDIS_URL))) {
    const note = `scopegate-redis skipped: Redis not reachable at ${REDIS_URL.replace(/\/\/[^@/]*@/, '//***@')}`;
    console.log(`note: ${note}`);
    skipped.push(note);
    list = list.filter((c) => c.rateLimit !== 'redis');
  }
  const skip = (note, drop) => {
    console.log(`note: ${note}`);
    skipped.push(note);
    list = list.filter((c) => !drop(c));
  };
  const clusterRow = (c) => c.rateLimit === 'redis-cluster';
  if (list.some(clusterRow)) {
    if (REDIS_CLUSTER.length) {
      if (!(await Promise.all(REDIS_CLUSTER.map(redisReachable))).some(Boolean)) skip('scopegate-redis-cluster skipped: no REDIS_CLUSTER seed answers', clusterRow);
    } else {
      const missing = clusterToolsMissing();
      if (missing) skip(`scopegate-redis-cluster skipped: REDIS_CLUSTER not set and no local cluster can be started (${missing})`, clusterRow);
    }
  }

  runDir = mkdtempSync(join(os.tmpdir(), 'scopegate-bench-'));
  const m = machine();
  console.log(`bench: ${m.nproc} cpu (${m.cpu}), node ${m.node}, ${m.pinning}`);
  console.log(`bench: DURATION=${DURATION} WARMUP=${WARMUP} CONNECTIONS=${CONNECTIONS} REPS=${REPS}; contestants: ${list.map((c) => c.name).join(', ')}`);
  console.log(`bench: run dir ${runDir}`);

  fixtures = await makeFixtures(runDir, N_TOKENS);

  if (list.some((c) => c.kind === 'token')) {
    scryptMs = measureScrypt();
    if (scryptMs != null) console.log(`bench: one scrypt hash (N=2^15, r=8, p=1) takes ${fmt(scryptMs)} ms on cpu ${HAVE_TASKSET ? PROXY_CPU : 'any'}`);
  }

  if (list.some(clusterRow) && !REDIS_CLUSTER.length) {
    process.stdout.write(`bench: starting a local Redis Cluster (3 masters${HAVE_TASKSET ? `, cpu ${REDIS_CLUSTER_CPU}` : ''}) ... `);
    ownCluster = await startRedisCluster({
      dir: join(runDir, 'redis-cluster'),
      startChild: (label, logFile, cmd, args) => startChild(label, REDIS_CLUSTER_CPU, cmd, args, {}, logFile),
      stopChild,
    });
    clusterSeeds = ownCluster.seeds;
    clusterPids = ownCluster.pids;
    console.log(clusterSeeds.join(' '));
    const version = spawnSync(REDIS_SERVER, ['--version'], { encoding: 'utf8' }).stdout?.match(/v=(\S+)/)?.[1] ?? '?';
    skipped.push(`scopegate-redis-cluster: a Redis Cluster this run started (redis-server ${version}, 3 masters, no replicas, no persistence${HAVE_TASKSET ? `, pinned to cpu ${REDIS_CLUSTER_CPU}` : ''}; its CPU counts as the bench's, not "other")`);
  }

  upstreamPort = await freePort();
  upstreamUrl = `http://127.0.0.1:${upstreamPort}`;
  const upstream = startChild('upstream', LOAD_CPU, process.execPath, [join(BENCH_DIR, 'lib', 'upstream.mjs')], { PORT: String(upstreamPort) }, join(runDir, 'upstream.log'));
  await waitHttp(upstreamPort, upstream);
  upstreamPid = upstream.pid;

  const rows = [];
  for (let rep = 1; rep <= REPS; rep++) {
    for (const c of list) {
      process.stdout.write(`  ${c.name}${REPS > 1 ? ` (rep ${rep}/${REPS})` : ''} ... `);
      const row = await turn(c, rep);
      rows.push(row);
      console.log(row.rps != null ? `${fmt(row.rps)} req/s, p99 ${fmt(row.p99, 2)} ms${row.valid ? '' : ' INVALID'}` : 'INVALID');
      if (!row.valid) for (const n of row.notes) console.log(`    ${n.replace(/\n/g, '\n    ')}`);
      if (upstream.exitInfo) throw new Error(`upstream died: ${JSON.stringify(upstream.exitInfo)}\n${tail(upstream.logFile)}`);
    }
  }
  await stopChild(upstream);
  if (ownCluster) await ownCluster.stop();

  const result = aggregate(rows);
  console.log('');
  console.log(table(result.agg, false));
  console.log('');
  for (const p of result.pairs) console.log(`${p.label.padEnd(42)} ${p.value == null ? '–' : fmt(p.value, 3)}`);
  writeFileSync(join(runDir, 'rows.json'), JSON.stringify({ machine: m, rows }, null, 2));
  writeFileSync(RESULTS_FILE, keepOtherSections(markdownReport(result, m, skipped, startedAt), result.agg.some((a) => a.kind === 'token' && a.valid)));
  console.log(`\nwrote ${relative(process.cwd(), RESULTS_FILE) || RESULTS_FILE}`);
  const allValid = result.agg.every((a) => a.valid);
  if (env.KEEP_RUN_DIR || env.PROFILE || !allValid) console.log(`kept ${runDir} (configs, stderr logs, rows.json)`);
  else rmSync(runDir, { recursive: true, force: true });
  return allValid ? 0 : 3;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (e) => {
    console.error(`bench failed: ${e?.stack ?? e}`);
    await Promise.all([...children].map(stopChild));
    if (runDir) console.error(`run dir kept for inspection: ${runDir}`);
    process.exitCode = 1;
  },
);
