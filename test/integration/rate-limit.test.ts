/**
 * SPEC §4 (and the rate-limit rows of §1–2) through real sockets: the real gateway on
 * 127.0.0.1:0 with an injected clock, a real echo upstream, tokens minted with jose. Each test
 * asserts the status, the exact rate-limit headers and what the upstream received (nothing, for
 * the gateway's own refusals). Redis here is only ever a dead port (store-error behaviour); the
 * shared-budget and outage tests with a live Redis are in shared-budget.test.ts.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { baseConfig, startTestGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway.js';
import { hsToken, testClock } from '../helpers/tokens.js';
import { closedPortUrl, startUpstream, type Upstream } from '../helpers/upstream.js';
import { rawRequest as raw, type RawResponse } from '../helpers/http.js';

// 2030-01-01T00:00:00Z is aligned to every window used here (30 s, 60 s, 120 s).
const T0 = Date.UTC(2030, 0, 1);
const clock = testClock(T0 + 1_000);
const resetS = (windowS: number) => (Math.floor(clock() / (windowS * 1000)) * windowS * 1000 + windowS * 1000) / 1000;

const ROUTES = `  - path: /v2/capabilities
    public: true
  - id: send-room-notification
    path: /v2/room/{room_id_or_name}/notification
    methods: [POST]
    scopes: [send_notification]
    client_types: [group, room, user]
    room_param: room_id_or_name
    flood_control: { limit: 2, window_s: 30, param: room_id_or_name }
  - id: get-room
    path: /v2/room/{room_id_or_name}
    methods: [GET]
    scopes: [view_group, view_room]
    client_types: [group, room, user]
    room_param: room_id_or_name
  - id: get-all-rooms
    path: /v2/room
    methods: [GET]
    scopes: [view_group, view_room]
    client_types: [group, user]
  - id: admin
    path: /v2/admin/*
    scopes_all: [admin_group, view_group]
    client_types: [user]
    rate_limit: { limit: 2, window_s: 120 }`;

function rateLimitBlock(o: { limit?: number; key?: 'token' | 'subject'; extra?: string } = {}): string {
  return `rate_limit:
  store: memory
  key: ${o.key ?? 'token'}
  default: { limit: ${o.limit ?? 5}, window_s: 60 }
  client_types:
    room: { limit: 2, window_s: 60 }
${o.extra ?? ''}`;
}

const config = (upstream: string, rl: string = rateLimitBlock()) => baseConfig({ upstream, rateLimit: rl, routes: ROUTES });

let jtiSeq = 0;
/** A token valid at the injected clock's time; a fresh jti unless `jti` is given (null: none). */
function mint(over: Record<string, unknown> = {}, jti: string | null = `rl-${++jtiSeq}-${Math.random().toString(36).slice(2, 8)}`) {
  const iat = Math.floor(clock() / 1000);
  const claims: Record<string, unknown> = {
    iss: 'scopegate-test',
    aud: 'api',
    sub: 'alice',
    iat,
    exp: iat + 7_200,
    client_type: 'user',
    scope: 'view_group view_room send_notification',
    ...over,
  };
  if (jti !== null) claims.jti = jti;
  return hsToken(TEST_SECRET, claims);
}


const bearer = (t: string, extra: Record<string, string> = {}) => ({ authorization: `Bearer ${t}`, ...extra });

/** The five rate-limit headers of a response (undefined when absent). */
function rl(res: RawResponse) {
  return {
    limit: res.headers['x-ratelimit-limit'],
    remaining: res.headers['x-ratelimit-remaining'],
    reset: res.headers['x-ratelimit-reset'],
    policy: res.headers['ratelimit-policy'],
    ratelimit: res.headers['ratelimit'],
  };
}

/** Every rate-limit or flood-control header present on a response. */
const limitHeaderNames = (res: RawResponse) => Object.keys(res.headers).filter((h) => /^(x-ratelimit-|ratelimit|x-floodcontrol-)/.test(h));

