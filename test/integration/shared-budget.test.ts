/**
 * SPEC §4 with real Redis and real processes: replicas share one budget through the Redis store,
 * and a Redis outage degrades as `on_store_error` says, then heals by itself.
 *
 * - "shared budget" runs two `scopegate serve` processes against the shared test Redis
 *   (REDIS_URL or 127.0.0.1:6379) under a key prefix unique to this run.
 * - "redis outage" starts a PRIVATE redis-server on a random port (test/helpers/redis-server.ts),
 *   kills it with SIGKILL mid-run and restarts it on the same port; the shared Redis is never touched.
 *
 * The gateway processes run `node dist/cli.js` (npm test builds first).
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { baseConfig, TEST_SECRET } from '../helpers/gateway.js';
import { spawnGateway, type GatewayProcess } from '../helpers/process.js';
import { deleteKeys, describeRedis, redisClient, redisUrl, uniqueKeyPrefix } from '../helpers/redis.js';
import { describeRedisServer, startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { hsToken, tempDir, type TempDir } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { rawRequest as raw } from '../helpers/http.js';


const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function mint(jti: string): Promise<string> {
  const iat = Math.floor(Date.now() / 1000);
  return hsToken(TEST_SECRET, { iss: 'scopegate-test', aud: 'api', sub: 'alice', iat, exp: iat + 3_600, jti, client_type: 'user', scope: 'view_group' });
}

/** A gateway config for one replica: its own ports (0), no admin listener, the Redis store. */
function replicaConfig(o: { upstream: string; redisUrl: string; prefix: string; limit: number; windowS: number; onStoreError: 'open' | 'closed' }): string {
  return baseConfig({
    upstream: o.upstream,
    extra: `listen: { host: 127.0.0.1, port: 0 }
admin: { enabled: false }`,
    rateLimit: `rate_limit:
  store: redis
  redis_url: ${o.redisUrl}
  redis_timeout_ms: 300
  key_prefix: ${o.prefix}
  on_store_error: ${o.onStoreError}
  default: { limit: ${o.limit}, window_s: ${o.windowS} }
`,
  });
}

/** Waits until at least `marginMs` remain in the current fixed window, so a burst cannot straddle two. */
async function awayFromWindowEdge(windowMs: number, marginMs: number): Promise<void> {
  const left = windowMs - (Date.now() % windowMs);
  if (left < marginMs) await sleep(left + 100);
}

/** Polls `probe` every 100 ms until it returns true or `timeoutMs` passes; returns the last answer. */
async function pollUntil(probe: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return true;
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
}

let up: Upstream;
let dir: TempDir;
const procs: GatewayProcess[] = [];

async function replica(name: string, yaml: string): Promise<GatewayProcess> {
  const p = await spawnGateway(await dir.write(name, yaml));
  procs.push(p);
  return p;
}

beforeAll(async () => {
  up = await startUpstream();
  dir = await tempDir();
});
afterEach(async () => {
  await Promise.all(procs.splice(0).map((p) => p.kill()));
  up.requests.length = 0;
});
afterAll(async () => {
  await up?.close();
  await dir?.cleanup();
});

