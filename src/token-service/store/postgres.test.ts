import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parsePayload, revocationChannel } from './postgres.js';

describe('NOTIFY payloads and channels', () => {
  it('round-trips a revocation and refuses anything else', () => {
    const r = { jti: 'abc', expiresAt: 1_700_000_000_000, revokedAt: 1_699_999_999_000 };
    expect(parsePayload(JSON.stringify(r))).toEqual(r);
    expect(parsePayload(JSON.stringify({ ...r, extra: 'ignored' }))).toEqual(r);
    expect(parsePayload('{"jti":1,"expiresAt":1,"revokedAt":1}')).toBeUndefined();
    expect(parsePayload('{"jti":"a","expiresAt":"1","revokedAt":1}')).toBeUndefined();
    expect(parsePayload('not json')).toBeUndefined();
    expect(parsePayload('null')).toBeUndefined();
  });

  it('property: any payload parses to undefined or to exactly a well-typed record, never throws', () => {
    const payload = fc.oneof(
      fc.string(),
      fc.json(),
      fc.record({ jti: fc.oneof(fc.string(), fc.integer(), fc.constant(null)), expiresAt: fc.oneof(fc.double(), fc.string()), revokedAt: fc.oneof(fc.double(), fc.constant(Infinity)) }).map((o) => JSON.stringify(o)),
    );
    fc.assert(
      fc.property(payload, (p) => {
        const r = parsePayload(p);
        if (r === undefined) return;
        expect(Object.keys(r).sort()).toEqual(['expiresAt', 'jti', 'revokedAt']);
        expect(typeof r.jti).toBe('string');
        expect(Number.isFinite(r.expiresAt) && Number.isFinite(r.revokedAt)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it('property: a schema\'s channel is at most 63 bytes (a PostgreSQL identifier) and distinct schemas get distinct channels', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), fc.string({ maxLength: 80 }), (a, b) => {
        expect(Buffer.byteLength(revocationChannel(a))).toBeLessThanOrEqual(63);
        if (a !== b) expect(revocationChannel(a)).not.toBe(revocationChannel(b));
      }),
      { numRuns: 1000 },
    );
    expect(revocationChannel('public')).toBe('scopegate_revocations:public');
  });
});
