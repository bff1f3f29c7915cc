import { createHash } from 'node:crypto';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import type { RateLimitConfig, RouteConfig } from '../config/schema.js';
import { renderError } from '../errors.js';
import type { CompiledRoute, Principal, RateLimitStore } from '../types.js';
import { createMemoryStore } from './memory-store.js';
import { createRateLimiter, type LimitInput } from './policy.js';
import { createRedisStore } from './redis-store.js';

const W = 60_000;
const T0 = Math.floor(1_700_000_000_000 / W) * W; // window-aligned
const RESET_S = (T0 + W) / 1000;

function config(over: Partial<RateLimitConfig> = {}): RateLimitConfig {
  return {
    enabled: true,
    store: 'memory',
    key_prefix: 'scopegate',
    on_store_error: 'open',
    key: 'token',
    ietf_headers: true,
    max_keys: 1_000,
    redis_timeout_ms: 500,
    default: { limit: 3, window_s: 60 },
    client_types: { room: { limit: 2, window_s: 60 } },
    ...over,
  };
}

function route(id: string, extra: Partial<RouteConfig> = {}): CompiledRoute {
  return {
    id,
    config: { path: `/${id}`, public: false, ...extra },
    methods: null,
    params: [],
    upstream: 'default',
    index: 0,
  };
}
const ADMIN = route('admin', { rate_limit: { limit: 5, window_s: 120 } });
const NOTIFY = route('notify', { flood_control: { limit: 2, window_s: 30, param: 'room' } });
const NOTIFY_OWN = route('notify-own', {
  rate_limit: { limit: 10, window_s: 60 },
  flood_control: { limit: 1, window_s: 60, param: 'room' },
});

const user: Principal = { issuerName: 'local', clientType: 'user', scopes: [], tokenId: 'jti-1', subject: 'alice' };

function setup(cfgOver: Partial<RateLimitConfig> = {}, store?: RateLimitStore) {
  const clock = { now: T0 + 1_000 };
  const read = () => clock.now;
  const s = store ?? createMemoryStore({ maxKeys: 1_000, clock: read });
  const limiter = createRateLimiter(config(cfgOver), { store: s, clock: read });
  const hit = (over: Partial<LimitInput> = {}) =>
    limiter.check({ principal: user, token: 'tok-A', route: null, params: {}, consume: true, ...over });
  return { clock, limiter, hit, store: s };
}

async function hits(n: number, fn: () => unknown): Promise<void> {
  for (let i = 0; i < n; i++) await fn();
}

describe('rate limiter: counting and headers', () => {
  it('allows up to the limit, then answers rate_limited with Retry-After until the window ends', async () => {
    const { hit } = setup();
    const seen = [];
    for (let i = 0; i < 4; i++) {
      const d = await hit();
      seen.push([d.headers['X-Ratelimit-Remaining'], d.error?.code ?? 'ok', d.limited ?? '-']);
    }
    expect(seen).toEqual([
      ['2', 'ok', '-'],
      ['1', 'ok', '-'],
      ['0', 'ok', '-'],
      ['0', 'rate_limited', 'rate'],
    ]);
    const d = await hit();
    expect(d.error?.detail.retryAfter).toBe(59);
    expect(renderError(d.error!, { realm: 'api' }).headers['retry-after']).toBe('59');
    expect(d.error?.status).toBe(429);
  });

  it('writes the exact header set, canonical names, reset as integer epoch seconds', async () => {
    const { hit } = setup();
    const d = await hit();
    expect(d.headers).toEqual({
      'X-Ratelimit-Limit': '3',
      'X-Ratelimit-Remaining': '2',
      'X-Ratelimit-Reset': String(RESET_S),
      'RateLimit-Policy': '"default";q=3;w=60',
      RateLimit: '"default";r=2;t=59',
    });
    expect(Number.isInteger(Number(d.headers['X-Ratelimit-Reset']))).toBe(true);
  });

  it('leaves out the IETF fields when ietf_headers is false', async () => {
    const { hit } = setup({ ietf_headers: false });
    const d = await hit();
    expect(Object.keys(d.headers).sort()).toEqual(['X-Ratelimit-Limit', 'X-Ratelimit-Remaining', 'X-Ratelimit-Reset']);
  });

  it('counts t down with the clock inside the window', async () => {
    const { hit, clock } = setup();
    clock.now = T0 + W - 1;
    const d = await hit();
    expect(d.headers.RateLimit).toBe('"default";r=2;t=1');
    expect(d.headers['X-Ratelimit-Reset']).toBe(String(RESET_S));
  });

  it.each([
    { name: 'last ms of the window is still exhausted', at: T0 + W - 1, code: 'rate_limited', remaining: '0' },
    { name: 'first ms of the next window starts afresh', at: T0 + W, code: 'ok', remaining: '2' },
  ])('window edges: $name', async ({ at, code, remaining }) => {
    const { hit, clock } = setup();
    await hits(3, hit);
    clock.now = at;
    const d = await hit();
    expect(d.error?.code ?? 'ok').toBe(code);
    expect(d.headers['X-Ratelimit-Remaining']).toBe(remaining);
  });
});

