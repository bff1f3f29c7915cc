import { describe, it, expect } from 'vitest';
import { createTokenCache, estimateEntryBytes, ENTRY_OVERHEAD, stringBytes, tokenHash } from './token-cache.js';
import { testClock } from '../../test/helpers/tokens.js';
import type { Principal } from '../types.js';

const T0 = Date.UTC(2030, 0, 1);
const principal = (exp?: number): Principal => ({ issuerName: 'local', clientType: 'user', scopes: ['a'], exp });
const MB = 1024 * 1024;
/** The cache's key for a test token name. */
const k = (name: string) => tokenHash(name);

describe('createTokenCache', () => {
  it('returns what was stored for the same token and nothing for another', () => {
    const cache = createTokenCache({ maxEntries: 10, maxBytes: MB, clock: testClock(T0) });
    const p = principal(T0 / 1000 + 60);
    cache.set(k('tok-a'), p);
    expect(cache.get(k('tok-a'))).toBe(p);
    expect(cache.get(k('tok-b'))).toBeUndefined();
    expect(cache.size).toBe(1);
  });

  it('never serves an entry at or after the token exp', () => {
    const clock = testClock(T0);
    const cache = createTokenCache({ maxEntries: 10, maxBytes: MB, clock });
    cache.set(k('tok'), principal(T0 / 1000 + 60));
    clock.advance(59_999);
    expect(cache.get(k('tok'))).toBeDefined();
    clock.advance(1);
    expect(cache.get(k('tok'))).toBeUndefined();
  });

  it('honours an earlier explicit bound than exp', () => {
    const clock = testClock(T0);
    const cache = createTokenCache({ maxEntries: 10, maxBytes: MB, clock });
    cache.set(k('tok'), principal(T0 / 1000 + 3600), T0 + 10_000);
    clock.advance(9_999);
    expect(cache.get(k('tok'))).toBeDefined();
    clock.advance(1);
    expect(cache.get(k('tok'))).toBeUndefined();
  });

  it('does not store a token that is already expired', () => {
    const cache = createTokenCache({ maxEntries: 10, maxBytes: MB, clock: testClock(T0) });
    cache.set(k('tok'), principal(T0 / 1000));
    expect(cache.size).toBe(0);
    expect(cache.get(k('tok'))).toBeUndefined();
  });

  it('keeps a token without exp until it is evicted', () => {
    const clock = testClock(T0);
    const cache = createTokenCache({ maxEntries: 10, maxBytes: MB, clock });
    cache.set(k('tok'), principal());
    clock.advance(365 * 86_400_000);
    expect(cache.get(k('tok'))).toBeDefined();
  });

  it('evicts the least recently used entry beyond maxEntries', () => {
    const cache = createTokenCache({ maxEntries: 2, maxBytes: MB, clock: testClock(T0) });
    cache.set(k('a'), principal());
    cache.set(k('b'), principal());
    cache.get(k('a'));
    cache.set(k('c'), principal());
    expect(cache.size).toBe(2);
    expect(cache.get(k('a'))).toBeDefined();
    expect(cache.get(k('b'))).toBeUndefined();
    expect(cache.get(k('c'))).toBeDefined();
  });

  it('is disabled by maxEntries 0', () => {
    const cache = createTokenCache({ maxEntries: 0, maxBytes: MB, clock: testClock(T0) });
    cache.set(k('tok'), principal());
    expect(cache.enabled).toBe(false);
    expect(cache.get(k('tok'))).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('rejects a negative or fractional maxEntries', () => {
    expect(() => createTokenCache({ maxEntries: -1, maxBytes: MB, clock: Date.now })).toThrow(TypeError);
    expect(() => createTokenCache({ maxEntries: 1.5, maxBytes: MB, clock: Date.now })).toThrow(TypeError);
  });

  it.each([
    ['below 1024', 1023],
    ['fractional', 4096.5],
    ['negative', -1],
    ['NaN', Number.NaN],
    ['not a number', '64MiB' as unknown as number],
  ])('rejects a maxBytes that is %s', (_what, maxBytes) => {
    expect(() => createTokenCache({ maxEntries: 10, maxBytes, clock: Date.now })).toThrow(TypeError);
  });

  it.each([
    ['a raw token', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlLWJ5dGVzLWhlcmUtMDEyMzQ1Njc4OWFi'],
    ['a hex hash', 'a'.repeat(64)],
    ['a hash one character short', tokenHash('x').slice(1)],
    ['the empty string', ''],
  ])('refuses to store under %s: only a tokenHash is a key', (_what, key) => {
    const cache = createTokenCache({ maxEntries: 10, maxBytes: MB, clock: testClock(T0) });
    expect(() => cache.set(key, principal())).toThrow(TypeError);
    expect(cache.size).toBe(0);
  });

  it('keys by SHA-256 base64url: the same token always, another token never', () => {
    expect(tokenHash('abc')).toBe('ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0');
    expect(tokenHash('abc')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(tokenHash('abd')).not.toBe(tokenHash('abc'));
  });
});

describe('createTokenCache: the byte bound (tokens.cache.max_bytes)', () => {
  const big = (i: number): Principal => ({
    issuerName: 'local',
    clientType: 'user',
    subject: `user-${i}-${'s'.repeat(900)}`,
    scopes: Array.from({ length: 40 }, (_, j) => `scope_${j}_${'x'.repeat(100)}`),
    exp: T0 / 1000 + 3600,
  });

  it('evicts least recently used entries to stay within maxBytes, whatever maxEntries allows', () => {
    const cache = createTokenCache({ maxEntries: 100_000, maxBytes: 64 * 1024, clock: testClock(T0) });
    const one = estimateEntryBytes(k('t0'), big(0));
    for (let i = 0; i < 500; i++) {
      cache.set(k(`t${i}`), big(i));
      expect(cache.bytes).toBeLessThanOrEqual(64 * 1024);
    }
    expect(cache.size).toBe(Math.floor((64 * 1024) / one));
    expect(cache.get(k('t499'))).toBeDefined();
    expect(cache.get(k('t0'))).toBeUndefined();
  });

  it('counts every entry by its estimate and gives the bytes back on delete and clear', () => {
    const clock = testClock(T0);
    const cache = createTokenCache({ maxEntries: 10, maxBytes: MB, clock });
    const p = principal(T0 / 1000 + 10);
    cache.set(k('a'), p);
    cache.set(k('b'), big(1));
    expect(cache.bytes).toBe(estimateEntryBytes(k('a'), p) + estimateEntryBytes(k('b'), big(1)));
    clock.advance(10_000);
    expect(cache.get(k('a'))).toBeUndefined(); // expired: deleted
    expect(cache.bytes).toBe(estimateEntryBytes(k('b'), big(1)));
    cache.clear();
    expect(cache.bytes).toBe(0);
  });

  it('does not store one entry larger than the whole bound', () => {
    const cache = createTokenCache({ maxEntries: 10, maxBytes: 2048, clock: testClock(T0) });
    cache.set(k('small'), principal());
    cache.set(k('huge'), big(0));
    expect(cache.get(k('huge'))).toBeUndefined();
    expect(cache.get(k('small'))).toBeDefined();
  });

  it('reports 0 bytes when disabled', () => {
    expect(createTokenCache({ maxEntries: 0, maxBytes: MB, clock: Date.now }).bytes).toBe(0);
  });
});

describe('estimateEntryBytes', () => {
  it('is the measured overhead plus V8 string sizes: 1 byte per Latin-1 character, 2 otherwise', () => {
    expect(stringBytes('')).toBe(16);
    expect(stringBytes('a')).toBe(24);
    expect(stringBytes('a'.repeat(8))).toBe(24);
    expect(stringBytes('a'.repeat(9))).toBe(32);
    expect(stringBytes('é'.repeat(8))).toBe(24); // Latin-1: one byte each
    expect(stringBytes('€'.repeat(8))).toBe(32); // two bytes each
    const key = k('t');
    const bare: Principal = { issuerName: 'local', clientType: '', scopes: [] };
    expect(estimateEntryBytes(key, bare)).toBe(ENTRY_OVERHEAD + stringBytes(key) + stringBytes('local') + stringBytes(''));
  });

  it.each<[string, Partial<Principal>]>([
    ['a subject', { subject: 'x'.repeat(1000) }],
    ['a room name', { roomName: 'r'.repeat(500) }],
    ['a group', { group: 'g'.repeat(100) }],
    ['a token id', { tokenId: 'j'.repeat(100) }],
    ['an iss', { iss: 'i'.repeat(100) }],
    ['a room', { room: '1'.repeat(100) }],
    ['a scope', { scopes: ['s'.repeat(100)] }],
    ['non-ASCII (re-encoded for headers)', { subject: '€'.repeat(10) }],
  ])('grows with %s', (_what, extra) => {
    const key = k('t');
    const bare: Principal = { issuerName: 'local', clientType: 'user', scopes: [] };
    expect(estimateEntryBytes(key, { ...bare, ...extra })).toBeGreaterThan(estimateEntryBytes(key, bare) + 90);
  });
});
