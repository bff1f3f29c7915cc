// Revocation lag across replicas (SPEC §9 "Sessions and revocation"): two real gateway processes
// (`node dist/cli.js serve`) on one PostgreSQL schema. For each round a client_credentials token
// is issued, used through both gateways (so it sits in both verified-token caches), revoked
// through one of them (RFC 7009, alternating), and both are polled every POLL_MS until they answer
// 401 token_revoked. The lag is the time from the revoke call's answer to the first refusal, per
// gateway ("local" = the one that revoked, "remote" = the other). A second series cuts the
// LISTEN connections (pg_terminate_backend) right before each revocation, so the remote replica
// depends on the reconnect re-sync and the poll. Appends a section to bench/RESULTS.md.
//
//   npm run build && ROUNDS=100 MAX_LAG_MS=1000 PG_URL=postgres://postgres@127.0.0.1:5432/test node bench/revocation-lag.mjs
//
// Knobs: ROUNDS (default 100 per series), MAX_LAG_MS (token_service.revocation.max_lag_ms, default
// 1000), POLL_MS (default 2), PG_URL, RESULTS (file to append to, default bench/RESULTS.md; "-" = stdout only),
// SCOPEGATE_CLI (the cli.js to run, default dist/cli.js), NOTE (a line added to the written section).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = process.env.SCOPEGATE_CLI || join(ROOT, 'dist/cli.js');
const DIST = dirname(CLI);
const ROUNDS = Number(process.env.ROUNDS ?? 100);
const MAX_LAG_MS = Number(process.env.MAX_LAG_MS ?? 1000);
const POLL_MS = Number(process.env.POLL_MS ?? 2);
const PG_URL = process.env.PG_URL || 'postgres://postgres@127.0.0.1:5432/test';
const RESULTS = process.env.RESULTS ?? join(ROOT, 'bench/RESULTS.md');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function withClient(url, fn) {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

function spawnGateway(config) {
  const child = spawn(process.execPath, [CLI, 'serve', '--config', config], { cwd: ROOT, env: { ...process.env, LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let buf = '';
  const stderr = [];
  child.stderr.on('data', (c) => stderr.push(String(c)));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`gateway did not start: ${stderr.join('')}`)), 30_000);
    child.stdout.on('data', (c) => {
      buf += String(c);
      for (const line of buf.split('\n')) {
        if (line.includes('scopegate listening')) {
          clearTimeout(t);
          resolve({ child, url: JSON.parse(line).url });
        }
      }
      buf = buf.slice(buf.lastIndexOf('\n') + 1);
    });
    child.on('exit', (code) => reject(new Error(`gateway exited ${code}: ${stderr.join('')}`)));
  });
}

const basic = (id, secret) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;

