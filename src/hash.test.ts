/**
 * sha256: on Node it is node:crypto's (obtained without an import); the plain-JS fallback other
 * runtimes use gives the same digests — FIPS 180-4 vectors, every padding boundary, and random
 * strings (lone surrogates included) compared against node:crypto.
 */
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sha256, sha256js } from './hash.js';

const node = (s: string, enc: 'hex' | 'base64url') => createHash('sha256').update(s).digest(enc);

describe('sha256', () => {
  it('is node:crypto on Node', () => {
    expect(sha256('abc', 'hex')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(sha256('abc', 'base64url')).toBe(node('abc', 'base64url'));
  });
});

describe('sha256js (the fallback without node:crypto)', () => {
  it('gives the FIPS 180-4 test vectors', () => {
    expect(sha256js('abc', 'hex')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(sha256js('', 'hex')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(sha256js('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq', 'hex')).toBe('248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1');
    expect(sha256js('a'.repeat(1_000_000), 'hex')).toBe('cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0');
  });

  it('agrees with node:crypto at every length around the 64-byte block and its 9 bytes of padding', () => {
    for (let n = 0; n <= 200; n++) {
      const s = 'x'.repeat(n);
      expect(sha256js(s, 'hex'), `length ${n}`).toBe(node(s, 'hex'));
      expect(sha256js(s, 'base64url'), `length ${n}`).toBe(node(s, 'base64url'));
    }
  });

  it('agrees with node:crypto on any string, UTF-8 of every width and lone surrogates included', () => {
    const anyString = fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.string({ unit: 'grapheme', maxLength: 100 }),
      fc.string({ unit: 'binary', maxLength: 100 }),
      fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 100 }),
    );
    fc.assert(
      fc.property(anyString, fc.constantFrom('hex' as const, 'base64url' as const), (s, enc) => {
        expect(sha256js(s, enc)).toBe(node(s, enc));
      }),
      { numRuns: 2_000 },
    );
  });

  it('gives a 43-character base64url digest without padding, as token-cache keys need', () => {
    expect(sha256js('token', 'base64url')).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });
});