describe('rate limiter: auth_test reads without spending', () => {
  it.each([
    { spent: 0, code: 'ok', remaining: '3' },
    { spent: 2, code: 'ok', remaining: '1' },
    { spent: 3, code: 'rate_limited', remaining: '0' },
  ])('after $spent hits of 3 a read is $code with remaining $remaining', async ({ spent, code, remaining }) => {
    const { hit } = setup();
    await hits(spent, hit);
    const d = await hit({ consume: false });
    expect(d.error?.code ?? 'ok').toBe(code);
    expect(d.headers['X-Ratelimit-Remaining']).toBe(remaining);
    // Reading again changes nothing.
    expect((await hit({ consume: false })).headers['X-Ratelimit-Remaining']).toBe(remaining);
  });
});

describe('rate limiter: which budget a request spends', () => {
  const sha = (s: string) => createHash('sha256').update(s).digest('hex');
  const noJti: Principal = { issuerName: 'local', clientType: 'user', scopes: [], subject: 'alice' };

  it.each([
    { name: 'jti when present', cfg: {}, principal: user, token: 'tok-A', key: 'jti:local:jti-1' },
    { name: 'a SHA-256 prefix of the token without jti', cfg: {}, principal: noJti, token: 'tok-A', key: `tok:${sha('tok-A').slice(0, 16)}` },
    { name: 'the subject with key: subject', cfg: { key: 'subject' as const }, principal: user, token: 'tok-A', key: 'sub:local:alice' },
    {
      name: 'the token key with key: subject and no subject',
      cfg: { key: 'subject' as const },
      principal: { ...user, subject: undefined },
      token: 'tok-A',
      key: 'jti:local:jti-1',
    },
  ])('keys by $name, never by the raw token', async ({ cfg, principal, token, key }) => {
    const { hit } = setup(cfg);
    const d = await hit({ principal, token });
    expect(d.key).toBe(key);
    expect(d.key).not.toContain(token);
  });

  it.each([
    { name: 'two tokens with one jti share a budget', cfg: {}, a: [user, 'tok-A'], b: [user, 'tok-B'], shared: true },
    { name: 'two tokens without jti have their own budgets', cfg: {}, a: [noJti, 'tok-A'], b: [noJti, 'tok-B'], shared: false },
    {
      name: 'key: subject makes two jtis of one subject share',
      cfg: { key: 'subject' as const },
      a: [user, 'tok-A'],
      b: [{ ...user, tokenId: 'jti-2' }, 'tok-B'],
      shared: true,
    },
    {
      name: 'the same subject at two issuers is two budgets',
      cfg: { key: 'subject' as const },
      a: [user, 'tok-A'],
      b: [{ ...user, issuerName: 'idp' }, 'tok-B'],
      shared: false,
    },
  ] as const)('$name', async ({ cfg, a, b, shared }) => {
    const { hit } = setup(cfg);
    await hits(3, () => hit({ principal: a[0], token: a[1] }));
    const d = await hit({ principal: b[0], token: b[1] });
    expect(d.error?.code ?? 'ok').toBe(shared ? 'rate_limited' : 'ok');
  });

  it('gives a client-type override its limit on the same window, named after the client type', async () => {
    const { hit } = setup();
    const room: Principal = { ...user, clientType: 'room' };
    const d1 = await hit({ principal: room });
    expect(d1.headers['X-Ratelimit-Limit']).toBe('2');
    expect(d1.headers['RateLimit-Policy']).toBe('"room";q=2;w=60');
    await hit({ principal: room });
    expect((await hit({ principal: room })).error?.code).toBe('rate_limited');
  });

  it('treats an unknown client type (even "constructor") as default', async () => {
    const { hit } = setup();
    const d = await hit({ principal: { ...user, clientType: 'constructor' } });
    expect(d.headers['RateLimit-Policy']).toBe('"default";q=3;w=60');
  });

  it("gives a route with rate_limit its own window, keyed by token and route, named by route id", async () => {
    const { hit, clock } = setup();
    clock.now = T0 + 1_000; // T0 is also aligned to the route's 120 s window
    await hits(3, hit); // default window exhausted
    const d = await hit({ route: ADMIN });
    expect(d.error).toBeUndefined();
    expect(d.headers).toMatchObject({
      'X-Ratelimit-Limit': '5',
      'X-Ratelimit-Remaining': '4',
      'RateLimit-Policy': '"admin";q=5;w=120',
    });
    await hits(4, () => hit({ route: ADMIN }));
    expect((await hit({ route: ADMIN })).error?.code).toBe('rate_limited');
    // Another token still has the route's full budget.
    const other = await hit({ route: ADMIN, principal: { ...user, tokenId: 'jti-9' } });
    expect(other.headers['X-Ratelimit-Remaining']).toBe('4');
  });
});

