/**
 * Routing properties (SPEC §1.1–1.2) over arbitrary request targets: matchRoute never throws, and
 * every target the gateway accepts routes to the same route, with the same parameters, as the path
 * an upstream would see after its own parsing — WHATWG URL (`new URL('http://h' + target)`),
 * Node's legacy `url.parse`, a decode-and-normalise server, and Tomcat/Spring's path-parameter
 * stripping — or that path is one the gateway refuses too. This is the rule-2 bypass
 * (`/v2/user/bob#/photo`) stated generally.
 *
 * @example
 *   npx vitest run src/routing/match-route.property.test.ts
 */
import { posix } from 'node:path';
import { parse as legacyParse } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { HttpMethod, RouteConfig } from '../config/schema.js';
import type { MatchResult } from '../types.js';
import { compileRoutes } from './compile-routes.js';
import { createRouteMatcher, matchRoute, MEMO_ENTRIES_MAX, MEMO_PATH_MAX } from './match-route.js';
import { checkPathSafety, checkTarget } from './path-safety.js';

const route = (path: string, methods?: HttpMethod[], pub = false): RouteConfig => ({
  path,
  public: pub,
  id: `${methods ? methods.join('+') : '*'} ${path}`,
  ...(methods ? { methods } : {}),
});

const table = compileRoutes([
  route('/v2/user/{id}/photo', ['GET'], true),
  route('/v2/user/{id}', ['GET', 'DELETE']),
  route('/v2/admin/*'),
  route('/v2/admin/*', ['TRACE']),
  route('/v2/admin/users', ['GET']),
  route('/v2/{section}/users', ['GET'], true),
  route('/v2/room/{room}/*', ['GET', 'POST']),
  route('/v2/room', ['GET']),
  route('/a/b', ['GET']),
  route('/a/{x}', ['GET', 'PUT']),
  route('/{p}/b', ['GET']),
  route('/', ['GET']),
]);

/** Words the table routes on, so that generated paths hit its routes often. */
const WORDS = ['v2', 'user', 'admin', 'users', 'photo', 'room', 'bob', 'a', 'b'];
const HOSTILE = [
  '%61', '%62', '%76%32', '%2e', '.', '..', '.%2e', 'bob%23', ';', '', 'b%3Bc', '%7E', '"', '^', '|', '{', '`', '<', '%25',
  '%2561', '%2F', '%5C', '\\', '%C3%A9', '%FF', 'é', '*', '%00', '#', '?',
];
const word = fc.constantFrom(...WORDS);
const segment = fc.oneof(
  { weight: 4, arbitrary: word },
  { weight: 2, arbitrary: fc.constantFrom(...HOSTILE) },
  // path parameters and fragments glued to a word: admin;x, bob#, b%3Bc
  { weight: 1, arbitrary: fc.tuple(word, fc.constantFrom(';', ';x', ';x=1', '#', '#x', '%3B', '%23', '?'), fc.constantFrom('', 'y', 'photo')).map((xs) => xs.join('')) },
);
const TAILS = ['', '', '', '/', '#', '#/photo', '?q=1', '?q=1#x', '?a=b?c', '?#', ';x', '%23x'];
const target = fc
  .tuple(fc.array(segment, { minLength: 0, maxLength: 5 }), fc.constantFrom(...TAILS))
  .map(([segs, tail]) => `/${segs.join('/')}${tail}`);
const METHOD = fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'TRACE', 'CONNECT', 'trace', 'PROPFIND', 'OPTIONS');

const pathOf = (t: string) => (t.includes('?') ? t.slice(0, t.indexOf('?')) : t);

/** A comparable summary of a match result. */
function summary(r: MatchResult): string {
  if (r.kind === 'match') return `match ${r.route.id} ${JSON.stringify(Object.entries(r.params))}`;
  if (r.kind === 'method_not_allowed') return `405 ${r.allow.join(',')}`;
  return '404';
}

/** Re-encodes decoded segments so that matchRoute reads them back as the same text. */
const encodePath = (segs: string[]) => `/${segs.map(encodeURIComponent).join('/')}`;

/** The path an upstream routes on, for several upstream parsers; null when the parser gives up. */
const upstreamViews: Record<string, (t: string) => string | null> = {
  whatwg: (t) => new URL(`http://h${t}`).pathname,
  'url.parse': (t) => legacyParse(t).pathname,
  'decode and normalise': (t) => {
    const decoded = decodeURIComponent(pathOf(t));
    const norm = posix.normalize(decoded);
    return encodePath(norm.slice(1).split('/'));
  },
  'tomcat/spring': (t) => {
    const stripped = pathOf(t)
      .split('/')
      .map((s) => s.split(';')[0]!)
      .join('/');
    const norm = posix.normalize(decodeURIComponent(stripped));
    return encodePath(norm.slice(1).split('/'));
  },
};