const RATE_LIMITED_429 = { error: { code: 429, message: 'Rate limit exceeded', type: 'Too Many Requests', reason: 'rate_limited' } };
const STORE_503 = {
  error: { code: 503, message: 'Rate-limit store is unavailable; try again later.', type: 'Service Unavailable', reason: 'store_unavailable' },
};

async function scrape(gw: TestGateway): Promise<string> {
  const res = await fetch(`${gw.adminUrl!}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

/** Value of one sample in Prometheus text (0 when the series does not exist yet). */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

let up: Upstream;
let gw: TestGateway;

beforeAll(async () => {
  up = await startUpstream();
  gw = await startTestGateway(config(up.url), { clock });
});
afterAll(async () => {
  await gw?.close();
  await up?.close();
});
beforeEach(() => {
  clock.set(T0 + 1_000);
  up.requests.length = 0;
});

describe('rate-limit headers (SPEC 4)', () => {
  it('puts X-Ratelimit-* and the IETF fields on an upstream 200, reset being the window end in integer epoch seconds', async () => {
    const t = await mint();
    const res = await raw(gw.url, 'GET', '/v2/room/42', bearer(t));
    expect(res.status).toBe(200);
    expect(up.requests).toHaveLength(1);
    expect(rl(res)).toEqual({
      limit: '5',
      remaining: '4',
      reset: String((T0 + 60_000) / 1000),
      policy: '"default";q=5;w=60',
      ratelimit: '"default";r=4;t=59',
    });
    expect(res.headers['x-ratelimit-reset']).toMatch(/^\d+$/);
    // The headers are the gateway's, not something the upstream was asked to echo.
    expect(Object.keys(up.requests[0]!.headers).filter((h) => h.includes('ratelimit'))).toEqual([]);
  });

  it("replaces the upstream's own rate-limit headers with the gateway's, and keeps them on a 502", async () => {
    up.route('/v2/room/77', { kind: 'respond', status: 200, headers: { 'X-RateLimit-Limit': '999', RateLimit: '"up";r=1;t=1' }, body: '{}' });
    up.route('/v2/room/78', { kind: 'reset' });
    const t = await mint();
    const res = await raw(gw.url, 'GET', '/v2/room/77', bearer(t));
    expect(res.status).toBe(200);
    expect(rl(res)).toMatchObject({ limit: '5', remaining: '4', ratelimit: '"default";r=4;t=59' });
    const bad = await raw(gw.url, 'GET', '/v2/room/78', bearer(t));
    expect(bad.status).toBe(502);
    expect(JSON.parse(bad.body).error.reason).toBe('upstream_unavailable');
    expect(rl(bad)).toMatchObject({ limit: '5', remaining: '3' });
  });

  it('counts remaining down request by request', async () => {
    const t = await mint();
    const remaining = [];
    for (let i = 0; i < 5; i++) remaining.push(rl(await raw(gw.url, 'GET', '/v2/room/42', bearer(t))).remaining);
    expect(remaining).toEqual(['4', '3', '2', '1', '0']);
  });

  it('puts the headers on 403s from authorization, and each 403 spends a unit', async () => {
    // A user token without admin_group (scope_insufficient), a room token elsewhere (room_forbidden),
    // a room token on a group/user route (client_type_forbidden): one budget each, all spent.
    const t = await mint({ scope: 'view_group' });
    const scope = await raw(gw.url, 'GET', '/v2/admin/settings', bearer(t));
    expect(scope.status).toBe(403);
    expect(JSON.parse(scope.body).error.reason).toBe('scope_insufficient');
    // The admin route has its own window (limit 2): its 403 carries that window.
    expect(rl(scope)).toMatchObject({ limit: '2', remaining: '1', policy: '"admin";q=2;w=120' });

    const room = await mint({ client_type: 'room', room_id: '42', scope: 'view_room' });
    const other = await raw(gw.url, 'GET', '/v2/room/43', bearer(room));
    expect(other.status).toBe(403);
    expect(JSON.parse(other.body).error.reason).toBe('room_forbidden');
    expect(rl(other)).toMatchObject({ limit: '2', remaining: '1', reset: String(resetS(60)) });
    const forbidden = await raw(gw.url, 'GET', '/v2/room', bearer(room));
    expect(forbidden.status).toBe(403);
    expect(JSON.parse(forbidden.body).error.reason).toBe('client_type_forbidden');
    expect(rl(forbidden)).toMatchObject({ limit: '2', remaining: '0' });
    // Two 403s spent the room token's whole budget: its own room is now refused with 429.
    const own = await raw(gw.url, 'GET', '/v2/room/42', bearer(room));
    expect(own.status).toBe(429);
    expect(JSON.parse(own.body)).toEqual(RATE_LIMITED_429);
    expect(up.requests).toHaveLength(0);
  });

  it('puts the headers on the 202 auth_test answer', async () => {
    const t = await mint();
    const res = await raw(gw.url, 'GET', '/v2/room/42?auth_test=true', bearer(t));
    expect(res.status).toBe(202);
    expect(rl(res)).toEqual({
      limit: '5',
      remaining: '5',
      reset: String((T0 + 60_000) / 1000),
      policy: '"default";q=5;w=60',
      ratelimit: '"default";r=5;t=59',
    });
    expect(up.requests).toHaveLength(0);
  });

  it('sends no rate-limit headers on 401s or on public routes', async () => {
    const expired = await mint({ exp: Math.floor(clock() / 1000) - 3_600, iat: Math.floor(clock() / 1000) - 7_200 });
    const cases = [
      await raw(gw.url, 'GET', '/v2/room/42'),
      await raw(gw.url, 'GET', '/v2/room/42', bearer(expired)),
      await raw(gw.url, 'GET', '/v2/room/42', bearer('not.a.jwt')),
      await raw(gw.url, 'GET', '/v2/capabilities'),
      await raw(gw.url, 'GET', '/v2/capabilities', bearer(await mint())),
    ];
    expect(cases.map((r) => r.status)).toEqual([401, 401, 401, 200, 200]);
    for (const r of cases) expect(limitHeaderNames(r)).toEqual([]);
  });
});

describe('429 when the window is exhausted (SPEC 4)', () => {
  it('refuses request limit+1 with the HipChat envelope and Retry-After, without contacting the upstream', async () => {
    const before = sample(await scrape(gw), 'scopegate_rate_limited_total{route="get-room",kind="rate"}');
    const t = await mint();
    const statuses = [];
    for (let i = 0; i < 5; i++) statuses.push((await raw(gw.url, 'GET', '/v2/room/42', bearer(t))).status);
    expect(statuses).toEqual([200, 200, 200, 200, 200]);
    expect(up.requests).toHaveLength(5);

    for (let i = 0; i < 3; i++) {
      const res = await raw(gw.url, 'GET', '/v2/room/42', bearer(t));
      expect(res.status).toBe(429);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(JSON.parse(res.body)).toEqual(RATE_LIMITED_429);
      expect(res.headers['retry-after']).toBe('59');
      expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(60);
      expect(rl(res)).toMatchObject({ limit: '5', remaining: '0', reset: String((T0 + 60_000) / 1000) });
      expect(res.headers['x-request-id']).toBeTruthy();
      expect(res.body).not.toContain(t);
    }
    expect(up.requests).toHaveLength(5);
    const after = sample(await scrape(gw), 'scopegate_rate_limited_total{route="get-room",kind="rate"}');
    expect(after - before).toBe(3);
  });

  it('lets requests through again once the clock crosses the window boundary', async () => {
    const t = await mint();
    for (let i = 0; i < 5; i++) await raw(gw.url, 'GET', '/v2/room/42', bearer(t));
    clock.set(T0 + 59_999);
    const last = await raw(gw.url, 'GET', '/v2/room/42', bearer(t));
    expect(last.status).toBe(429);
    expect(last.headers['retry-after']).toBe('1');

    clock.set(T0 + 60_000);
    const res = await raw(gw.url, 'GET', '/v2/room/42', bearer(t));
    expect(res.status).toBe(200);
    expect(rl(res)).toMatchObject({ remaining: '4', reset: String((T0 + 120_000) / 1000), ratelimit: '"default";r=4;t=60' });
    expect(up.requests).toHaveLength(6);
  });
});

describe('flood control per recipient (SPEC 4)', () => {
  it('answers 429 flood_limited for room A with X-FloodControl-* headers while room B still works', async () => {
    const t = await mint();
    const a1 = await raw(gw.url, 'POST', '/v2/room/A/notification', bearer(t));
    expect(a1.status).toBe(200);
    expect(a1.headers).toMatchObject({
      'x-floodcontrol-limit': '2',
      'x-floodcontrol-remaining': '1',
      'x-floodcontrol-reset': String((T0 + 30_000) / 1000),
      'x-ratelimit-remaining': '4',
      'ratelimit-policy': '"default";q=5;w=60, "flood";q=2;w=30',
      ratelimit: '"default";r=4;t=59, "flood";r=1;t=29',
    });
    expect((await raw(gw.url, 'POST', '/v2/room/A/notification', bearer(t))).status).toBe(200);

    const a3 = await raw(gw.url, 'POST', '/v2/room/A/notification', bearer(t));
    expect(a3.status).toBe(429);
    const body = JSON.parse(a3.body) as { error: Record<string, unknown> };
    expect(body.error).toMatchObject({ code: 429, type: 'Too Many Requests', reason: 'flood_limited' });
    expect(body.error.message).toMatch(/^Rate limit exceeded/);
    expect(a3.headers['retry-after']).toBe('29');
    expect(a3.headers['x-floodcontrol-remaining']).toBe('0');

    const b = await raw(gw.url, 'POST', '/v2/room/B/notification', bearer(t));
    expect(b.status).toBe(200);
    expect(b.headers).toMatchObject({ 'x-floodcontrol-remaining': '1', 'x-ratelimit-remaining': '1' });
    expect(up.requests.map((r) => r.url)).toEqual(['/v2/room/A/notification', '/v2/room/A/notification', '/v2/room/B/notification']);
  });

  it('keeps flood windows per token: another token may still write to room A', async () => {
    const [t1, t2] = [await mint(), await mint()];
    for (let i = 0; i < 2; i++) await raw(gw.url, 'POST', '/v2/room/A/notification', bearer(t1));
    expect((await raw(gw.url, 'POST', '/v2/room/A/notification', bearer(t1))).status).toBe(429);
    const other = await raw(gw.url, 'POST', '/v2/room/A/notification', bearer(t2));
    expect(other.status).toBe(200);
    expect(other.headers['x-floodcontrol-remaining']).toBe('1');
  });

  it('frees room A again after the flood window ends', async () => {
    const t = await mint();
    for (let i = 0; i < 2; i++) await raw(gw.url, 'POST', '/v2/room/A/notification', bearer(t));
    expect((await raw(gw.url, 'POST', '/v2/room/A/notification', bearer(t))).status).toBe(429);
    clock.set(T0 + 30_000);
    const res = await raw(gw.url, 'POST', '/v2/room/A/notification', bearer(t));
    expect(res.status).toBe(200);
    expect(res.headers['x-floodcontrol-reset']).toBe(String((T0 + 60_000) / 1000));
  });
});

describe('auth_test reads without spending (SPEC 1.6)', () => {
  it('answers many auth_tests without changing the budget', async () => {
    const t = await mint();
    expect((await raw(gw.url, 'GET', '/v2/room/42', bearer(t))).status).toBe(200);
    for (let i = 0; i < 12; i++) {
      const res = await raw(gw.url, 'GET', '/v2/room/42?auth_test=TRUE', bearer(t));
      expect(res.status).toBe(202);
      expect(rl(res).remaining).toBe('4');
    }
    const next = await raw(gw.url, 'GET', '/v2/room/42', bearer(t));
    expect(next.status).toBe(200);
    expect(rl(next).remaining).toBe('3');
    expect(up.requests).toHaveLength(2);
  });

  it('answers auth_test with the 429 a real call would get once the window is exhausted', async () => {
    const t = await mint();
    for (let i = 0; i < 4; i++) await raw(gw.url, 'GET', '/v2/room/42', bearer(t));
    // One unit left: the probe still says yes.
    expect((await raw(gw.url, 'GET', '/v2/room/42?auth_test=true', bearer(t))).status).toBe(202);
    await raw(gw.url, 'GET', '/v2/room/42', bearer(t));
    const res = await raw(gw.url, 'GET', '/v2/room/42?auth_test=true', bearer(t));
    expect(res.status).toBe(429);
    expect(JSON.parse(res.body)).toEqual(RATE_LIMITED_429);
    expect(res.headers['retry-after']).toBe('59');
    expect(rl(res)).toMatchObject({ limit: '5', remaining: '0' });
    expect(up.requests).toHaveLength(5);
  });

  it('answers auth_test with flood_limited for an exhausted recipient only', async () => {
    const t = await mint();
    for (let i = 0; i < 2; i++) await raw(gw.url, 'POST', '/v2/room/A/notification', bearer(t));
    const a = await raw(gw.url, 'POST', '/v2/room/A/notification?auth_test=true', bearer(t));
    expect(a.status).toBe(429);
    expect(JSON.parse(a.body).error.reason).toBe('flood_limited');
    const b = await raw(gw.url, 'POST', '/v2/room/B/notification?auth_test=true', bearer(t));
    expect(b.status).toBe(202);
    expect(b.headers['x-floodcontrol-remaining']).toBe('2');
  });
});

describe('which budget a request spends (SPEC 4)', () => {
  it('gives room tokens the client-type override: a smaller limit on the same window', async () => {
    const room = await mint({ client_type: 'room', room_id: '42', scope: 'view_room' });
    const r1 = await raw(gw.url, 'GET', '/v2/room/42', bearer(room));
    expect(r1.status).toBe(200);
    expect(rl(r1)).toEqual({
      limit: '2',
      remaining: '1',
      reset: String((T0 + 60_000) / 1000),
      policy: '"room";q=2;w=60',
      ratelimit: '"room";r=1;t=59',
    });
    expect((await raw(gw.url, 'GET', '/v2/room/42', bearer(room))).status).toBe(200);
    expect((await raw(gw.url, 'GET', '/v2/room/42', bearer(room))).status).toBe(429);
    // A user token on the same route keeps the default limit.
    expect(rl(await raw(gw.url, 'GET', '/v2/room/42', bearer(await mint())))).toMatchObject({ limit: '5', remaining: '4' });
  });

  it('gives a route with rate_limit its own window that does not spend the default one', async () => {
    const t = await mint({ scope: 'admin_group view_group' });
    const a1 = await raw(gw.url, 'GET', '/v2/admin/settings', bearer(t));
    expect(a1.status).toBe(200);
    expect(rl(a1)).toEqual({
      limit: '2',
      remaining: '1',
      reset: String((T0 + 120_000) / 1000),
      policy: '"admin";q=2;w=120',
      ratelimit: '"admin";r=1;t=119',
    });
    expect((await raw(gw.url, 'GET', '/v2/admin/users', bearer(t))).status).toBe(200);
    const a3 = await raw(gw.url, 'GET', '/v2/admin/settings', bearer(t));
    expect(a3.status).toBe(429);
    expect(a3.headers['retry-after']).toBe('119');
    // The default window was never touched by the admin calls ...
    const room = await raw(gw.url, 'GET', '/v2/room/42', bearer(t));
    expect(room.status).toBe(200);
    expect(rl(room)).toMatchObject({ limit: '5', remaining: '4' });
    // ... and spending the default window does not refill or drain the route's.
    expect((await raw(gw.url, 'GET', '/v2/admin/settings', bearer(t))).status).toBe(429);
    expect(up.requests).toHaveLength(3);
  });

  it('makes two tokens with one jti share a budget', async () => {
    const jti = `shared-${Math.random()}`;
    const a = await mint({ scope: 'view_group' }, jti);
    const b = await mint({ scope: 'view_room' }, jti);
    expect(a).not.toBe(b);
    for (let i = 0; i < 5; i++) expect((await raw(gw.url, 'GET', '/v2/room/42', bearer(a))).status).toBe(200);
    const res = await raw(gw.url, 'GET', '/v2/room/42', bearer(b));
    expect(res.status).toBe(429);
  });

  it('keys a token without jti by its hash: separate budgets per token, nothing of the token in the log', async () => {
    const a = await mint({ scope: 'view_group' }, null);
    const b = await mint({ scope: 'view_room' }, null);
    for (let i = 0; i < 5; i++) await raw(gw.url, 'GET', '/v2/room/42', bearer(a));
    expect((await raw(gw.url, 'GET', '/v2/room/42', bearer(a))).status).toBe(429);
    const rid = `rl-nojti-${Math.random().toString(36).slice(2)}`;
    const res = await raw(gw.url, 'GET', '/v2/room/42', bearer(b, { 'x-request-id': rid }));
    expect(res.status).toBe(200);
    expect(rl(res).remaining).toBe('4');

    const line = gw.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.request_id === rid && l.msg === 'request');
    expect(line?.limit_key).toBe(`tok:${createHash('sha256').update(b).digest('hex').slice(0, 16)}`);
    for (const l of gw.logs) {
      expect(l).not.toContain(a);
      expect(l).not.toContain(b);
    }
  });

  it('keys a token with jti by issuer and jti in the log', async () => {
    const jti = `logged-${Math.random().toString(36).slice(2)}`;
    const rid = `rl-jti-${jti}`;
    await raw(gw.url, 'GET', '/v2/room/42', bearer(await mint({}, jti), { 'x-request-id': rid }));
    const line = gw.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.request_id === rid && l.msg === 'request');
    expect(line?.limit_key).toBe(`jti:local:${jti}`);
  });
});

describe('key: subject (SPEC 4)', () => {
  let sgw: TestGateway;
  beforeAll(async () => {
    sgw = await startTestGateway(config(up.url, rateLimitBlock({ key: 'subject' })), { clock });
  });
  afterAll(async () => sgw?.close());

  it('makes two tokens of one subject share a budget, and keeps other subjects apart', async () => {
    const sub = `carol-${Math.random().toString(36).slice(2)}`;
    const [a, b] = [await mint({ sub }), await mint({ sub })];
    for (let i = 0; i < 3; i++) expect((await raw(sgw.url, 'GET', '/v2/room/42', bearer(a))).status).toBe(200);
    const viaB = await raw(sgw.url, 'GET', '/v2/room/42', bearer(b));
    expect(viaB.status).toBe(200);
    expect(rl(viaB).remaining).toBe('1');
    await raw(sgw.url, 'GET', '/v2/room/42', bearer(b));
    expect((await raw(sgw.url, 'GET', '/v2/room/42', bearer(a))).status).toBe(429);
    // Another subject has its own budget.
    const dave = await raw(sgw.url, 'GET', '/v2/room/42', bearer(await mint({ sub: `dave-${sub}` })));
    expect(dave.status).toBe(200);
    expect(rl(dave).remaining).toBe('4');
  });
});

describe('rate-limit store errors (SPEC 4 on_store_error)', () => {
  const deadRedis = async () => (await closedPortUrl()).replace(/^http:/, 'redis:');
  const redisBlock = (url: string, mode: 'open' | 'closed') => `rate_limit:
  store: redis
  redis_url: ${url}
  redis_timeout_ms: 200
  on_store_error: ${mode}
  default: { limit: 5, window_s: 60 }
`;

  it('open: forwards without rate-limit headers and counts the error in scopegate_rate_limit_store_errors_total{store="redis"}', async () => {
    const ogw = await startTestGateway(config(up.url, redisBlock(await deadRedis(), 'open')), { clock });
    try {
      const t = await mint();
      for (let i = 0; i < 3; i++) {
        const res = await raw(ogw.url, 'GET', '/v2/room/42', bearer(t));
        expect(res.status).toBe(200);
        expect(limitHeaderNames(res)).toEqual([]);
      }
      expect(up.requests).toHaveLength(3);
      expect(sample(await scrape(ogw), 'scopegate_rate_limit_store_errors_total{store="redis"}')).toBe(3);
      expect(ogw.logs.some((l) => l.includes('on_store_error: open'))).toBe(true);
    } finally {
      await ogw.close();
    }
  });

  it('closed: answers 503 store_unavailable in the envelope (auth_test too) and never contacts the upstream', async () => {
    const cgw = await startTestGateway(config(up.url, redisBlock(await deadRedis(), 'closed')), { clock });
    try {
      const t = await mint();
      const res = await raw(cgw.url, 'GET', '/v2/room/42', bearer(t));
      expect(res.status).toBe(503);
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(JSON.parse(res.body)).toEqual(STORE_503);
      expect(limitHeaderNames(res)).toEqual([]);
      const probe = await raw(cgw.url, 'GET', '/v2/room/42?auth_test=true', bearer(t));
      expect(probe.status).toBe(503);
      expect(JSON.parse(probe.body)).toEqual(STORE_503);
      expect(up.requests).toHaveLength(0);
      expect(sample(await scrape(cgw), 'scopegate_rate_limit_store_errors_total{store="redis"}')).toBe(2);
      const ready = await fetch(`${cgw.adminUrl!}/readyz`);
      expect(ready.status).toBe(503);
    } finally {
      await cgw.close();
    }
  });
});

describe('counters and config reloads (SPEC 4, 6)', () => {
  it('keeps counters across a reload with an unchanged store, and applies a changed limit from the next request', async () => {
    const rgw = await startTestGateway(config(up.url, rateLimitBlock({ limit: 3 })), { clock });
    try {
      const t = await mint();
      const get = () => raw(rgw.url, 'GET', '/v2/room/42', bearer(t));
      expect(rl(await get()).remaining).toBe('2');
      expect(rl(await get()).remaining).toBe('1');

      expect(await rgw.reload(loadConfigText(config(up.url, rateLimitBlock({ limit: 3 })), { env: {} }))).toBe(true);
      expect(rl(await get()).remaining).toBe('0');
      expect((await get()).status).toBe(429);

      // Limit raised to 6: the 4 units already counted stay counted.
      expect(await rgw.reload(loadConfigText(config(up.url, rateLimitBlock({ limit: 6 })), { env: {} }))).toBe(true);
      const raised = await get();
      expect(raised.status).toBe(200);
      expect(rl(raised)).toMatchObject({ limit: '6', remaining: '1', policy: '"default";q=6;w=60' });
      expect((await get()).status).toBe(200);
      expect((await get()).status).toBe(429);

      // Limit lowered below the count: refused at once.
      expect(await rgw.reload(loadConfigText(config(up.url, rateLimitBlock({ limit: 2 })), { env: {} }))).toBe(true);
      const lowered = await raw(rgw.url, 'GET', '/v2/room/42?auth_test=true', bearer(t));
      expect(lowered.status).toBe(429);
      expect(rl(lowered)).toMatchObject({ limit: '2', remaining: '0' });
    } finally {
      await rgw.close();
    }
  });
});
