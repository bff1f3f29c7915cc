/**
 * Properties of checkTarget / checkPathSafety (SPEC §1.1) over arbitrary and hostile input: they
 * never throw, and whatever they accept is origin-form, has no fragment, no raw ";" and no
 * segment an upstream could read as a dot segment or split in two.
 *
 * @example
 *   npx vitest run src/routing/path-safety.property.test.ts
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkPathSafety, checkTarget, decodeSegment } from './path-safety.js';

/** Pieces that make request targets interesting: separators, escapes, look-alikes. */
const PIECES = [
  '/', '/', '/', 'a', 'b', 'v2', 'user', 'bob', 'room', '.', '..', '%2e', '%2E', '%2f', '%2F', '%5c', '\\', '#', '%23', '?', ';',
  '%3b', '%3B', '=', '&', '%', '%0', '%00', '%zz', '%C0%AE', '%E2%9C%93', '%25', '%252e', ' ', '\t', '\r', '\n', '\0', 'é', '*',
  'http:', '//', ':', '@', 'auth_token', '%7e', '~', '{', '}', '|', '"', '<', '^', '`', '\u2028', '\uD800',
];
const hostile = fc.array(fc.constantFrom(...PIECES), { maxLength: 14 }).map((xs) => xs.join(''));
const slashFirst = hostile.map((s) => `/${s}`);
const anyTarget = fc.oneof(hostile, slashFirst, fc.string({ unit: 'binary', maxLength: 60 }), fc.string({ unit: 'binary-ascii', maxLength: 60 }));

/** The path part of a target, as the gateway splits it. */
const pathOf = (t: string) => (t.includes('?') ? t.slice(0, t.indexOf('?')) : t);

describe('checkTarget and checkPathSafety on arbitrary input', () => {
  it('never throw and always answer null or a short reason', () => {
    fc.assert(
      fc.property(anyTarget, (t) => {
        for (const r of [checkTarget(t), checkPathSafety(t)]) {
          expect(r === null || (typeof r === 'string' && r.length > 0 && r.length < 160)).toBe(true);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('accept only origin-form targets without "#", raw ";", controls or non-ASCII', () => {
    fc.assert(
      fc.property(anyTarget, (t) => {
        if (checkTarget(t) !== null) return;
        expect(t.startsWith('/')).toBe(true);
        expect(t).not.toContain('#');
        expect(pathOf(t)).not.toContain(';');
        expect(t).not.toMatch(/[^\x21-\x7e]/);
        // The path alone is accepted too: checkTarget is checkPathSafety plus the query rules.
        expect(checkPathSafety(pathOf(t))).toBeNull();
      }),
      { numRuns: 3000 },
    );
  });

  it('accept only paths whose decoded segments are plain names', () => {
    fc.assert(
      fc.property(slashFirst, (p) => {
        if (checkPathSafety(p) !== null) return;
        const segs = p.slice(1).split('/');
        segs.forEach((raw, i) => {
          expect(raw === '' ? i === segs.length - 1 : true).toBe(true); // only a trailing "/" is empty
          const seg = decodeSegment(raw); // never throws on an accepted path
          expect(seg).not.toMatch(/[/\\\0]/);
          expect(seg.split(';')[0]).not.toMatch(/^\.\.?$/);
        });
      }),
      { numRuns: 3000 },
    );
  });

  it('refuses any target with a raw "#", wherever it is', () => {
    fc.assert(
      fc.property(slashFirst, slashFirst, (a, b) => {
        expect(checkTarget(`${a}#${b}`)).not.toBeNull();
        expect(checkTarget(`/x?${a}#${b}`)).not.toBeNull();
      }),
    );
  });
});
