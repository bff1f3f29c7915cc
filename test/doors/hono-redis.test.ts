/**
 * The Hono middleware with `rate_limit.store: redis` (SPEC §4, §8): the Redis store is loaded by
 * the middleware's dynamic import, and two middleware instances — two replicas of an application —
 * share one budget through a real Redis. `close()` closes the connection (the process would
 * otherwise be held open), and `on_store_error: closed` answers 503 store_unavailable when Redis
 * is gone, without running the handler.
 */
import { Hono } from 'hono';
import { afterAll, expect, it } from 'vitest';
import { scopegate, type ScopegateMiddleware } from '../../src/doors/hono/index.js';
import { TEST_SECRET } from '../helpers/gateway.js';
import { deleteKeys, describeRedis, redisClient, redisUrl, uniqueKeyPrefix } from '../helpers/redis.js';
import { hsToken } from '../helpers/tokens.js';
import { closedPortUrl } from '../helpers/upstream.js';

const tokens = { issuers: [{ name: 'local', issuer: 'scopegate-test', audience: 'api', algorithms: ['HS256'], secrets: [TEST_SECRET], claims: { scopes: 'scope' } }] };
const routes = [{ id: 'things', path: '/things/{id}', methods: ['GET'], scopes: ['read'], client_types: ['user'] }];

function appWith(mw: ScopegateMiddleware): { app: Hono; runs: () => number } {
  const app = new Hono();
  let n = 0;
  app.use('*', mw);
  app.get('/things/:id', (c) => (n++, c.text('thing')));
  return { app, runs: () => n };
}

const token = () =>
  hsToken(TEST_SECRET, { iss: 'scopegate-test', aud: 'api', sub: 'u', client_type: 'user', scope: 'read', exp: Math.floor(Date.now() / 1000) + 600, jti: crypto.randomUUID() });

describeRedis('Hono middleware with the Redis store', () => {
  const prefix = uniqueKeyPrefix('hono');
  const opened: ScopegateMiddleware[] = [];
  const make = (rate_limit: Record<string, unknown>) => {
    const mw = scopegate({ tokens, routes, rate_limit });
    opened.push(mw);
    return mw;
  };
  afterAll(async () => {
    await Promise.all(opened.map((m) => m.close()));
    const c = redisClient();
    await deleteKeys(c, prefix);
    c.disconnect();
  });

  it('shares one budget between two middleware instances (two replicas)', async () => {
    const rl = { store: 'redis', redis_url: redisUrl(), key_prefix: prefix, default: { limit: 3, window_s: 2_678_400 } };
    const a = appWith(make(rl));
    const b = appWith(make(rl));
    const t = await token();
    const h = { headers: { authorization: `Bearer ${t}` } };
    expect((await a.app.request('/things/1', h)).status).toBe(200);
    expect((await b.app.request('/things/1', h)).status).toBe(200);
    const third = await a.app.request('/things/1', h);
    expect(third.status).toBe(200);
    expect(third.headers.get('x-ratelimit-remaining')).toBe('0');
    const fourth = await b.app.request('/things/1', h);
    expect(fourth.status).toBe(429);
    expect(fourth.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(a.runs() + b.runs()).toBe(3);
  });

  it('answers 503 store_unavailable with on_store_error: closed when Redis cannot be reached, and tells onError', async () => {
    const errors: string[] = [];
    const mw = scopegate({
      tokens,
      routes,
      rate_limit: { store: 'redis', redis_url: (await closedPortUrl()).replace('http:', 'redis:'), redis_timeout_ms: 200, on_store_error: 'closed', default: { limit: 3, window_s: 60 } },
      onError: (e) => errors.push(e.message),
    });
    opened.push(mw);
    const { app, runs } = appWith(mw);
    const res = await app.request('/things/1', { headers: { authorization: `Bearer ${await token()}` } });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { reason: string } }).error.reason).toBe('store_unavailable');
    expect(runs()).toBe(0);
    expect(errors.some((m) => /rate-limit store error; refusing/.test(m))).toBe(true);
    for (const m of errors) expect(m).not.toMatch(/eyJ/);
  });
});
