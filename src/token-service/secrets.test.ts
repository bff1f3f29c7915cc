import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeHash, hashSecret, needsRehash, newId, newSecret, SCRYPT_PARAMS, verifySecret } from './secrets.js';

// Cheap parameters for the property runs; the default-cost path is exercised by the unit tests.
const FAST = { N: 16, r: 1, p: 1 };

describe('newSecret / newId', () => {
  it('makes 32-byte base64url secrets, all different', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const s = newSecret();
      expect(s).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(s, 'base64url')).toHaveLength(32);
      seen.add(s);
    }
    expect(seen.size).toBe(200);
  });

  it('makes 128-bit URL-safe ids with an optional prefix', () => {
    expect(newId()).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(newId('cl')).toMatch(/^cl_[A-Za-z0-9_-]{22}$/);
    expect(new Set(Array.from({ length: 200 }, () => newId())).size).toBe(200);
    expect(() => newId('a/b')).toThrow(TypeError);
  });
});

describe('hashSecret / verifySecret', () => {
  it('stores scrypt with the default parameters and a fresh salt', async () => {
    const a = await hashSecret('correct horse');
    const b = await hashSecret('correct horse');
    expect(a).toMatch(/^scrypt\$32768\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    expect(a).not.toBe(b);
    expect(a).not.toContain('correct horse');
    expect(await verifySecret('correct horse', a)).toBe(true);
    expect(await verifySecret('correct horse', b)).toBe(true);
    expect(await verifySecret('correct horsf', a)).toBe(false);
    expect(await verifySecret('', a)).toBe(false);
    expect(needsRehash(a)).toBe(false);
  });

  it('verifies hashes made with other parameters (they are in the encoding) and flags weaker ones for re-hashing', async () => {
    const h = await hashSecret('s3', FAST);
    expect(h.startsWith('scrypt$16$1$1$')).toBe(true);
    expect(await verifySecret('s3', h)).toBe(true);
    expect(needsRehash(h)).toBe(true);
    expect(SCRYPT_PARAMS.N).toBeGreaterThanOrEqual(2 ** 15);
  });

  it.each([
    ['empty', ''],
    ['another scheme', 'bcrypt$2b$10$abc'],
    ['too few fields', 'scrypt$16$1$1$c2FsdHNhbHQ'],
    ['N not a power of two', 'scrypt$17$1$1$c2FsdHNhbHRzYWx0$' + 'A'.repeat(43)],
    ['N absurdly large', `scrypt$${2 ** 30}$8$1$c2FsdHNhbHRzYWx0$${'A'.repeat(43)}`],
    ['r zero', 'scrypt$16$0$1$c2FsdHNhbHRzYWx0$' + 'A'.repeat(43)],
    ['leading zero', 'scrypt$016$1$1$c2FsdHNhbHRzYWx0$' + 'A'.repeat(43)],
    ['non-canonical base64url', 'scrypt$16$1$1$c2FsdHNhbHRzYWx0$' + 'A'.repeat(42) + 'B'],
    ['padding', 'scrypt$16$1$1$c2FsdHNhbHRzYWx0$' + 'A'.repeat(43) + '='],
    ['hash too short', 'scrypt$16$1$1$c2FsdHNhbHRzYWx0$AAAA'],
  ])('refuses a malformed encoding (%s) with false, never a throw', async (_name, enc) => {
    expect(decodeHash(enc)).toBeUndefined();
    await expect(verifySecret('anything', enc)).resolves.toBe(false);
  });

  it('property: arbitrary encodings never throw and never verify', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string(), fc.string({ maxLength: 80 }), async (secret, enc) => {
        expect(() => decodeHash(enc)).not.toThrow();
        expect(await verifySecret(secret, enc)).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it('property: structured near-valid encodings never throw, and only the right secret verifies', async () => {
    const real = await hashSecret('the-secret', FAST);
    const [, , , , salt, hash] = real.split('$');
    const field = fc.oneof(fc.constantFrom('16', '1', '0', '-1', '1e3', '65536', '2147483648', ''), fc.string({ maxLength: 6 }));
    await fc.assert(
      fc.asyncProperty(
        fc.string({ maxLength: 20 }),
        fc.record({ N: field, r: field, p: field, salt: fc.oneof(fc.constant(salt!), fc.base64String({ maxLength: 30 })), hash: fc.oneof(fc.constant(hash!), fc.string({ maxLength: 50 })) }),
        async (secret, f) => {
          const enc = `scrypt$${f.N}$${f.r}$${f.p}$${f.salt}$${f.hash}`;
          const ok = await verifySecret(secret, enc);
          if (ok) {
            expect(secret).toBe('the-secret');
          }
        },
      ),
      { numRuns: 200 },
    );
    expect(await verifySecret('the-secret', real)).toBe(true);
  });

  it('property: a flipped character in the stored hash never verifies', async () => {
    const real = await hashSecret('pw', FAST);
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: real.length - 1 }), fc.constantFrom(...'ABCabc012_-$'.split('')), async (i, ch) => {
        fc.pre(real[i] !== ch);
        const tampered = real.slice(0, i) + ch + real.slice(i + 1);
        // The tampered row either fails to decode, or is a different salt/hash/cost: never "pw".
        expect(await verifySecret('pw', tampered)).toBe(false);
      }),
      { numRuns: 150 },
    );
  });
});
