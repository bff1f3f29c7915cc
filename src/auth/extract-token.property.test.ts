/**
 * extractToken answers the common request (one `Bearer <token68>` value, no query) without
 * running every rule; this holds that fast path to the general one: for any Authorization values
 * and query, near the fast path's edges and far from them, both return the same token and source
 * or throw the same error code.
 */
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { extractToken, extractTokenGeneral, type ExtractOptions } from './extract-token.js';
import { GatewayError } from '../errors.js';

const token68 = fc.stringMatching(/^[A-Za-z0-9._~+/-]{1,40}=*$/);
/** Bytes that sit on the fast path's edges: spaces, tabs, commas, `=`, controls, non-ASCII. */
const edge = fc.constantFrom(' ', '\t', ',', '=', '\u0000', '\u00a0', 'é', '🚀', 'Bearer', 'bearer', 'BEARER', 'Basic', '"', ';', '');
const scheme = fc.constantFrom('Bearer', 'bearer', 'BEARER', 'Basic', 'Bearer ', ' Bearer', 'Token', '');
const value = fc.oneof(
  token68.map((t) => `Bearer ${t}`),
  fc.tuple(scheme, fc.constantFrom(' ', '  ', '\t', ''), token68, fc.array(edge, { maxLength: 3 })).map(([s, sp, t, e]) => `${s}${sp}${t}${e.join('')}`),
  fc.tuple(token68, token68).map(([a, b]) => `Bearer ${a}, Bearer ${b}`),
  fc.string({ maxLength: 30 }),
);
const query = fc.oneof(fc.constant(''), fc.constantFrom('auth_token=abc', 'x=1', 'auth_test=true', 'AUTH_TOKEN=a'), token68.map((t) => `auth_token=${t}`));

function outcome(f: () => unknown): unknown {
  try {
    return { ok: f() };
  } catch (e) {
    if (e instanceof GatewayError) return { error: e.code };
    throw e;
  }
}

describe('extractToken fast path', () => {
  it('answers as the general path does, for any values, query and options', () => {
    fc.assert(
      fc.property(
        fc.option(fc.array(value, { minLength: 0, maxLength: 3 }), { nil: undefined }),
        query,
        fc.constantFrom<ExtractOptions['sources']>(['header', 'query'], ['header'], ['query']),
        fc.integer({ min: 1, max: 48 }),
        (auth, q, sources, maxTokenBytes) => {
          const opts: ExtractOptions = { sources, queryParam: 'auth_token', maxTokenBytes };
          expect(outcome(() => extractToken(auth, q, opts))).toEqual(outcome(() => extractTokenGeneral(auth, q, opts)));
        },
      ),
      { numRuns: 3000 },
    );
  });
});