async function issue(url, c) {
  const res = await fetch(`${url}/oauth/token`, { method: 'POST', headers: { authorization: basic(c.id, c.secret), 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials' });
  if (res.status !== 200) throw new Error(`token endpoint answered ${res.status}`);
  return (await res.json()).access_token;
}

async function reason(url, token) {
  const res = await fetch(`${url}/v2/room/1`, { headers: { authorization: `Bearer ${token}` } });
  if (res.status === 200) {
    await res.arrayBuffer();
    return '';
  }
  return (await res.json()).error.reason;
}

async function untilRefused(url, token, t0) {
  for (;;) {
    if ((await reason(url, token)) === 'token_revoked') return performance.now() - t0;
    if (performance.now() - t0 > 30_000) return Infinity;
    await sleep(POLL_MS);
  }
}

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { n: s.length, p50: q(0.5), p95: q(0.95), p99: q(0.99), max: s[s.length - 1] };
}

async function main() {
  const schema = `sg_bench_revlag_${randomBytes(4).toString('hex')}`;
  await withClient(PG_URL, (c) => c.query(`CREATE SCHEMA ${schema}`));
  const u = new URL(PG_URL);
  u.searchParams.set('options', `-c search_path=${schema}`);
  const storeUrl = u.toString();
  const dir = mkdtempSync(join(tmpdir(), 'scopegate-revlag-'));
  const upstream = createServer((_req, res) => res.end('{"ok":true}'));
  await new Promise((r) => upstream.listen(0, '127.0.0.1', r));
  const config = join(dir, 'gw.yaml');
  writeFileSync(
    config,
    `listen: { host: 127.0.0.1, port: 0 }
admin: { enabled: false }
upstreams:
  default: { url: "http://127.0.0.1:${upstream.address().port}" }
tokens:
  issuers:
    - name: svc
      issuer: https://bench.scopegate.test
      audience: api
      algorithms: [ES256]
token_service:
  issuer: svc
  store: "${storeUrl}"
  revocation: { max_lag_ms: ${MAX_LAG_MS} }
routes:
  - path: /v2/room/{room}
    methods: [GET]
    scopes: [view_group]
`,
  );
  const gws = [];
  try {
    gws.push(await spawnGateway(config));
    gws.push(await spawnGateway(config));
    // A client, through the store the gateways share (its scrypt hash made by the CLI's code).
    const { hashSecret, newId, newSecret } = await import(join(DIST, 'token-service/secrets.js'));
    const client = { id: newId('cl'), secret: newSecret() };
    const hash = await hashSecret(client.secret);
    await withClient(storeUrl, (c) =>
      c.query(`INSERT INTO clients (id, name, secret_hash, client_type, scopes, created_at) VALUES ($1, 'bench', $2, 'group', $3, $4)`, [client.id, hash, ['view_group'], Date.now()]),
    );

    // Warm each gateway's client-authentication cache (one scrypt per client and replica), so a
    // round measures the revocation, not the first password hash check.
    for (const g of gws) await fetch(`${g.url}/oauth/revoke`, { method: 'POST', headers: { authorization: basic(client.id, client.secret), 'content-type': 'application/x-www-form-urlencoded' }, body: 'token=warm-up' });
    const series = {};
    for (const cut of [false, true]) {
      const local = [];
      const remote = [];
      for (let i = 0; i < ROUNDS; i++) {
        const [rev, other] = i % 2 === 0 ? gws : [gws[1], gws[0]];
        const token = await issue(rev.url, client);
        if ((await reason(rev.url, token)) !== '' || (await reason(other.url, token)) !== '') throw new Error('a fresh token was refused');
        if (cut) await withClient(storeUrl, (c) => c.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'scopegate-revocations' AND pid <> pg_backend_pid()`));
        const res = await fetch(`${rev.url}/oauth/revoke`, { method: 'POST', headers: { authorization: basic(client.id, client.secret), 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${token}` });
        if (res.status !== 200) throw new Error(`revoke answered ${res.status}`);
        const t0 = performance.now(); // the revocation is committed once the call has answered
        const [l, r] = await Promise.all([untilRefused(rev.url, token, t0), untilRefused(other.url, token, t0)]);
        local.push(l);
        remote.push(r);
        // Let a cut listener reconnect before the next round's cut.
        if (cut) await sleep(300);
      }
      series[cut ? 'listener cut before each revocation' : 'listener connected'] = { local: stats(local), remote: stats(remote) };
    }

    const fmt = (x) => (x === Infinity ? '∞' : x.toFixed(1));
    const rows = Object.entries(series).flatMap(([name, s]) => [
      `| ${name} | revoking replica | ${s.local.n} | ${fmt(s.local.p50)} | ${fmt(s.local.p95)} | ${fmt(s.local.p99)} | ${fmt(s.local.max)} |`,
      `| ${name} | other replica | ${s.remote.n} | ${fmt(s.remote.p50)} | ${fmt(s.remote.p95)} | ${fmt(s.remote.p99)} | ${fmt(s.remote.max)} |`,
    ]);
    const text = `
## Revocation lag across replicas (bench/revocation-lag.mjs)

Written on ${new Date().toISOString()}. ${cpus().length} CPU(s): ${cpus()[0]?.model ?? 'unknown'}; Node ${process.version}; load average at start: ${loadavg().map((x) => x.toFixed(2)).join(' ')}.
Two \`scopegate serve\` processes on one PostgreSQL schema, \`revocation.max_lag_ms: ${MAX_LAG_MS}\` (poll every ${MAX_LAG_MS / 2} ms), ${ROUNDS} rounds per series: a client_credentials token issued, used through both gateways (cached in both), revoked by RFC 7009 through one (alternating); both polled every ${POLL_MS} ms on a route until 401 \`token_revoked\`. Lag = ms from the revoke call's 200 (the revocation is committed) to the first refusal, so it includes up to one client poll interval.${process.env.NOTE ? `\n\n${process.env.NOTE}` : ''}

| series | gateway | rounds | p50 ms | p95 ms | p99 ms | max ms |
| --- | --- | ---: | ---: | ---: | ---: | ---: |
${rows.join('\n')}
`;
    process.stdout.write(text);
    if (RESULTS !== '-') appendFileSync(RESULTS, text);
  } finally {
    for (const g of gws) g.child.kill('SIGKILL');
    upstream.close();
    rmSync(dir, { recursive: true, force: true });
    await withClient(PG_URL, (c) => c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)).catch(() => {});
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
