/**
 * Property tests for the one raw-query reader: arbitrary queries never throw anything but the
 * documented GatewayError, and no query can smuggle a look-alike of the token parameter or of
 * auth_test past the gateway — into a token, into a probe, or upstream.
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { authTestMode, formDecode, isLookAlike, looseDecode, parseQuery, redactParams, stripParams, tokenParamValues } from './raw-query.js';
import { extractToken, type ExtractOptions } from '../auth/extract-token.js';
import { GatewayError } from '../errors.js';

const P = 'auth_token';
const NAMES = [P, 'auth_test'];
const opts: ExtractOptions = { sources: ['header', 'query'], queryParam: P, maxTokenBytes: 8192 };
const RUNS = { numRuns: 2000 };

/** Characters that matter to query parsers, so random text often hits the interesting cases. */
const interesting = fc.constantFrom(
  ...'authokenAUTHOKEs_=&;%5Ff0B2Ee.+[] \u0000x1é'.split(''),
  '%5F', '%5f', '%255F', '%2E', '%00', '%20', '%5B%5D', '%3D', '%26', '%3B', '%u005F', 'auth_token', 'auth_test', 'true', 'TRUE', 'AUTH',
);
const fragment = fc.array(interesting, { maxLength: 24 }).map((a) => a.join(''));
/** A raw query: either made of the interesting pieces, or any string at all. */
const rawQuery = fc.oneof(fragment, fc.string({ maxLength: 60 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.array(fragment, { maxLength: 6 }).map((a) => a.join('&')));

/** A spelling of `name` that some parser folds into it, and that is not `name` itself. */
function lookAlikeOf(name: string): fc.Arbitrary<string> {
  const letter = (c: string) =>
    /[a-z]/.test(c) ? fc.constantFrom(c, c.toUpperCase(), `%${c.charCodeAt(0).toString(16)}`, `%25${c.charCodeAt(0).toString(16)}`) : fc.constant(c);
  const underscore = fc.constantFrom('_', '.', '+', '%20', '[', '%2E', '%2B', '%5B', '%255F', '%u005F', '%2520');
  const chars = name.split('').map((c) => (c === '_' ? underscore : letter(c)));
  const suffix = fc.constantFrom('', '', '[]', '%5B%5D', '[0]', '[x]', '%00', '%00junk', '%2500', '%3Dx', '%20');
  const prefix = fc.constantFrom('', '', 'x;', ';', '%20', 'a%26', 'a%3B');
  return fc
    .tuple(prefix, fc.tuple(...chars), suffix)
    .map(([p, cs, s]) => `${p}${cs.join('')}${s}`)
    .filter((n) => formDecode(n) !== name);
}

function codeOf(run: () => unknown): string | 'returned' {
  try {
    run();
    return 'returned';
  } catch (e) {
    if (e instanceof GatewayError) return e.code;
    throw e;
  }
}

describe('raw-query properties', () => {
  it('never throws on arbitrary input (auth_test only with bad_request)', () => {
    fc.assert(
      fc.property(rawQuery, (q) => {
        parseQuery(q);
        looseDecode(q);
        tokenParamValues(q, P);
        stripParams(q, NAMES);
        redactParams(q, NAMES, '[R]');
        for (const pair of parseQuery(q)) isLookAlike(pair.rawName, P);
        expect(['returned', 'bad_request']).toContain(codeOf(() => authTestMode(q)));
        codeOf(() => extractToken(['Bearer abc.def.ghi'], q, opts));
      }),
      RUNS,
    );
  });

  it('leaves no token parameter, auth_test or look-alike of either after stripParams', () => {
    fc.assert(
      fc.property(rawQuery, (q) => {
        const out = stripParams(q, NAMES);
        expect(tokenParamValues(out, P)).toEqual({ values: [], lookAlikeAt: 0 });
        expect(authTestMode(out)).toBe('normal');
        for (const pair of parseQuery(out)) {
          expect(pair.name).not.toBe(P);
          expect(pair.name).not.toBe('auth_test');
          expect(isLookAlike(pair.rawName, P)).toBe(false);
          expect(isLookAlike(pair.rawName, 'auth_test')).toBe(false);
        }
        // Idempotent: what is forwarded has nothing left to strip.
        expect(stripParams(out, NAMES)).toBe(out);
      }),
      RUNS,
    );
  });

  it('keeps every other piece byte for byte and in order', () => {
    const noSemicolon = rawQuery.map((q) => q.replace(/;/g, ''));
    fc.assert(
      fc.property(noSemicolon, (q) => {
        const out = stripParams(q, NAMES);
        const kept = out === '' ? [] : out.split('&');
        const pieces = q.split('&');
        let i = 0;
        for (const k of kept) {
          while (i < pieces.length && pieces[i] !== k) i++;
          expect(i).toBeLessThan(pieces.length);
          i++;
        }
      }),
      RUNS,
    );
  });

  it('refuses any query holding a look-alike of the token parameter with token_conflict', () => {
    fc.assert(
      fc.property(
        fc.array(fragment, { maxLength: 3 }),
        lookAlikeOf(P),
        fc.oneof(fc.constant(''), fragment, fc.constant('eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.')),
        fc.array(fragment, { maxLength: 3 }),
        fc.constantFrom<(string[] | undefined)[]>(undefined, ['Bearer header.token.value'], ['Basic dXNlcjpwYXNz']),
        fc.constantFrom('&', ';'),
        (before, name, value, after, auth, sep) => {
          const q = [...before, `${name}=${value}`].join('&') + (after.length ? sep + after.join('&') : '');
          expect(codeOf(() => extractToken(auth, q, opts))).toBe('token_conflict');
        },
      ),
      RUNS,
    );
  });

  it('never takes a token from anything but the exact parameter', () => {
    fc.assert(
      fc.property(rawQuery, (q) => {
        let got: ReturnType<typeof extractToken> | undefined;
        try {
          got = extractToken(undefined, q, opts);
        } catch (e) {
          expect(e).toBeInstanceOf(GatewayError);
          return;
        }
        expect(got.source).toBe('query');
        const exact = parseQuery(q).filter((p) => p.name === P);
        expect(exact).toHaveLength(1);
        expect(exact[0]!.value).toBe(got.token);
        for (const pair of parseQuery(q)) expect(isLookAlike(pair.rawName, P)).toBe(false);
      }),
      RUNS,
    );
  });

  it("answers 'probe' only for exactly one auth_test=<true in any case> and nothing like it", () => {
    const probeish = fc
      .tuple(fc.array(fragment, { maxLength: 3 }), fc.constantFrom('true', 'TRUE', 'True', 'tRuE', 'true ', '1', ''), fc.array(fragment, { maxLength: 3 }))
      .map(([a, v, b]) => [...a, `auth_test=${v}`, ...b].join('&'));
    fc.assert(
      fc.property(fc.oneof(rawQuery, probeish), (q) => {
        if (codeOf(() => authTestMode(q)) !== 'returned' || authTestMode(q) !== 'probe') return;
        const named = parseQuery(q).filter((p) => p.name === 'auth_test');
        expect(named).toHaveLength(1);
        expect(named[0]!.value?.toLowerCase()).toBe('true');
        for (const pair of parseQuery(q)) expect(isLookAlike(pair.rawName, 'auth_test')).toBe(false);
        // Nor hidden in a `;` segment of another value, as `;`-splitting servers read it.
        for (const piece of q.split('&')) {
          for (const seg of piece.split(';').slice(1)) {
            const segName = seg.split('=')[0]!;
            expect(formDecode(segName) === 'auth_test' || isLookAlike(segName, 'auth_test')).toBe(false);
          }
        }
      }),
      RUNS,
    );
  });

  it('refuses any look-alike of auth_test as a bad request', () => {
    fc.assert(
      fc.property(lookAlikeOf('auth_test'), fc.constantFrom('true', 'TRUE', 'false', ''), fc.array(fragment, { maxLength: 3 }), (name, v, rest) => {
        expect(codeOf(() => authTestMode([...rest, `${name}=${v}`].join('&')))).toBe('bad_request');
      }),
      RUNS,
    );
  });

  it('redacts every value of the token parameter and of its look-alikes', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fragment, lookAlikeOf(P).map((n) => `${n}=SECRETVALUE`), fc.constant('auth_token=SECRETVALUE')), { maxLength: 5 }), (pieces) => {
        const out = redactParams(pieces.join('&'), [P], '[R]');
        expect(out).not.toContain('SECRETVALUE');
      }),
      RUNS,
    );
  });
});
