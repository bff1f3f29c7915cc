import { createHash } from 'node:crypto';
import net from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { RateLimitConfig, RouteConfig } from '../config/schema.js';
import { renderError } from '../errors.js';
import type { CompiledRoute, Principal, RateLimitStore } from '../types.js';
import { createMemoryStore } from './memory-store.js';
import { canonicalInteger, createRateLimiter, recipientKey, type LimitInput } from './policy.js';
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
  const tokenHash = (s: string) => createHash('sha256').update(s).digest('base64url');
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

  it('keys a jti-less token by principal.tokenHash, needing no token, and agrees with hashing the token', async () => {
    const { hit } = setup();
    const hashed: Principal = { ...noJti, tokenHash: tokenHash('tok-A') };
    const d = await hit({ principal: hashed, token: undefined });
    expect(d.key).toBe(`tok:${sha('tok-A').slice(0, 16)}`);
    // A caller without tokenHash (token hashed on the spot) spends the same budget.
    await hits(2, () => hit({ principal: { ...noJti }, token: 'tok-A' }));
    expect((await hit({ principal: hashed, token: undefined })).error?.code).toBe('rate_limited');
  });

  it('gives any token the same key from its tokenHash as from hashing the token itself', () => {
    const { limiter } = setup();
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (token) => {
        const viaHash = limiter.check({ principal: { ...noJti, tokenHash: tokenHash(token) }, route: null, params: {}, consume: false });
        const viaToken = limiter.check({ principal: { ...noJti }, token, route: null, params: {}, consume: false });
        expect((viaHash as { key: string }).key).toBe((viaToken as { key: string }).key);
        expect((viaHash as { key: string }).key).toBe(`tok:${sha(token).slice(0, 16)}`);
      }),
    );
  });

  it('keeps nothing derived from a raw token: a principal without tokenHash needs its token every time', async () => {
    const { hit } = setup();
    const p: Principal = { ...noJti };
    expect((await hit({ principal: p, token: 'tok-A' })).key).toBe(`tok:${sha('tok-A').slice(0, 16)}`);
    // Had the limiter cached the token's key on the principal, this would answer from the cache.
    expect(() => hit({ principal: p, token: undefined })).toThrow(TypeError);
  });

  it('caches the key of a principal with tokenHash and never lets a token override it', async () => {
    const { hit } = setup();
    const p: Principal = { ...noJti, tokenHash: tokenHash('tok-A') };
    expect((await hit({ principal: p, token: 'tok-B' })).key).toBe(`tok:${sha('tok-A').slice(0, 16)}`);
    expect((await hit({ principal: p, token: 'tok-C' })).key).toBe(`tok:${sha('tok-A').slice(0, 16)}`);
  });

  it('never throws on a lone surrogate in a claim, and keeps it apart from U+FFFD', async () => {
    const { hit } = setup({ default: { limit: 1, window_s: 60 } });
    const a = await hit({ principal: { ...user, tokenId: 'x\ud800' } });
    const b = await hit({ principal: { ...user, tokenId: 'x\ufffd' } });
    expect(a.error).toBeUndefined();
    expect(b.error).toBeUndefined();
    expect(a.key).not.toBe(b.key);
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

  it.each([
    { name: 'leading zeros', spellings: ['42', '042', '0042'] },
    { name: 'a sign', spellings: ['42', '+42', '+042'] },
    { name: 'a zero fraction or exponent', spellings: ['42', '42.0', '42.', '4.2e1', '420e-1'] },
    { name: 'other digit scripts and radix literals', spellings: ['42', '４２', '٤٢', '0x2a', '0b101010', '4_2'] },
    { name: '-0 and 0', spellings: ['0', '-0', '+0', '00', '0.0'] },
  ])('keys a numeric recipient by its integer value: $name', async ({ spellings }) => {
    const { hit } = setup({ default: { limit: 100, window_s: 60 } });
    const route = { ...NOTIFY, config: { ...NOTIFY.config, flood_control: { limit: spellings.length - 1, window_s: 30, param: 'room' } } };
    for (const room of spellings.slice(0, -1)) expect((await hit({ route, params: { room } })).error).toBeUndefined();
    const last = await hit({ route, params: { room: spellings.at(-1)! } });
    expect(last.error?.code).toBe('flood_limited');
    // Another room is untouched.
    expect((await hit({ route, params: { room: '43' } })).error).toBeUndefined();
  });

  it('keeps -42, 42.5 and 42abc apart from 42', async () => {
    const { hit } = setup({ default: { limit: 100, window_s: 60 } });
    await hits(2, () => hit({ route: NOTIFY, params: { room: '42' } }));
    for (const room of ['-42', '42.5', '42abc', '4 2']) {
      expect((await hit({ route: NOTIFY, params: { room } })).error, room).toBeUndefined();
    }
  });

  it("gives a room-bound token one window for its room's id and its room's name", async () => {
    const { hit } = setup({ default: { limit: 100, window_s: 60 }, client_types: {} });
    const bound: Principal = { ...user, clientType: 'room', room: '42', roomName: 'ops' };
    await hit({ principal: bound, route: NOTIFY, params: { room: '42' } });
    await hit({ principal: bound, route: NOTIFY, params: { room: 'ops' } });
    expect((await hit({ principal: bound, route: NOTIFY, params: { room: '042' } })).error?.code).toBe('flood_limited');
    // Another token's room name is just a name: the gateway does not know which room it is.
    const other: Principal = { ...user, tokenId: 'jti-2' };
    await hit({ principal: other, route: NOTIFY, params: { room: '42' } });
    await hit({ principal: other, route: NOTIFY, params: { room: '42' } });
    expect((await hit({ principal: other, route: NOTIFY, params: { room: 'ops' } })).error).toBeUndefined();
  });

  it('never reads a digits-only value as the room name', async () => {
    const { hit } = setup({ default: { limit: 100, window_s: 60 }, client_types: {} });
    const bound: Principal = { ...user, clientType: 'room', room: '7', roomName: '42' };
    await hits(2, () => hit({ principal: bound, route: NOTIFY, params: { room: '7' } }));
    expect((await hit({ principal: bound, route: NOTIFY, params: { room: '42' } })).error).toBeUndefined();
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

describe('canonicalInteger', () => {
  it.each([
    ['42', '42'],
    ['042', '42'],
    ['+42', '42'],
    ['42.0', '42'],
    ['42.000', '42'],
    ['42.', '42'],
    [' 42\t', '42'],
    ['\u00a042\ufeff', '42'],
    ['4.2e1', '42'],
    ['4.2E+1', '42'],
    ['4200e-2', '42'],
    ['0.42e2', '42'],
    ['0x2A', '42'],
    ['0X_2a', '42'],
    ['0o52', '42'],
    ['0b101010', '42'],
    ['-0x2a', '-42'],
    ['4_2', '42'],
    ['４２', '42'],
    ['٤٢', '42'],
    ['𝟒𝟐', '42'],
    ['-0', '0'],
    ['-0.0e5', '0'],
    ['0e999999999', '0'],
    ['-42', '-42'],
    ['9007199254740993', '9007199254740993'],
    ['0009007199254740993.000', '9007199254740993'],
    ['1e30', '1000000000000000000000000000000'],
  ])('%j is %s', (input, out) => {
    expect(canonicalInteger(input)).toBe(out);
  });

  it.each([
    '', ' ', '+', '-', '.', 'e5', '42abc', '4 2', '42.5', '4.25e1', '1e-1', '_42', '42_', '4__2', '--42', '+-42',
    'Infinity', 'NaN', '0x', '0xg', '0b2', '0o8', '1e1025', '1e9999999999', '42e', '42e+', '4.2.0', '42ee1', 'ops', '42\u0000',
  ])('%j is not numeric', (input) => {
    expect(canonicalInteger(input)).toBeNull();
  });

  const canonical = /^(0|-?[1-9][0-9]*)$/;

  it('never throws, and answers either null or a canonical decimal that maps to itself', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.stringMatching(/^[-+ ]?[0-9_.eExXob]{0,12}$/)), (s) => {
        const n = canonicalInteger(s);
        if (n === null) return;
        expect(n).toMatch(canonical);
        expect(canonicalInteger(n)).toBe(n);
      }),
      { numRuns: 2_000 },
    );
  });

  it('agrees with BigInt on plain decimal integers of any size', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[-+]?[0-9]{1,60}$/), (s) => {
        expect(canonicalInteger(s)).toBe(BigInt(s).toString());
      }),
    );
  });

  it('maps every spelling of an integer to that integer, and distinct integers apart', () => {
    const spell = (n: bigint, zeros: number, plus: boolean, frac: number, pad: string) => {
      const abs = (n < 0n ? -n : n).toString();
      const sign = n < 0n ? '-' : plus ? '+' : '';
      return `${pad}${sign}${'0'.repeat(zeros)}${abs}${frac > 0 ? `.${'0'.repeat(frac - 1)}` : ''}${pad}`;
    };
    fc.assert(
      fc.property(
        fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }),
        fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }),
        fc.nat(5),
        fc.boolean(),
        fc.nat(4),
        fc.constantFrom('', ' ', '\t'),
        (a, b, zeros, plus, frac, pad) => {
          expect(canonicalInteger(spell(a, zeros, plus, frac, pad))).toBe(a.toString());
          expect(canonicalInteger(`0x${(a < 0n ? -a : a).toString(16)}`)).toBe((a < 0n ? -a : a).toString());
          if (a !== b) expect(canonicalInteger(spell(a, zeros, plus, frac, pad))).not.toBe(canonicalInteger(b.toString()));
        },
      ),
    );
  });

  it('reads a scientific spelling as the integer it denotes, or not at all', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: 10n ** 20n }), fc.integer({ min: -25, max: 25 }), (m, e) => {
        const value = e >= 0 ? m * 10n ** BigInt(e) : m % 10n ** BigInt(-e) === 0n ? m / 10n ** BigInt(-e) : null;
        expect(canonicalInteger(`${m}e${e}`)).toBe(value === null ? null : value.toString());
      }),
    );
  });
});