describe('rate limiter: flood control', () => {
  it('limits per (token, route, recipient) with X-FloodControl headers and flood_limited', async () => {
    const { hit } = setup({ default: { limit: 100, window_s: 60 } });
    const send = (room: string) => hit({ route: NOTIFY, params: { room } });
    const d1 = await send('42');
    expect(d1.headers).toMatchObject({
      'X-FloodControl-Limit': '2',
      'X-FloodControl-Remaining': '1',
      'X-FloodControl-Reset': String((T0 + 30_000) / 1000),
      'X-Ratelimit-Remaining': '99',
      'RateLimit-Policy': '"default";q=100;w=60, "flood";q=2;w=30',
      RateLimit: '"default";r=99;t=59, "flood";r=1;t=29',
    });
    await send('42');
    const d3 = await send('42');
    expect(d3.error?.code).toBe('flood_limited');
    expect(d3.limited).toBe('flood');
    expect(d3.error?.detail.retryAfter).toBe(29);
    expect(d3.headers['X-FloodControl-Remaining']).toBe('0');
    expect((await send('43')).error).toBeUndefined();
  });

  it('takes the recipient as the router decoded it, without decoding it again', async () => {
    // The router turns /room%2541/ into "room%41"; a second decode would merge it with "roomA".
    const { hit } = setup({ default: { limit: 100, window_s: 60 } });
    await hit({ route: NOTIFY, params: { room: 'room%41' } });
    await hit({ route: NOTIFY, params: { room: 'room%41' } });
    expect((await hit({ route: NOTIFY, params: { room: 'roomA' } })).error).toBeUndefined();
    expect((await hit({ route: NOTIFY, params: { room: 'room%41' } })).error?.code).toBe('flood_limited');
  });

  it('reports rate_limited when both windows deny', async () => {
    const { hit } = setup({ default: { limit: 2, window_s: 60 } });
    await hits(2, () => hit({ route: NOTIFY, params: { room: '1' } }));
    const d = await hit({ route: NOTIFY, params: { room: '1' } });
    expect(d.error?.code).toBe('rate_limited');
    expect(d.limited).toBe('rate');
    expect(d.headers['X-FloodControl-Remaining']).toBe('0');
  });

  it('works beside a route window', async () => {
    const { hit } = setup();
    const d1 = await hit({ route: NOTIFY_OWN, params: { room: 'x' } });
    expect(d1.headers['RateLimit-Policy']).toBe('"notify-own";q=10;w=60, "flood";q=1;w=60');
    expect((await hit({ route: NOTIFY_OWN, params: { room: 'x' } })).error?.code).toBe('flood_limited');
  });

  it('counts both windows in parallel', async () => {
    const inner = createMemoryStore({ maxKeys: 100, clock: () => T0 });
    let inFlight = 0;
    let maxInFlight = 0;
    const store: RateLimitStore = {
      kind: 'memory',
      async increment(...args) {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await new Promise((r) => setImmediate(r));
        inFlight--;
        return inner.increment(...args);
      },
      ping: () => inner.ping(),
      close: () => inner.close(),
    };
    const { hit } = setup({}, store);
    await hit({ route: NOTIFY, params: { room: '1' } });
    expect(maxInFlight).toBe(2);
  });
});

describe('rate limiter: store failures and switching off', () => {
  async function downStore(): Promise<RateLimitStore> {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const { port } = srv.address() as net.AddressInfo;
    await new Promise<void>((r) => srv.close(() => r()));
    return createRedisStore({ url: `redis://127.0.0.1:${port}`, keyPrefix: 't', timeoutMs: 200, onError: () => {} });
  }

  it.each([
    { mode: 'open' as const, code: undefined, status: undefined },
    { mode: 'closed' as const, code: 'store_unavailable', status: 503 },
  ])('on_store_error $mode: error $code, storeError set, no rate-limit headers', async ({ mode, code, status }) => {
    const store = await downStore();
    try {
      const { hit } = setup({ on_store_error: mode }, store);
      const d = await hit({ route: NOTIFY, params: { room: '1' } });
      expect(d.storeError).toBeInstanceOf(Error);
      expect(d.headers).toEqual({});
      expect(d.error?.code).toBe(code);
      expect(d.error?.status).toBe(status);
      expect(d.key).toBe('jti:local:jti-1');
    } finally {
      await store.close();
    }
  });

  it('enabled: false makes no store call and sends no headers', async () => {
    let calls = 0;
    const store: RateLimitStore = {
      kind: 'memory',
      increment: async () => {
        calls++;
        return 1_000_000;
      },
      ping: async () => {},
      close: async () => {},
    };
    const { hit } = setup({ enabled: false }, store);
    const d = await hit({ route: NOTIFY, params: { room: '1' } });
    expect(d).toEqual({ headers: {}, key: 'jti:local:jti-1' });
    expect(calls).toBe(0);
  });

  it('hashes very long identities so keys stay bounded', async () => {
    const { hit } = setup();
    const d = await hit({ principal: { ...user, tokenId: 'x'.repeat(5_000) } });
    expect(d.key.length).toBeLessThan(100);
  });
});
