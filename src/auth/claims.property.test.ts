/**
 * Properties of mapClaims over arbitrary payloads: it never throws anything but token_malformed,
 * and whatever it returns is exact — every identity field equals its claim (a string, or a safe
 * integer in decimal), is a clean string of at most 1024 UTF-8 bytes, and every scope appears in
 * the claim as written. The oracles below are written independently of claims.ts.
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import type { JWTPayload } from 'jose';
import { mapClaims } from './claims.js';
import { tokensConfig } from '../../test/helpers/tokens.js';
import { GatewayError } from '../errors.js';
import type { Principal } from '../types.js';

const claims = tokensConfig({ issuers: [{ name: 'x', algorithms: ['HS256'], secrets: ['s'.repeat(32)] }] }).issuers[0]!.claims;

const ID_CLAIMS: Array<[string, keyof Principal]> = [
  ['sub', 'subject'],
  ['room_id', 'room'],
  ['room_name', 'roomName'],
  ['group_id', 'group'],
  ['jti', 'tokenId'],
  ['iss', 'iss'],
];

/** Characters attackers reach for: controls, Unicode spaces and separators, surrogate halves. */
const nasty = fc.constantFrom(
  '\u0000', '\u0007', '\t', '\n', '\r', '\u000b', '\u001b', '\u007f', '\u0085', '\u009b', '\u00a0', '\u2028', '\u2029',
  '\u3000', '\u2003', '\ufeff', '\u200b', '\ud800', '\udc00', ' ', 'é', '€', '🚀', 'a', '0', '_',
);
const nastyString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.array(nasty, { maxLength: 12 }).map((a) => a.join('')),
  fc.tuple(fc.string({ maxLength: 8 }), nasty, fc.string({ maxLength: 8 })).map(([a, n, b]) => `${a}${n}${b}`),
  fc.integer({ min: 1000, max: 1100 }).map((n) => 'a'.repeat(n)),
  fc.integer({ min: 500, max: 520 }).map((n) => 'é'.repeat(n)),
);
const nastyNumber = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.constantFrom(0, -0, 1e3, 1e21, 2 ** 53, -(2 ** 53), Number.MAX_SAFE_INTEGER, 42.5, Number.NaN, Number.POSITIVE_INFINITY),
);
const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    nastyString,
    nastyNumber,
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('v'), { maxLength: 4 }),
    fc.dictionary(fc.string({ maxLength: 6 }), tie('v'), { maxKeys: 3 }),
  ),
})).v;
const scopeValue = fc.oneof(
  nastyString,
  fc.array(fc.oneof(nastyString, fc.constantFrom('view_group', 'admin_group', 'x admin_group')), { maxLength: 5 }),
  value,
);

/** A payload that may hold any of the mapped claims, with anything in them, plus other JSON. */
const payload = fc
  .record(
    {
      sub: value,
      room_id: value,
      room_name: value,
      group_id: value,
      jti: value,
      iss: value,
      client_type: value,
      scope: scopeValue,
    },
    { requiredKeys: [] },
  )
  .chain((p) => fc.jsonValue().map((extra) => ({ ...p, extra }) as JWTPayload));

function utf8Bytes(s: string): number {
  return new TextEncoder().encode(s).length;
}

/** Independent oracle: a clean identity string (no C0/DEL/C1, no U+2028/9, well-formed UTF-16, no edge space). */
function isClean(s: string): boolean {
  if (s === '' || s !== s.trim() || utf8Bytes(s) > 1024) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x2028 || c === 0x2029) return false;
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return false;
  }
  return true;
}

function run(p: JWTPayload): Principal | GatewayError {
  try {
    return mapClaims(p, claims, 'x');
  } catch (e) {
    if (e instanceof GatewayError) return e;
    throw e; // anything else fails the property
  }
}

describe('mapClaims on arbitrary payloads', () => {
  it('never throws anything but token_malformed, and a returned principal is exact', () => {
    fc.assert(
      fc.property(payload, (p) => {
        const r = run(p);
        if (r instanceof GatewayError) {
          expect(r.code).toBe('token_malformed');
          expect(r.detail.tokenPresented).toBe(true);
          expect(r.detail.why).toMatch(/^claim "/);
          return;
        }
        for (const [claim, field] of ID_CLAIMS) {
          const raw = (p as Record<string, unknown>)[claim];
          const got = r[field];
          if (raw === undefined) {
            expect(got).toBeUndefined();
            continue;
          }
          // Present: it was a string or a safe integer, and came through unchanged.
          if (typeof raw === 'number') {
            expect(Number.isSafeInteger(raw) && !Object.is(raw, -0)).toBe(true);
            expect(got).toBe(String(raw));
            expect(Number(got)).toBe(raw);
          } else {
            expect(typeof raw).toBe('string');
            expect(got).toBe(raw);
          }
          expect(isClean(got as string)).toBe(true);
        }
        const rawScope = (p as Record<string, unknown>).scope;
        const written = typeof rawScope === 'string' ? rawScope.split(' ') : Array.isArray(rawScope) ? rawScope : [];
        for (const s of r.scopes) {
          expect(s).not.toMatch(/\s/);
          expect(isClean(s) || utf8Bytes(s) > 1024).toBe(true);
          expect(written).toContain(s);
        }
        expect(new Set(r.scopes).size).toBe(r.scopes.length);
        expect(typeof r.clientType).toBe('string');
      }),
      { numRuns: 3000 },
    );
  });

  it('yields a subject equal to any string claim, or refuses the token', () => {
    fc.assert(
      fc.property(nastyString, (sub) => {
        const r = run({ sub });
        if (r instanceof GatewayError) expect(isClean(sub)).toBe(false);
        else {
          expect(r.subject).toBe(sub);
          expect(isClean(sub)).toBe(true);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('never leaves a present room claim unbound: the token is bound to exactly that room, or refused', () => {
    fc.assert(
      fc.property(value, (room_id) => {
        const r = run({ room_id } as JWTPayload);
        if (r instanceof GatewayError) return;
        expect(r.room).toBeDefined();
        expect(r.room).toBe(typeof room_id === 'number' ? String(room_id) : room_id);
      }),
      { numRuns: 3000 },
    );
  });

  it('never yields a scope that the claim did not spell out on its own (no "x admin_group" → admin_group)', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(nastyString, fc.constant('x admin_group'), fc.constant('admin_group\u0000')), { maxLength: 6 }), (scope) => {
        const r = run({ scope });
        if (r instanceof GatewayError) return;
        for (const s of r.scopes) expect(scope).toContain(s);
      }),
      { numRuns: 2000 },
    );
  });
});
