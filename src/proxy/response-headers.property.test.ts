/**
 * The Bun door's response headers (withoutHopByHopHeaders, on a fetch Headers copy) and the Node
 * door's (responseHeaderList, on a record) must be the same fields: for any upstream response
 * header set (hop-by-hop names, names its Connection lists, repeated Set-Cookie, the gateway's
 * own names in any case) both keep, drop and replace the same names with the same values.
 *
 * @example
 *   npx vitest run src/proxy/response-headers.property.test.ts
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HOP_BY_HOP, responseHeaderList, withoutHopByHopHeaders } from './upstream-headers.js';

const NAMES = [...HOP_BY_HOP, 'content-type', 'etag', 'x-internal', 'x-request-id', 'x-ratelimit-limit', 'cache-control', 'x-a', 'x-b'];
const token = fc.oneof(fc.constantFrom(...NAMES, 'close', 'keep-alive', 'X-Internal', 'ETAG'), fc.constantFrom('!:', 'a b', '(x)', '"q"', ''));
const value = fc.stringMatching(/^[!-~]([ -~]{0,10}[!-~])?$/);

const upstream = fc.record({
  fields: fc.dictionary(fc.constantFrom(...NAMES), value, { maxKeys: 8 }),
  connection: fc.option(fc.array(token, { minLength: 1, maxLength: 3 }).map((t) => t.join(', ')), { nil: undefined }),
  cookies: fc.array(value, { maxLength: 3 }),
});
const own = fc.dictionary(fc.constantFrom('x-request-id', 'X-Request-Id', 'x-ratelimit-limit', 'X-RateLimit-Remaining', 'etag'), value, { maxKeys: 3 });

/** A header list as name → values, names lower case, Set-Cookie values one by one. */
function canonical(entries: Array<[string, string | string[]]>): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const [name, v] of entries) {
    const n = name.toLowerCase();
    (out[n] ??= []).push(...(Array.isArray(v) ? v : [v]));
  }
  return out;
}

describe('withoutHopByHopHeaders agrees with responseHeaderList', () => {
  it('same fields and values for any upstream headers and own headers', () => {
    fc.assert(
      fc.property(upstream, own, ({ fields, connection, cookies }, mine) => {
        // Headers merges case-insensitively; the own record is applied last by both, so keep
        // one spelling per name in it (a door never passes two).
        const ownOne: Record<string, string> = {};
        for (const [k, v] of Object.entries(mine)) if (!Object.keys(ownOne).some((o) => o.toLowerCase() === k.toLowerCase())) ownOne[k] = v;
        const record: Record<string, string | string[]> = { ...fields };
        if (connection !== undefined) record['connection'] = connection;
        if (cookies.length) record['set-cookie'] = cookies;
        const h = new Headers();
        for (const [k, v] of Object.entries(record)) for (const x of Array.isArray(v) ? v : [v]) h.append(k, x);

        const list = responseHeaderList(record, ownOne);
        const pairs: Array<[string, string | string[]]> = [];
        for (let i = 0; i < list.length; i += 2) pairs.push([list[i] as string, list[i + 1]!]);
        const fromHeaders: Array<[string, string | string[]]> = [];
        const out = withoutHopByHopHeaders(h, ownOne);
        out.forEach((v, k) => {
          if (k !== 'set-cookie') fromHeaders.push([k, v]);
        });
        for (const c of out.getSetCookie()) fromHeaders.push(['set-cookie', c]);
        expect(canonical(fromHeaders)).toEqual(canonical(pairs));
      }),
      { numRuns: 500 },
    );
  });

  it('drops what Connection lists, the hop-by-hop set, and replaces own names whatever their case', () => {
    const h = new Headers([
      ['connection', 'close, X-Internal'],
      ['x-internal', 'secret'],
      ['keep-alive', 'timeout=5'],
      ['transfer-encoding', 'chunked'],
      ['x-request-id', 'upstream'],
      ['set-cookie', 'a=1'],
      ['set-cookie', 'b=2'],
      ['content-type', 'text/plain'],
    ]);
    const out = withoutHopByHopHeaders(h, { 'X-Request-Id': 'gw' });
    expect([...new Set(out.keys())].sort()).toEqual(['content-type', 'set-cookie', 'x-request-id']);
    expect(out.get('x-request-id')).toBe('gw');
    expect(out.getSetCookie()).toEqual(['a=1', 'b=2']);
  });
});