describe('matchRoute on arbitrary paths', () => {
  it('never throws, whatever the path and method', () => {
    fc.assert(
      fc.property(fc.oneof(target, fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ unit: 'binary-ascii', maxLength: 40 })), METHOD, (p, m) => {
        const r = matchRoute(table, m, p);
        expect(['match', 'method_not_allowed', 'not_found']).toContain(r.kind);
      }),
      { numRuns: 3000 },
    );
  });

  it('routes every accepted target as each upstream parser would, or the parser\'s path is refused too', () => {
    let accepted = 0;
    fc.assert(
      fc.property(target, METHOD, (t, m) => {
        if (checkTarget(t) !== null) return;
        accepted++;
        const ours = summary(matchRoute(table, m, pathOf(t)));
        for (const [name, view] of Object.entries(upstreamViews)) {
          let theirs: string | null;
          try {
            theirs = view(t);
          } catch {
            theirs = null; // the upstream rejects the target itself
          }
          if (theirs === null || checkPathSafety(theirs) !== null) continue;
          expect(summary(matchRoute(table, m, theirs)), `${name}: ${t} -> ${theirs}`).toBe(ours);
        }
      }),
      { numRuns: 5000 },
    );
    expect(accepted).toBeGreaterThan(500);
  });

  it('never serves TRACE or CONNECT from a route that does not list them', () => {
    fc.assert(
      fc.property(target, fc.constantFrom('TRACE', 'CONNECT', 'trace', 'connect', 'Trace'), (t, m) => {
        const r = matchRoute(table, m, pathOf(t));
        if (r.kind === 'match') expect(r.route.config.methods).toContain(m.toUpperCase());
      }),
      { numRuns: 2000 },
    );
  });
});

describe('createRouteMatcher (the memo the decision matches with)', () => {
  const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'TRACE', 'CONNECT', 'get', 'PATCH'];
  it('answers every path, first time or remembered, exactly as matchRoute does', () => {
    const match = createRouteMatcher(table);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom(...METHODS), target.map((t) => t.split(/[?#]/, 1)[0]!)), { minLength: 1, maxLength: 20 }), (reqs) => {
        // Twice over: the second round is answered from the memo.
        for (const [method, path] of [...reqs, ...reqs]) expect(match(method, path)).toEqual(matchRoute(table, method, path));
      }),
      { numRuns: 500 },
    );
  });

  it('hands out parameters and allowed methods no caller can change for the next request', () => {
    const match = createRouteMatcher(table);
    const first = match('GET', '/v2/user/bob');
    if (first.kind !== 'match') throw new Error(`expected a match, got ${first.kind}`);
    expect(() => {
      (first.params as Record<string, string>)['id'] = 'mallory';
    }).toThrow(TypeError);
    const again = match('GET', '/v2/user/bob');
    expect(again.kind === 'match' && again.params['id']).toBe('bob');
    const refused = match('PATCH', '/v2/user/bob');
    if (refused.kind !== 'method_not_allowed') throw new Error(`expected method_not_allowed, got ${refused.kind}`);
    expect(() => (refused.allow as string[]).push('PATCH')).toThrow(TypeError);
    expect(match('PATCH', '/v2/user/bob')).toEqual(matchRoute(table, 'PATCH', '/v2/user/bob'));
  });

  it('stays bounded: long paths are not kept, and a flood of distinct paths starts the memo over', () => {
    const match = createRouteMatcher(table);
    const long = `/v2/user/${'x'.repeat(MEMO_PATH_MAX)}`;
    // Not remembered: two calls give equal but distinct results.
    expect(match('GET', long)).toEqual(match('GET', long));
    expect(match('GET', long)).not.toBe(match('GET', long));
    const kept = match('GET', '/v2/user/first');
    expect(match('GET', '/v2/user/first')).toBe(kept);
    for (let i = 0; i < MEMO_ENTRIES_MAX; i++) match('GET', `/v2/user/u${i}`);
    // The memo filled up and started over: the first path is matched afresh, with the same answer.
    const after = match('GET', '/v2/user/first');
    expect(after).not.toBe(kept);
    expect(after).toEqual(kept);
  });
});
