import { describe, it, expect } from 'vitest';
import { createTokenCache } from './token-cache.js';
import { testClock } from '../../test/helpers/tokens.js';
import type { Principal } from '../types.js';

const T0 = Date.UTC(2030, 0, 1);
const principal = (exp?: number): Principal => ({ issuerName: 'local', clientType: 'user', scopes: ['a'], exp });

describe('createTokenCache', () => {
  it('returns what was stored for the same token and nothing for another', () => {
    const cache = createTokenCache({ maxEntries: 10, clock: testClock(T0) });
    const p = principal(T0 / 1000 + 60);
    cache.set('tok-a', p);
    expect(cache.get('tok-a')).toBe(p);
    expect(cache.get('tok-b')).toBeUndefined();
    expect(cache.size).toBe(1);
  });

  it('never serves an entry at or after the token exp', () => {
    const clock = testClock(T0);
    const cache = createTokenCache({ maxEntries: 10, clock });
    cache.set('tok', principal(T0 / 1000 + 60));
    clock.advance(59_999);
    expect(cache.get('tok')).toBeDefined();
    clock.advance(1);
    expect(cache.get('tok')).toBeUndefined();
  });

  it('honours an earlier explicit bound than exp', () => {
    const clock = testClock(T0);
    const cache = createTokenCache({ maxEntries: 10, clock });
    cache.set('tok', principal(T0 / 1000 + 3600), T0 + 10_000);
    clock.advance(9_999);
    expect(cache.get('tok')).toBeDefined();
    clock.advance(1);
    expect(cache.get('tok')).toBeUndefined();
  });

  it('does not store a token that is already expired', () => {
    const cache = createTokenCache({ maxEntries: 10, clock: testClock(T0) });
    cache.set('tok', principal(T0 / 1000));
    expect(cache.size).toBe(0);
    expect(cache.get('tok')).toBeUndefined();
  });

  it('keeps a token without exp until it is evicted', () => {
    const clock = testClock(T0);
    const cache = createTokenCache({ maxEntries: 10, clock });
    cache.set('tok', principal());
    clock.advance(365 * 86_400_000);
    expect(cache.get('tok')).toBeDefined();
  });

  it('evicts the least recently used entry beyond maxEntries', () => {
    const cache = createTokenCache({ maxEntries: 2, clock: testClock(T0) });
    cache.set('a', principal());
    cache.set('b', principal());
    cache.get('a');
    cache.set('c', principal());
    expect(cache.size).toBe(2);
    expect(cache.get('a')).toBeDefined();
    expect(cache.get('b')).toBeUndefined();
    expect(cache.get('c')).toBeDefined();
  });

  it('is disabled by maxEntries 0', () => {
    const cache = createTokenCache({ maxEntries: 0, clock: testClock(T0) });
    cache.set('tok', principal());
    expect(cache.enabled).toBe(false);
    expect(cache.get('tok')).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('rejects a negative or fractional maxEntries', () => {
    expect(() => createTokenCache({ maxEntries: -1, clock: Date.now })).toThrow(TypeError);
    expect(() => createTokenCache({ maxEntries: 1.5, clock: Date.now })).toThrow(TypeError);
  });
});
