/**
 * The verified-token cache under memory pressure (SPEC §3, issue 10 rule 12): many distinct
 * 8 KB tokens must keep the cache within `tokens.cache.max_bytes`, whatever `max_entries` allows,
 * and an entry must not cost the token's size (no raw token kept). Driven through the real
 * verifier (its `cacheStats()` reads lru-cache's calculatedSize) and through the real gateway in
 * front of a real upstream (eviction seen in /metrics).
 *
 * @example
 *   npx vitest run test/hostile/token-cache.test.ts
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTokenVerifier } from '../../src/auth/verify-token.js';
import { baseConfig, startTestGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway.js';
import { hsToken, testClock, tokensConfig } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { rawRequest } from '../helpers/http.js';

const T0 = Date.UTC(2030, 0, 1);
const NOW = T0 / 1000;

/** The gateway's test issuer (TEST_SECRET) as a parsed `tokens` section, with a cache section of our choosing. */
function tokens(cache: Record<string, number>) {
  return tokensConfig({ cache, issuers: [{ name: 'local', issuer: 'scopegate-test', audience: 'api', algorithms: ['HS256'], secrets: [TEST_SECRET] }] });
}

/**
 * A token of about 8 KB (under the default max_token_bytes 8192). `where: 'scopes'` puts the bulk
 * in the scope list, which the principal keeps; `'pad'` in a claim nobody maps, which it drops.
 */
function bigToken(i: number, where: 'scopes' | 'pad', iat: number): Promise<string> {
  const base = { iss: 'scopegate-test', aud: 'api', sub: `user-${i}`, client_type: 'user', iat, exp: iat + 3600 };
  const bulk = 5600;
  if (where === 'pad') return hsToken(TEST_SECRET, { ...base, scope: 'view_group', pad: 'p'.repeat(bulk) });
  const scopes = Array.from({ length: Math.floor(bulk / 20) }, (_, j) => `scope_${i}_${String(j).padStart(10, '0')}`);
  return hsToken(TEST_SECRET, { ...base, scope: ['view_group', ...scopes].join(' ') });
}

describe('the cache stays within max_bytes under 8 KB tokens (verifier)', () => {
  it('keeps the estimated bytes at or under max_bytes while max_entries would allow every token', async () => {
    const maxBytes = 256 * 1024;
    const v = await createTokenVerifier(tokens({ max_entries: 100_000, max_bytes: maxBytes }), { clock: testClock(T0) });
    const minted: string[] = [];
    for (let i = 0; i < 200; i++) {
      const t = await bigToken(i, 'scopes', NOW);
      expect(t.length).toBeGreaterThan(7000);
      expect(t.length).toBeLessThanOrEqual(8192);
      minted.push(t);
      const p = await v.verify(t);
      expect(p.scopes.length).toBeGreaterThan(200);
      expect(v.cacheStats().bytes).toBeLessThanOrEqual(maxBytes);
    }
    const { entries, bytes } = v.cacheStats();
    expect(entries).toBeLessThan(200);
    expect(entries).toBeGreaterThan(0);
    expect(bytes).toBeGreaterThan(maxBytes / 2);
    // The most recent tokens are served from the cache, the oldest were evicted.
    expect(v.cached(minted.at(-1)!)).toBeDefined();
    expect(v.cached(minted[0]!)).toBeUndefined();
  });

  it('does not charge an entry for the token: 8 KB tokens whose bulk is an unmapped claim cost about 1 KB each', async () => {
    const v = await createTokenVerifier(tokens({ max_entries: 100_000, max_bytes: 64 * 1024 * 1024 }), { clock: testClock(T0) });
    for (let i = 0; i < 100; i++) {
      const t = await bigToken(i, 'pad', NOW);
      expect(t.length).toBeGreaterThan(7000);
      const p = await v.verify(t);
      expect(JSON.stringify(p)).not.toContain('ppppppp');
    }
    const { entries, bytes } = v.cacheStats();
    expect(entries).toBe(100);
    expect(bytes / entries).toBeLessThan(1500);
  });

  it('a small max_entries still bounds the count when max_bytes is large', async () => {
    const v = await createTokenVerifier(tokens({ max_entries: 10, max_bytes: 64 * 1024 * 1024 }), { clock: testClock(T0) });
    for (let i = 0; i < 30; i++) await v.verify(await bigToken(i, 'pad', NOW));
    expect(v.cacheStats().entries).toBe(10);
  });
});

describe('the cache stays within max_bytes under 8 KB tokens (gateway)', () => {
  let up: Upstream;
  let gw: TestGateway;
  beforeAll(async () => {
    up = await startUpstream();
    gw = await startTestGateway(baseConfig({ upstream: up.url, tokens: '  cache: { max_entries: 100000, max_bytes: 131072 }' }));
  });
  afterAll(async () => {
    await gw?.close();
    await up?.close();
  });

  async function cacheCounts(): Promise<Record<string, number>> {
    const text = await (await fetch(`${gw.adminUrl!}/metrics`)).text();
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^scopegate_token_cache_total\{[^}]*result="(\w+)"[^}]*\} (\d+)/gm)) out[m[1]!] = Number(m[2]);
    return out;
  }

  it('forwards every 8 KB token, and evicts the oldest once max_bytes is reached', async () => {
    const iat = Math.floor(Date.now() / 1000);
    const minted: string[] = [];
    for (let i = 0; i < 120; i++) {
      const t = await bigToken(i, 'scopes', iat);
      minted.push(t);
      const res = await rawRequest(gw.url, 'GET', '/v2/room', { authorization: `Bearer ${t}` });
      expect(res.status).toBe(200);
    }
    expect(up.requests).toHaveLength(120);
    const before = await cacheCounts();
    expect(before.miss).toBe(120);
    // The newest token is still cached (a hit); the first was evicted by the byte bound (a miss).
    expect((await rawRequest(gw.url, 'GET', '/v2/room', { authorization: `Bearer ${minted.at(-1)!}` })).status).toBe(200);
    expect((await rawRequest(gw.url, 'GET', '/v2/room', { authorization: `Bearer ${minted[0]!}` })).status).toBe(200);
    const after = await cacheCounts();
    expect((after.hit ?? 0) - (before.hit ?? 0)).toBe(1);
    expect(after.miss! - before.miss!).toBe(1);
  });
});