describe('recipientKey', () => {
  const bound = { room: '42', roomName: 'ops' };

  it('never throws and never maps a value to the bound room unless it is the room (by number) or its name', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.constantFrom('ops', 'OPS', 'ops ', '42', '042', '+42', '43', '4.2e1')), (v) => {
        const k = recipientKey(v, bound);
        const isRoom = v === 'ops' || canonicalInteger(v) === '42';
        expect(k === 'n:42').toBe(isRoom);
      }),
      { numRuns: 2_000 },
    );
  });

  it('maps nothing to a room for a token without room claims, and keeps numeric and text keys apart', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (v, w) => {
        const kv = recipientKey(v, {});
        const kw = recipientKey(w, {});
        expect(kv.startsWith('n:') || kv === `s:${v}`).toBe(true);
        // Two values share a key only when they are one integer or the same text.
        if (kv === kw) expect(v === w || (canonicalInteger(v) !== null && canonicalInteger(v) === canonicalInteger(w))).toBe(true);
      }),
    );
  });

  it('keys a bound token whose room id is not numeric by that id', () => {
    expect(recipientKey('ops', { room: 'r-1', roomName: 'ops' })).toBe('s:r-1');
    expect(recipientKey('r-1', { room: 'r-1', roomName: 'ops' })).toBe('s:r-1');
    expect(recipientKey('123', { room: '9', roomName: '123' })).toBe('n:123');
  });
});