describeRedis('shared budget across gateway processes (SPEC 4, redis store)', () => {
  const prefix = uniqueKeyPrefix('shared-budget');
  afterAll(async () => {
    const c = redisClient();
    await deleteKeys(c, prefix);
    c.disconnect();
  });

  it('gives exactly `limit` 2xx to 30 concurrent requests split across two replicas, the rest 429', async () => {
    const LIMIT = 20;
    const WINDOW_S = 3_600;
    const yaml = replicaConfig({ upstream: up.url, redisUrl: redisUrl(), prefix, limit: LIMIT, windowS: WINDOW_S, onStoreError: 'closed' });
    const [a, b] = await Promise.all([replica('a.yaml', yaml), replica('b.yaml', yaml)]);
    expect(a.url).not.toBe(b.url);

    const jti = `shared-${prefix}`;
    const token = await mint(jti);
    await awayFromWindowEdge(WINDOW_S * 1000, 15_000);
    const windowStart = Math.floor(Date.now() / (WINDOW_S * 1000)) * WINDOW_S * 1000;

    const results = await Promise.all(
      Array.from({ length: 30 }, (_, i) => raw(i % 2 === 0 ? a.url : b.url, 'GET', '/v2/room/42', { authorization: `Bearer ${token}` })),
    );
    const ok = results.filter((r) => r.status === 200);
    const limited = results.filter((r) => r.status === 429);
    expect(ok).toHaveLength(LIMIT);
    expect(limited).toHaveLength(30 - LIMIT);
    expect(up.requests).toHaveLength(LIMIT);
    // Atomic counting: every admitted request saw a distinct count (remaining LIMIT-1 ... 0).
    expect(ok.map((r) => Number(r.headers['x-ratelimit-remaining'])).sort((x, y) => x - y)).toEqual(Array.from({ length: LIMIT }, (_, i) => i));
    for (const r of limited) {
      expect(JSON.parse(r.body).error.reason).toBe('rate_limited');
      expect(r.headers['x-ratelimit-remaining']).toBe('0');
      expect(Number(r.headers['retry-after'])).toBeLessThanOrEqual(WINDOW_S);
    }
    // Both replicas agree on the window end.
    expect(new Set(results.map((r) => r.headers['x-ratelimit-reset']))).toEqual(new Set([String((windowStart + WINDOW_S * 1000) / 1000)]));

    // Either replica refuses the next call, and a probe on either reads the shared, exhausted budget.
    expect((await raw(a.url, 'GET', '/v2/room/42?auth_test=true', { authorization: `Bearer ${token}` })).status).toBe(429);
    expect((await raw(b.url, 'GET', '/v2/room/42', { authorization: `Bearer ${token}` })).status).toBe(429);

    // The one Redis key holds every hit (denied ones included), with an expiry of at most one window.
    const c = redisClient();
    try {
      const key = `${prefix}:{jti:local:${encodeURIComponent(jti)}}:${windowStart}`;
      expect(await c.get(key)).toBe('31');
      const pttl = await c.pttl(key);
      expect(pttl).toBeGreaterThan(0);
      expect(pttl).toBeLessThanOrEqual(WINDOW_S * 1000);
    } finally {
      c.disconnect();
    }
  }, 45_000); // may wait up to 15 s for a fresh window
});

describeRedisServer('redis outage and recovery (SPEC 4 on_store_error, private redis-server)', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await redis?.stop();
  });

  it('open keeps forwarding and closed answers 503 while Redis is dead; both recover when it comes back on the same port', async () => {
    const common = { upstream: up.url, redisUrl: redis.url, limit: 1_000, windowS: 3_600 };
    const [open, closed] = await Promise.all([
      replica('open.yaml', replicaConfig({ ...common, prefix: 'outage-open', onStoreError: 'open' })),
      replica('closed.yaml', replicaConfig({ ...common, prefix: 'outage-closed', onStoreError: 'closed' })),
    ]);
    const token = await mint(`outage-${Date.now()}`);
    const get = (gw: GatewayProcess) => raw(gw.url, 'GET', '/v2/room/42', { authorization: `Bearer ${token}` });

    // Healthy: both count through Redis.
    for (const gw of [open, closed]) {
      const res = await get(gw);
      expect(res.status).toBe(200);
      expect(res.headers['x-ratelimit-limit']).toBe('1000');
    }

    await redis.kill();
    expect(redis.running).toBe(false);

    for (let i = 0; i < 5; i++) {
      const o = await get(open);
      expect(o.status).toBe(200);
      expect(o.headers['x-ratelimit-limit']).toBeUndefined();
      const c = await get(closed);
      expect(c.status).toBe(503);
      expect(JSON.parse(c.body)).toEqual({
        error: { code: 503, message: 'Rate-limit store is unavailable; try again later.', type: 'Service Unavailable', reason: 'store_unavailable' },
      });
    }
    // 2 before the outage, 5 from the open replica during it; none from the closed one.
    expect(up.requests).toHaveLength(7);
    // Neither process died of the dropped connection or of the refused reconnects.
    expect([open.child.exitCode, open.child.signalCode, closed.child.exitCode, closed.child.signalCode]).toEqual([null, null, null, null]);
    // Log lines are written in batches (at most 250 ms late): wait for it rather than peek.
    await expect(open.waitForLine(/on_store_error: open/, 5_000)).resolves.toContain('forwarding');

    await redis.restart();
    // The clients reconnect with capped backoff (≤ 2 s); no restart of the gateway needed.
    const recovered = async (gw: GatewayProcess) => {
      const res = await get(gw);
      return res.status === 200 && res.headers['x-ratelimit-limit'] === '1000';
    };
    expect(await pollUntil(() => recovered(open), 15_000)).toBe(true);
    expect(await pollUntil(() => recovered(closed), 15_000)).toBe(true);
    // Redis came back empty (no persistence): counting restarted from the recovery.
    const after = await get(closed);
    expect(Number(after.headers['x-ratelimit-remaining'])).toBeGreaterThan(990);
    expect([open.child.exitCode, closed.child.exitCode]).toEqual([null, null]);
    expect(open.stderr.join('') + closed.stderr.join('')).not.toMatch(/unhandled|uncaught/i);
  }, 45_000);
});
