/**
 * Properties of the verifier's input handling: the canonical-base64url check agrees with Node's
 * own decoder round trip, the shape check never throws, and no re-spelling or mutation of a valid
 * token verifies or reaches the cache — only the exact string that was signed does.
 */
import { afterAll, beforeAll, describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { checkTokenShape, createTokenVerifier, isCanonicalBase64url, type TokenVerifier } from './verify-token.js';
import { GatewayError } from '../errors.js';
import { generateKeys, hsToken, randomSecret, signToken, tempDir, testClock, tokensConfig, type TempDir, type TestKeyPair } from '../../test/helpers/tokens.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const b64urlChar = fc.constantFrom(...ALPHABET);
const b64urlString = fc.string({ unit: b64urlChar, maxLength: 64 });

const T0 = Date.UTC(2030, 0, 1);
const NOW = T0 / 1000;
const secret = randomSecret();
let rsa: TestKeyPair;
let v: TokenVerifier;
let dir: TempDir;

beforeAll(async () => {
  rsa = await generateKeys('RS256', { kid: 'r' });
  dir = await tempDir();
  await dir.write('rsa.jwks.json', JSON.stringify({ keys: [rsa.publicJwk] }));
  v = await createTokenVerifier(
    tokensConfig({
      issuers: [
        { name: 'local', issuer: 'local', algorithms: ['HS256'], secrets: [secret] },
        { name: 'idp', issuer: 'idp', algorithms: ['RS256'], jwks_file: 'rsa.jwks.json' },
      ],
    }),
    { clock: testClock(T0), baseDir: dir.path },
  );
});
afterAll(() => dir.cleanup());

describe('isCanonicalBase64url', () => {
  it('agrees with a decode/encode round trip through Buffer on every base64url string', () => {
    fc.assert(
      fc.property(b64urlString, (s) => {
        expect(isCanonicalBase64url(s)).toBe(Buffer.from(s, 'base64url').toString('base64url') === s);
      }),
      { numRuns: 5000 },
    );
  });

  it('is true for the encoding of any byte string', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        expect(isCanonicalBase64url(Buffer.from(bytes).toString('base64url'))).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws, and refuses anything outside the alphabet (padding, +, /, spaces, unicode)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
        const r = isCanonicalBase64url(s);
        if ([...s].some((c) => !ALPHABET.includes(c))) expect(r).toBe(false);
      }),
      { numRuns: 3000 },
    );
    for (const s of ['YQ==', 'a+b/', 'YQ ', 'ÿÿ']) expect(isCanonicalBase64url(s)).toBe(false);
  });
});

describe('checkTokenShape', () => {
  it('never throws; it passes only three canonical base64url parts within the size bound', () => {
    const tokenish = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 80 }),
      fc.tuple(b64urlString, b64urlString, b64urlString).map((p) => p.join('.')),
      fc.array(b64urlString, { maxLength: 5 }).map((p) => p.join('.')),
    );
    fc.assert(
      fc.property(tokenish, (t) => {
        const r = checkTokenShape(t, 8192);
        if (r === null) {
          const parts = t.split('.');
          expect(parts).toHaveLength(3);
          expect(parts[0]!.length > 0 && parts[1]!.length > 0).toBe(true);
          for (const p of parts) expect(Buffer.from(p, 'base64url').toString('base64url')).toBe(p);
        } else {
          expect(r).toBeInstanceOf(GatewayError);
          expect(r.code).toBe('token_malformed');
          if (t.length > 12) expect(r.message).not.toContain(t);
        }
      }),
      { numRuns: 5000 },
    );
  });

  it('says what the Buffer-counting check said, on any string and any size bound (UTF-8 of every width near the bound)', () => {
    // The check as it was, with Node's Buffer: the size first, in UTF-8 bytes, then the shape
    // (asked of checkTokenShape with no size bound, so the size logic under test plays no part).
    const before = (t: string, max: number): string | null => {
      if (t.length > max || Buffer.byteLength(t, 'utf8') > max) return `token_malformed: token is longer than ${max} bytes`;
      return checkTokenShape(t, Number.MAX_SAFE_INTEGER)?.message ?? null;
    };
    const wide = fc.constantFrom('a', '.', 'é', '€', '😀', '\ud800', '\udc00', ' ');
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ unit: wide, maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.tuple(b64urlString, b64urlString, b64urlString).map((p) => p.join('.'))),
        fc.nat({ max: 100 }),
        (t, max) => {
          expect(checkTokenShape(t, max)?.message ?? null).toBe(before(t, max));
        },
      ),
      { numRuns: 5000 },
    );
    expect(checkTokenShape('é'.repeat(5), 9)?.message).toContain('longer than 9 bytes');
    expect(checkTokenShape('é'.repeat(5), 10)?.message).toContain('not a compact JWS');
  });
});

/** `token` with the character at `i` replaced by `c`. */
const replaceAt = (token: string, i: number, c: string) => token.slice(0, i) + c + token.slice(i + 1);

describe('no spelling but the signed one verifies', () => {
  it('any change to one character of a valid HS256 token is refused, and never answers from the cache', async () => {
    const token = await hsToken(secret, { iss: 'local', sub: 'u1', exp: NOW + 3600, scope: 'view_group' });
    const good = await v.verify(token);
    expect(v.cached(token)).toBe(good);
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: token.length - 1 }), b64urlChar, async (i, c) => {
        fc.pre(token[i] !== '.' && token[i] !== c);
        const other = replaceAt(token, i, c);
        expect(v.cached(other)).toBeUndefined();
        const err = await v.verify(other).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(GatewayError);
        expect((err as GatewayError).status).toBe(401);
        expect(v.cached(other)).toBeUndefined();
      }),
      { numRuns: 400 },
    );
  });

  it.each(['HS256', 'RS256'])('every re-spelling of the last signature character of a %s token is token_malformed', async (alg) => {
    const token =
      alg === 'HS256'
        ? await hsToken(secret, { iss: 'local', sub: 'u2', exp: NOW + 3600 })
        : await signToken(rsa, { iss: 'idp', sub: 'u2', exp: NOW + 3600 });
    await v.verify(token);
    const last = token.length - 1;
    await fc.assert(
      fc.asyncProperty(b64urlChar, async (c) => {
        fc.pre(c !== token[last]);
        const other = replaceAt(token, last, c);
        // Same decoded signature (only unused bits differ) or a different one: never accepted.
        const sameBytes = Buffer.from(other.split('.')[2]!, 'base64url').equals(Buffer.from(token.split('.')[2]!, 'base64url'));
        const err = (await v.verify(other).then(
          () => undefined,
          (e: unknown) => e,
        )) as GatewayError;
        expect(err).toBeInstanceOf(GatewayError);
        if (sameBytes) expect(err.code).toBe('token_malformed');
        else expect(['token_malformed', 'signature_invalid']).toContain(err.code);
      }),
      { numRuns: 64 },
    );
  });

  it('arbitrary strings never verify and only ever fail with a GatewayError', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.string({ unit: 'binary', maxLength: 120 }), fc.tuple(b64urlString, b64urlString, b64urlString).map((p) => p.join('.'))),
        async (t) => {
          const err = await v.verify(t).then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(err).toBeInstanceOf(GatewayError);
          expect(v.cached(t)).toBeUndefined();
        },
      ),
      { numRuns: 1000 },
    );
  });
});
