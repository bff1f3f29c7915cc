// Tokens issued per second by the token service (issue 13), measured, never asserted:
// a real `scopegate serve` on an embedded store, one client registered with the operator command,
// then autocannon POSTing HipChat's client_credentials request (Basic + form) for DURATION seconds,
// once with the hot-client cache (the default: one scrypt per client per 60 s) and once with every
// request paying scrypt (a new client each time is not possible under load, so the second run
// presents a wrong secret, which always pays the full hash and is answered 401).
// Writes a "## Token service" section into bench/RESULTS.md (npm run bench keeps it).
//
//   npm run build && node bench/token-issue.mjs          (DURATION=10 CONNS=10)
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const CLI = join(ROOT, 'dist', 'cli.js');
const DURATION = Number(process.env.DURATION ?? 10);
const CONNS = Number(process.env.CONNS ?? 10);
const PORT = Number(process.env.PORT ?? 18310);
const dir = mkdtempSync(join(tmpdir(), 'sg-token-bench-'));
const config = join(dir, 'gw.yaml');
writeFileSync(
  config,
  `listen: { host: 127.0.0.1, port: ${PORT} }
admin: { enabled: false }
upstreams: { default: { url: "http://127.0.0.1:9" } }
tokens:
  issuers:
    - name: service
      issuer: bench-service
      audience: api
      algorithms: [ES256]
token_service: { issuer: service, store: ./data }
routes: []
`,
);

const gw = spawn(process.execPath, [CLI, 'serve', '--config', config], { env: { ...process.env, LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'inherit'] });
try {
  for (let i = 0; ; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${PORT}/.well-known/jwks.json`);
      if (r.ok) break;
    } catch {
      /* not yet */
    }
    if (i > 600) throw new Error('gateway did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  const out = execFileSync(process.execPath, [CLI, 'clients', 'create', '--config', config, '--name', 'bench', '--client-type', 'group', '--scopes', 'send_notification', '--json'], { encoding: 'utf8' });
  const { client_id: id, client_secret: secret } = JSON.parse(out);
  const run = (pass) =>
    new Promise((resolve, reject) =>
      autocannon(
        {
          url: `http://127.0.0.1:${PORT}/v2/oauth/token`,
          method: 'POST',
          connections: CONNS,
          duration: DURATION,
          headers: { authorization: `Basic ${Buffer.from(`${id}:${pass}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
          body: 'grant_type=client_credentials&scope=send_notification',
        },
        (err, res) => (err ? reject(err) : resolve(res)),
      ),
    );
  const hot = await run(secret);
  const cold = await run(`${secret}x`);
  const row = (label, r, status) =>
    `| ${label} | ${Math.round(r.requests.average).toLocaleString('en-US')} | ${r.latency.p50} | ${r.latency.p99} | ${status} |`;
  const section = `## Token service (bench/token-issue.mjs)

Written on ${new Date().toISOString()}: ${cpus().length} CPU(s) (${cpus()[0]?.model.trim()}), Node ${process.version}; one \`scopegate serve\` on an embedded store, ${CONNS} connections, ${DURATION} s each, not pinned.

| request | req/s | p50 ms | p99 ms | answer |
| --- | ---: | ---: | ---: | --- |
${row('client_credentials, right secret (hot-client cache: scrypt once per 60 s)', hot, `${hot['2xx']} × 200`)}
${row('wrong secret (every request pays scrypt N=2^15)', cold, `${cold.non2xx} × 401`)}
`;
  const file = join(ROOT, 'bench', 'RESULTS.md');
  const old = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const kept = old.split(/^(?=## )/m).filter((s) => !s.startsWith('## Token service'));
  writeFileSync(file, `${kept.join('').trimEnd()}\n\n${section}`);
  process.stdout.write(section);
} finally {
  gw.kill('SIGTERM');
  await new Promise((r) => gw.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
