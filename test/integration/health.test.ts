/**
 * SPEC §6 admin listener: /healthz, /readyz with its checks, and what "not ready" means for the
 * two dependencies readiness watches — an issuer's remote JWKS (never obtained → 503 naming
 * `keys:<issuer>`, and requests get 503 keys_unavailable, never 401) and Redis when the rate-limit
 * store is redis with `on_store_error: closed` (with `open` a dead Redis does not stop traffic).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, TEST_ISSUER, TEST_SECRET, type TestGateway } from '../helpers/gateway.js';
import { startJwksServer, type JwksServer } from '../helpers/jwks-server.js';
import { describeRedis } from '../helpers/redis.js';
import { generateKeys, hsToken, signToken, type TestKeyPair } from '../helpers/tokens.js';
import { closedPortUrl, startUpstream, type Upstream } from '../helpers/upstream.js';

const now = () => Math.floor(Date.now() / 1000);

interface Readiness {
  status: string;
  checks?: Array<{ name: string; ok: boolean; error?: string }>;
}

async function readyz(gw: TestGateway): Promise<{ status: number; body: Readiness }> {
  const res = await fetch(`${gw.adminUrl}/readyz`);
  return { status: res.status, body: (await res.json()) as Readiness };
}

let up: Upstream;
const started: TestGateway[] = [];
const start = async (yaml: string) => {
  const gw = await startTestGateway(yaml);
  started.push(gw);
  return gw;
};

beforeAll(async () => {
  up = await startUpstream();
});
afterEach(async () => {
  await Promise.all(started.splice(0).map((g) => g.close()));
});
afterAll(async () => {
  await up.close();
});

describe('liveness and readiness (SPEC 6)', () => {
  it('answers /healthz 200 and /readyz 200 with the config and key checks', async () => {
    const gw = await start(baseConfig({ upstream: up.url }));
    const health = await fetch(`${gw.adminUrl}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
    expect(await readyz(gw)).toEqual({
      status: 200,
      body: { status: 'ready', checks: [{ name: 'config', ok: true }, { name: 'keys:local', ok: true }] },
    });
  });

  it('serves the admin endpoints on the admin port only', async () => {
    const gw = await start(baseConfig({ upstream: up.url }));
    expect(gw.adminUrl).not.toBe(gw.url);
    const res = await fetch(`${gw.url}/readyz`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { reason: string } }).error.reason).toBe('route_not_found');
    expect(up.requests.some((r) => r.url === '/readyz')).toBe(false);
  });
});

describe('remote JWKS readiness (SPEC 1.4, 6)', () => {
  let rsa: TestKeyPair;
  let jwks: JwksServer;
  beforeAll(async () => {
    rsa = await generateKeys('RS256');
    jwks = await startJwksServer([rsa.publicJwk]);
  });
  afterAll(async () => {
    await jwks.close();
  });

  const idpConfig = (jwksUrl: string) => `
upstreams:
  default: { url: ${up.url}, timeout_ms: 2000, connect_timeout_ms: 500 }
tokens:
  issuers:
${TEST_ISSUER}
      claims: { client_type: client_type, scopes: scope }
    - name: idp
      issuer: https://idp.test/
      audience: api
      algorithms: [RS256]
      jwks_url: ${jwksUrl}
      jwks: { timeout_ms: 500, cooldown_ms: 0 }
      claims: { client_type: client_type, scopes: scope }
routes:
  - id: get-room
    path: /v2/room/{room}
    methods: [GET]
    scopes: [view_group]
`;
  const idpToken = () =>
    signToken(rsa, { iss: 'https://idp.test/', aud: 'api', sub: 'carol', iat: now(), exp: now() + 600, client_type: 'user', scope: 'view_group' });

  it('is not ready, naming keys:<issuer>, while the JWKS has never been obtained; tokens get 503 keys_unavailable, never 401', async () => {
    const gw = await start(idpConfig(`${await closedPortUrl()}/jwks.json`));
    const r = await readyz(gw);
    expect(r.status).toBe(503);
    expect(r.body.status).toBe('not_ready');
    const failing = r.body.checks!.filter((c) => !c.ok);
    expect(failing.map((c) => c.name)).toEqual(['keys:idp']);
    expect(failing[0]!.error).toMatch(/idp/);
    expect(r.body.checks!.find((c) => c.name === 'keys:local')?.ok).toBe(true);

    const res = await fetch(`${gw.url}/v2/room/42`, { headers: { authorization: `Bearer ${await idpToken()}` } });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { reason: string } }).error.reason).toBe('keys_unavailable');
    // The other issuer keeps working.
    const local = await hsToken(TEST_SECRET, { iss: 'scopegate-test', aud: 'api', sub: 'a', exp: now() + 600, client_type: 'user', scope: 'view_group' });
    expect((await fetch(`${gw.url}/v2/room/42`, { headers: { authorization: `Bearer ${local}` } })).status).toBe(200);
  });

  it('is not ready while the JWKS endpoint fails, and ready once it serves keys', async () => {
    jwks.failWith('500');
    const gw = await start(idpConfig(jwks.url));
    const down = await readyz(gw);
    expect(down.status).toBe(503);
    expect(down.body.checks!.find((c) => c.name === 'keys:idp')).toMatchObject({ ok: false, error: expect.stringMatching(/HTTP 500/) });
    jwks.failWith('none');
    expect((await readyz(gw)).status).toBe(200);
    expect((await fetch(`${gw.url}/v2/room/42`, { headers: { authorization: `Bearer ${await idpToken()}` } })).status).toBe(200);
  });
});

describeRedis('Redis readiness (SPEC 4, 6)', () => {
  const redisConfig = (url: string, onError: 'open' | 'closed') =>
    baseConfig({
      upstream: up.url,
      rateLimit: `rate_limit:
  store: redis
  redis_url: ${url}
  redis_timeout_ms: 200
  on_store_error: ${onError}
  default: { limit: 100, window_s: 60 }`,
    });
  const REDIS_PASSWORD = 'redis-pass-9c1e7b';
  const deadRedis = async () => (await closedPortUrl()).replace('http://', `redis://:${REDIS_PASSWORD}@`);
  const token = () => hsToken(TEST_SECRET, { iss: 'scopegate-test', aud: 'api', sub: 'r', exp: now() + 600, client_type: 'user', scope: 'view_group', jti: `r-${Math.random()}` });

  it('is not ready, naming redis, when Redis is down and on_store_error is closed; requests get 503 store_unavailable', async () => {
    const gw = await start(redisConfig(await deadRedis(), 'closed'));
    const r = await readyz(gw);
    expect(r.status).toBe(503);
    expect(r.body.checks!.filter((c) => !c.ok).map((c) => c.name)).toEqual(['redis']);
    expect(JSON.stringify(r.body)).not.toContain(REDIS_PASSWORD);
    expect(gw.logs.filter((l) => l.includes(REDIS_PASSWORD))).toEqual([]);
    const res = await fetch(`${gw.url}/v2/room/42`, { headers: { authorization: `Bearer ${await token()}` } });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { reason: string } }).error.reason).toBe('store_unavailable');
  });

  it('stays ready when Redis is down and on_store_error is open, and keeps forwarding', async () => {
    const gw = await start(redisConfig(await deadRedis(), 'open'));
    const r = await readyz(gw);
    expect(r.status).toBe(200);
    expect(r.body.status).toBe('ready');
    expect(r.body.checks!.find((c) => c.name === 'redis')).toMatchObject({ ok: true, error: expect.any(String) });
    expect((await fetch(`${gw.url}/v2/room/42`, { headers: { authorization: `Bearer ${await token()}` } })).status).toBe(200);
  });

  it('is ready with a reachable Redis and on_store_error closed', async () => {
    const gw = await start(redisConfig(process.env.REDIS_URL || 'redis://127.0.0.1:6379', 'closed'));
    expect(await readyz(gw)).toMatchObject({ status: 200, body: { status: 'ready' } });
    expect((await readyz(gw)).body.checks).toContainEqual({ name: 'redis', ok: true });
  });
});

describe('readiness during shutdown (SPEC 6)', () => {
  it('answers /readyz 503 shutting_down once shutdown began, while a request is still draining', async () => {
    up.route('/v2/room/slow-ready', { kind: 'slow', delayMs: 600 });
    const gw = await startTestGateway(baseConfig({ upstream: up.url }));
    const t = await hsToken(TEST_SECRET, { iss: 'scopegate-test', aud: 'api', sub: 's', exp: now() + 600, client_type: 'user', scope: 'view_group' });
    const slow = fetch(`${gw.url}/v2/room/slow-ready`, { headers: { authorization: `Bearer ${t}` } });
    await up.waitForRequest(up.requests.length + 1);
    const done = gw.shutdown();
    const r = await fetch(`${gw.adminUrl}/readyz`);
    expect(r.status).toBe(503);
    expect(await r.json()).toEqual({ status: 'shutting_down' });
    expect((await slow).status).toBe(200);
    await done;
  });
});
