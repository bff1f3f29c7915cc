/**
 * SPEC §6 lifecycle with real processes (`node dist/cli.js serve`): SIGHUP reloads (a new route is
 * served; an invalid file keeps the old config, is logged and counted), `watch: true` reloads on
 * file changes (written in place or atomically replaced), SIGTERM drains in-flight requests
 * (readiness fails, the listener refuses new connections, exit 0) and a drain longer than
 * `shutdown_timeout_ms` is cut short: the hanging client's connection is closed, exit 0.
 */
import { rename, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawnGateway, type GatewayProcess } from '../helpers/process.js';
import { hsToken, tempDir, type TempDir } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const SECRET = 'lifecycle-secret-0123456789abcdef-xyz';
const now = () => Math.floor(Date.now() / 1000);
const token = () => hsToken(SECRET, { iss: 'scopegate-test', sub: 'life', iat: now(), exp: now() + 600, client_type: 'user', scope: 'view_group', jti: `l-${Math.random()}` });

const EXTRA_ROUTE = `
  - id: extra
    path: /v2/extra
    public: true`;

function config(o: { upstream: string; watch?: boolean; shutdownMs?: number; extraRoutes?: string }): string {
  return `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
shutdown_timeout_ms: ${o.shutdownMs ?? 5000}
watch: ${o.watch ?? false}
upstreams:
  default: { url: ${o.upstream}, timeout_ms: 10000, connect_timeout_ms: 500 }
tokens:
  issuers:
    - name: local
      issuer: scopegate-test
      algorithms: [HS256]
      secrets: ["\${LIFECYCLE_SECRET}"]
      claims: { client_type: client_type, scopes: scope }
routes:
  - id: get-room
    path: /v2/room/{room}
    methods: [GET]
    scopes: [view_group]${o.extraRoutes ?? ''}
`;
}

/** One request on its own connection (no pooled keep-alive socket can hide a closed listener). */
function get(base: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Resolves 'refused' when a TCP connect to `base` is refused, 'open' when it connects. */
function probe(base: string): Promise<'open' | 'refused'> {
  const u = new URL(base);
  return new Promise((resolve) => {
    const s = connect(Number(u.port), u.hostname);
    s.once('connect', () => {
      s.destroy();
      resolve('open');
    });
    s.once('error', () => resolve('refused'));
  });
}

/** Polls `fn` until it returns true (bounded; the bound only turns a hang into a failure). */
async function until(fn: () => Promise<boolean>, what: string, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function metric(gw: GatewayProcess, name: string, labels: string): Promise<number | undefined> {
  const text = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

let up: Upstream;
let dir: TempDir;
const running: GatewayProcess[] = [];

async function spawn(file: string): Promise<GatewayProcess> {
  const gw = await spawnGateway(file, { env: { LIFECYCLE_SECRET: SECRET } });
  running.push(gw);
  return gw;
}

beforeAll(async () => {
  up = await startUpstream({ routes: { '/v2/room/slow': { kind: 'slow', delayMs: 1500, body: 'slow-done' }, '/v2/room/hang': { kind: 'hang' } } });
  dir = await tempDir();
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((g) => g.kill()));
});
afterAll(async () => {
  await up.close();
  await dir.cleanup();
});

describe('config reload (SPEC 6)', () => {
  it('serves a route added to the file after SIGHUP and counts one successful reload', async () => {
    const file = await dir.write('hup-ok.yaml', config({ upstream: up.url }));
    const gw = await spawn(file);
    expect((await get(gw.url, '/v2/extra')).status).toBe(404);

    await writeFile(file, config({ upstream: up.url, extraRoutes: EXTRA_ROUTE }));
    gw.signal('SIGHUP');
    await until(async () => (await get(gw.url, '/v2/extra')).status === 200, '/v2/extra is served');

    expect(await metric(gw, 'scopegate_config_reloads_total', 'result="success"')).toBe(1);
    expect(await metric(gw, 'scopegate_config_reloads_total', 'result="error"')).toBe(0);
    // The routes of the old file still work on the new config.
    expect((await get(gw.url, '/v2/room/1', { authorization: `Bearer ${await token()}` })).status).toBe(200);
  });

  it('keeps the old config when the new file is invalid, logs why and counts the error', async () => {
    const file = await dir.write('hup-bad.yaml', config({ upstream: up.url }));
    const gw = await spawn(file);

    await writeFile(file, config({ upstream: up.url, extraRoutes: `${EXTRA_ROUTE}\n    bogus_key: 1` }));
    gw.signal('SIGHUP');
    const line = JSON.parse(await gw.waitForLine(/config reload failed/)) as { level: number; err: string };
    expect(line.level).toBeGreaterThanOrEqual(50);
    expect(line.err).toMatch(/bogus_key/);
    expect(line.err).not.toContain(SECRET);

    expect(await metric(gw, 'scopegate_config_reloads_total', 'result="error"')).toBe(1);
    expect(await metric(gw, 'scopegate_config_reloads_total', 'result="success"')).toBe(0);
    expect((await get(gw.url, '/v2/room/1', { authorization: `Bearer ${await token()}` })).status).toBe(200);
    expect((await get(gw.url, '/v2/extra')).status).toBe(404);
    const ready = await fetch(`${gw.adminUrl}/readyz`);
    expect(ready.status).toBe(200);
  });

  it('reloads on a file change with watch: true, for in-place writes and atomic replacements', async () => {
    const file = await dir.write('watched.yaml', config({ upstream: up.url, watch: true }));
    const gw = await spawn(file);
    expect((await get(gw.url, '/v2/extra')).status).toBe(404);

    await writeFile(file, config({ upstream: up.url, watch: true, extraRoutes: EXTRA_ROUTE }));
    await until(async () => (await get(gw.url, '/v2/extra')).status === 200, 'the in-place change is served');
    expect(await metric(gw, 'scopegate_config_reloads_total', 'result="success"')).toBe(1);

    // Editors and Kubernetes ConfigMaps replace the file (write elsewhere, rename over it).
    const tmp = join(dir.path, 'watched.yaml.tmp');
    await writeFile(tmp, config({ upstream: up.url, watch: true }));
    await rename(tmp, file);
    await until(async () => (await get(gw.url, '/v2/extra')).status === 404, 'the replaced file is served');

    // ... and the file is still watched after the replacement.
    await writeFile(file, config({ upstream: up.url, watch: true, extraRoutes: EXTRA_ROUTE }));
    await until(async () => (await get(gw.url, '/v2/extra')).status === 200, 'a change after the replacement is served');
  });
});

describe('graceful shutdown (SPEC 6)', () => {
  it('on SIGTERM finishes the in-flight request, fails readiness, refuses new connections and exits 0', async () => {
    const file = await dir.write('drain.yaml', config({ upstream: up.url, shutdownMs: 8000 }));
    const gw = await spawn(file);
    const seen = up.requests.length;
    const inflight = get(gw.url, '/v2/room/slow', { authorization: `Bearer ${await token()}` });
    await up.waitForRequest(seen + 1);

    gw.signal('SIGTERM');
    await gw.waitForLine(/draining/);
    // Readiness fails (503) while draining; the admin listener may also already be gone.
    const readyz = await fetch(`${gw.adminUrl}/readyz`).then((r) => r.status, () => 'closed');
    expect([503, 'closed']).toContain(readyz);
    await until(async () => (await probe(gw.url)) === 'refused', 'the listener refuses new connections');

    const res = await inflight;
    expect(res).toEqual({ status: 200, body: 'slow-done' });
    expect(await gw.exit()).toBe(0);
    expect(gw.stdout.some((l) => /shutdown complete/.test(l) && /"outcome":"drained"/.test(l))).toBe(true);
  });

  it('cuts the drain short after shutdown_timeout_ms: the hanging client is disconnected and the process exits 0', async () => {
    const timeoutMs = 1000;
    const file = await dir.write('drain-timeout.yaml', config({ upstream: up.url, shutdownMs: timeoutMs }));
    const gw = await spawn(file);
    const seen = up.requests.length;
    const hanging = get(gw.url, '/v2/room/hang', { authorization: `Bearer ${await token()}` }).then(
      (r) => `answered ${r.status}`,
      (e: NodeJS.ErrnoException) => `closed (${e.code ?? e.message})`,
    );
    const upstreamSide = await up.waitForRequest(seen + 1);

    const t0 = Date.now();
    gw.signal('SIGTERM');
    expect(await hanging).toMatch(/^closed/);
    expect(await gw.exit()).toBe(0);
    // Not before the timeout: the drain really waited for the request (a bound, not a speed check).
    expect(Date.now() - t0).toBeGreaterThanOrEqual(timeoutMs - 100);
    expect(gw.stdout.some((l) => /drain timed out/.test(l))).toBe(true);
    // The upstream request was aborted too, not left dangling.
    await upstreamSide.done;
    expect(upstreamSide.clientClosed).toBe(true);
  });
});
