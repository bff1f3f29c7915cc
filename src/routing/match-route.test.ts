import { describe, expect, it } from 'vitest';
import type { HttpMethod, RouteConfig } from '../config/schema.js';
import type { MatchResult } from '../types.js';
import { compileRoutes } from './compile-routes.js';
import { matchRoute } from './match-route.js';

function route(path: string, methods?: HttpMethod[], id?: string): RouteConfig {
  return { path, public: false, ...(methods ? { methods } : {}), ...(id ? { id } : {}) };
}

/** The routes of shared/example-gateway.yaml plus a few to exercise precedence. */
const table = compileRoutes([
  route('/v2/admin/*', undefined, 'admin'),
  route('/v2/user/{id_or_email}', ['GET'], 'user'),
  route('/v2/room/{room_id_or_name}/history', ['GET'], 'history'),
  route('/v2/room/{room_id_or_name}/message', ['POST'], 'message'),
  route('/v2/room', ['POST'], 'create-room'),
  route('/v2/room', ['GET'], 'list-rooms'),
  route('/v2/room/{room_id_or_name}', ['GET'], 'get-room'),
  route('/v2/room/{room_id_or_name}/notification', ['POST'], 'notify'),
  route('/v2/capabilities', undefined, 'capabilities'),
  route('/v2/room/lobby', ['GET'], 'lobby'),
  route('/v2/room/{room}/*', ['GET'], 'room-tree'),
  route('/v2/room/{room}/head-only', ['HEAD'], 'head-only'),
  route('/v2/room/{room}/head-only', ['GET'], 'get-head-only'),
  route('/files/*', ['GET'], 'files-get'),
  route('/files/{name}', ['PUT'], 'files-put'),
  route('/', ['GET'], 'root'),
  route('/__proto__/{__proto__}', ['GET'], 'proto'),
]);

function describeResult(r: MatchResult): string | Record<string, unknown> {
  if (r.kind === 'match') return { id: r.route.id, params: { ...r.params } };
  if (r.kind === 'method_not_allowed') return `405 ${r.allow.join(',')}`;
  return '404';
}

describe('matchRoute', () => {
  const cases: Array<[string, string, string | Record<string, unknown>]> = [
    // literal, param, wildcard
    ['GET', '/v2/room', { id: 'list-rooms', params: {} }],
    ['POST', '/v2/room', { id: 'create-room', params: {} }],
    ['GET', '/v2/room/42', { id: 'get-room', params: { room_id_or_name: '42' } }],
    ['GET', '/v2/room/My%20Room', { id: 'get-room', params: { room_id_or_name: 'My Room' } }],
    ['GET', '/v2/user/a@b.com', { id: 'user', params: { id_or_email: 'a@b.com' } }],
    ['GET', '/v2/user/a%40b.com', { id: 'user', params: { id_or_email: 'a@b.com' } }],
    ['POST', '/v2/room/Ops%20%E2%9C%93/notification', { id: 'notify', params: { room_id_or_name: 'Ops ✓' } }],
    ['GET', '/v2/admin/users', { id: 'admin', params: {} }],
    ['DELETE', '/v2/admin/users/7/tokens', { id: 'admin', params: {} }],
    ['PROPFIND', '/v2/admin/x', { id: 'admin', params: {} }],
    ['GET', '/v2/admin/', { id: 'admin', params: {} }],
    ['GET', '/v2/capabilities', { id: 'capabilities', params: {} }],
    ['OPTIONS', '/v2/capabilities', { id: 'capabilities', params: {} }],
    ['GET', '/', { id: 'root', params: {} }],
    // literal beats param, param beats wildcard, whatever the file order
    ['GET', '/v2/room/lobby', { id: 'lobby', params: {} }],
    ['GET', '/v2/room/42/history', { id: 'history', params: { room_id_or_name: '42' } }],
    ['GET', '/v2/room/42/anything/else', { id: 'room-tree', params: { room: '42' } }],
    ['GET', '/v2/room/42/', { id: 'room-tree', params: { room: '42' } }],
    ['GET', '/v2/room/lobby/history', { id: 'history', params: { room_id_or_name: 'lobby' } }],
    // a more specific route that does not serve the method lets a less specific one answer
    ['GET', '/v2/room/42/message', { id: 'room-tree', params: { room: '42' } }],
    ['GET', '/files/a.txt', { id: 'files-get', params: {} }],
    ['PUT', '/files/a.txt', { id: 'files-put', params: { name: 'a.txt' } }],
    // GET implies HEAD; an explicit HEAD route wins for HEAD
    ['HEAD', '/v2/room', { id: 'list-rooms', params: {} }],
    ['HEAD', '/v2/room/42/head-only', { id: 'head-only', params: { room: '42' } }],
    ['GET', '/v2/room/42/head-only', { id: 'get-head-only', params: { room: '42' } }],
    // encoded literal text is the literal
    ['GET', '/v2/%72oom', { id: 'list-rooms', params: {} }],
    ['GET', '/v2/room/%6Cobby', { id: 'lobby', params: {} }],
    // parameter names that are Object.prototype keys stay plain data
    ['GET', '/__proto__/x', { id: 'proto', params: { ['__proto__']: 'x' } }],
    // 405: the path is known, the method is not
    ['DELETE', '/v2/room', '405 GET,HEAD,POST'],
    ['PUT', '/v2/room/42', '405 GET,HEAD'],
    ['GET', '/v2/room/42/notification', { id: 'room-tree', params: { room: '42' } }],
    ['DELETE', '/v2/room/42/notification', '405 GET,HEAD,POST'],
    ['POST', '/v2/room/42/head-only', '405 GET,HEAD'],
    ['DELETE', '/files/a.txt', '405 GET,HEAD,PUT'],
    ['get', '/v2/room', '405 GET,HEAD,POST'],
    ['POST', '/', '405 GET,HEAD'],
    // 404
    ['GET', '/v2/admin', '404'],
    ['GET', '/v2/Room', '404'],
    ['GET', '/v2/room/', '404'],
    ['GET', '/v2/room/42/history/', { id: 'room-tree', params: { room: '42' } }],
    ['GET', '/v2/user', '404'],
    ['GET', '/v2/user/', '404'],
    ['GET', '/v2/user/a/b', '404'],
    ['GET', '/v3/room', '404'],
    ['GET', '/v2/room/%zz', '404'],
    ['GET', '', '404'],
    ['GET', 'v2/room', '404'],
  ];
  it.each(cases)('%s %s', (method, path, expected) => {
    expect(describeResult(matchRoute(table, method, path))).toEqual(expected);
  });

  it('returns params named in path order', () => {
    const t = compileRoutes([route('/r/{room}/m/{user}', ['GET'])]);
    const r = matchRoute(t, 'GET', '/r/a%20b/m/c');
    expect(r).toMatchObject({ kind: 'match', params: { room: 'a b', user: 'c' } });
    if (r.kind === 'match') expect(Object.keys(r.params)).toEqual(['room', 'user']);
  });

  it('uses the parameter names of the route that matched', () => {
    const t = compileRoutes([route('/a/{x}', ['GET']), route('/a/{y}', ['POST'])]);
    expect(describeResult(matchRoute(t, 'GET', '/a/1'))).toEqual({ id: '/a/{x}', params: { x: '1' } });
    expect(describeResult(matchRoute(t, 'POST', '/a/1'))).toEqual({ id: '/a/{y}', params: { y: '1' } });
  });

  it('chooses the same route whatever the file order', () => {
    const routes = [
      route('/a/*', ['GET']),
      route('/a/{x}', ['GET']),
      route('/a/b', ['GET']),
      route('/a/{x}/c', ['GET']),
      route('/a/b/*', ['GET']),
      route('/*', ['GET']),
    ];
    const paths = ['/a/b', '/a/z', '/a/b/c', '/a/z/c', '/a/b/d', '/a/z/d', '/q', '/a/'];
    const forward = compileRoutes(routes);
    const backward = compileRoutes([...routes].reverse());
    for (const p of paths) {
      const f = matchRoute(forward, 'GET', p);
      const b = matchRoute(backward, 'GET', p);
      expect(f.kind === 'match' && f.route.id, p).toBe(b.kind === 'match' && b.route.id);
    }
    const at = (p: string) => {
      const r = matchRoute(forward, 'GET', p);
      return r.kind === 'match' ? r.route.id : r.kind;
    };
    expect(paths.map(at)).toEqual(['/a/b', '/a/{x}', '/a/b/*', '/a/{x}/c', '/a/b/*', '/a/*', '/*', '/a/*']);
  });

  it('prefers a literal earlier in the path over a literal later', () => {
    const t = compileRoutes([route('/{a}/x', ['GET']), route('/y/{b}', ['GET'])]);
    expect(describeResult(matchRoute(t, 'GET', '/y/x'))).toEqual({ id: '/y/{b}', params: { b: 'x' } });
  });

  it('backtracks out of a literal branch that has no route for the path', () => {
    const t = compileRoutes([route('/a/b/c', ['GET']), route('/a/{x}/d', ['GET'])]);
    expect(describeResult(matchRoute(t, 'GET', '/a/b/d'))).toEqual({ id: '/a/{x}/d', params: { x: 'b' } });
  });

  it('matches / with a root wildcard when there is no root route', () => {
    const t = compileRoutes([route('/*')]);
    expect(describeResult(matchRoute(t, 'GET', '/'))).toEqual({ id: '/*', params: {} });
    expect(describeResult(matchRoute(t, 'PATCH', '/x/y'))).toEqual({ id: '/*', params: {} });
  });

  describe('TRACE and CONNECT (SPEC §1.8)', () => {
    const t = compileRoutes([
      route('/open/*', undefined, 'open'),
      route('/open/{x}', ['GET'], 'open-get'),
      route('/debug/*', undefined, 'debug-any'),
      route('/debug/*', ['TRACE'], 'debug-trace'),
      route('/tunnel', ['CONNECT'], 'tunnel'),
      route('/all', undefined, 'all'),
    ]);
    const cases: Array<[string, string, string | Record<string, unknown>]> = [
      ['TRACE', '/all', '405 DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT'],
      ['CONNECT', '/all', '405 DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT'],
      ['trace', '/all', '405 DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT'],
      ['Connect', '/all', '405 DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT'],
      ['PROPFIND', '/all', { id: 'all', params: {} }],
      ['OPTIONS', '/all', { id: 'all', params: {} }],
      ['TRACE', '/open/x', '405 DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT'],
      ['TRACE', '/open/x/y', '405 DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT'],
      ['TRACE', '/debug/x', { id: 'debug-trace', params: {} }],
      ['GET', '/debug/x', { id: 'debug-any', params: {} }],
      ['CONNECT', '/debug/x', '405 DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT,TRACE'],
      ['CONNECT', '/tunnel', { id: 'tunnel', params: {} }],
      ['GET', '/tunnel', '405 CONNECT'],
    ];
    it.each(cases)('%s %s', (method, path, expected) => {
      expect(describeResult(matchRoute(t, method, path))).toEqual(expected);
    });

    it('lets a route without methods share its path with one that lists only TRACE or CONNECT', () => {
      expect(() => compileRoutes([route('/x'), route('/x', ['TRACE']), route('/x', ['CONNECT'])])).not.toThrow();
    });
  });

  it('reaches a literal with ";" only through %3B (a raw ";" is refused by checkPathSafety)', () => {
    const t = compileRoutes([route('/files;v2/{name}', ['GET'], 'v2-files')]);
    expect(describeResult(matchRoute(t, 'GET', '/files%3Bv2/a'))).toEqual({ id: 'v2-files', params: { name: 'a' } });
    expect(describeResult(matchRoute(t, 'GET', '/files%3bv2/a'))).toEqual({ id: 'v2-files', params: { name: 'a' } });
  });

  it('answers not_found on an empty table', () => {
    expect(matchRoute(compileRoutes([]), 'GET', '/')).toEqual({ kind: 'not_found' });
  });
});

describe('matchRoute agrees with a brute-force reference', () => {
  // Reference: try every route, keep those matching the path, order them by segment kinds
  // (literal < param < wildcard, left to right), take the first serving the method.
  const kind = (s: string) => (s === '*' ? 2 : s.startsWith('{') ? 1 : 0);
  const segsOf = (p: string) => (p === '/' ? [] : p.slice(1).split('/'));
  function matches(pattern: string, path: string): boolean {
    const ps = segsOf(pattern);
    const xs = path.slice(1).split('/');
    if (pattern === '/') return path === '/';
    for (let i = 0; i < ps.length; i++) {
      const p = ps[i]!;
      if (p === '*') return xs.length > i;
      const x = xs[i];
      if (x === undefined || x === '') return false;
      if (kind(p) === 0 && p !== decodeURIComponent(x)) return false;
    }
    return xs.length === ps.length;
  }
  function compare(a: string, b: string): number {
    const x = segsOf(a).map(kind);
    const y = segsOf(b).map(kind);
    // A pattern that ends sorts before one that goes on (only "/" against "/*" meet that way).
    for (let i = 0; i < Math.max(x.length, y.length); i++) if (x[i] !== y[i]) return (x[i] ?? -1) - (y[i] ?? -1);
    return 0;
  }
  function reference(routes: RouteConfig[], method: string, path: string): string {
    const hits = routes.filter((r) => matches(r.path, path)).sort((a, b) => compare(a.path, b.path));
    // A route without methods serves everything but TRACE and CONNECT, in any letter case.
    const traceOrConnect = ['TRACE', 'CONNECT'].includes(method.toUpperCase());
    const serves = (r: RouteConfig, explicitOnly: boolean) =>
      !r.methods ? !traceOrConnect : r.methods.includes(method as HttpMethod) || (!explicitOnly && method === 'HEAD' && r.methods.includes('GET'));
    for (const r of hits) {
      const sameShape = hits.filter((h) => compare(h.path, r.path) === 0 && h.path.replace(/\{\w+\}/g, '{}') === r.path.replace(/\{\w+\}/g, '{}'));
      const explicit = sameShape.find((h) => serves(h, true));
      if (explicit) return explicit.id!;
      const implied = sameShape.find((h) => serves(h, false));
      if (implied) return implied.id!;
    }
    if (hits.length === 0) return '404';
    const allow = new Set<string>();
    const implicit = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
    for (const h of hits) for (const m of h.methods ?? implicit) allow.add(m).add(m === 'GET' ? 'HEAD' : m);
    return `405 ${[...allow].sort().join(',')}`;
  }

  const pool = ['/', '/a', '/b', '/{p}', '/*', '/a/b', '/a/{p}', '/{p}/b', '/{p}/{q}', '/a/*', '/{p}/*', '/a/b/*', '/a/{p}/*', '/{p}/b/*', '/{p}/{q}/c', '/a/{p}/c'];
  const methodSets: Array<HttpMethod[] | undefined> = [['GET'], ['POST'], ['HEAD'], ['GET', 'POST'], ['DELETE'], undefined, undefined, ['TRACE'], ['CONNECT', 'TRACE']];
  const paths = ['/', '/a', '/b', '/c', '/a/', '/a/b', '/a/c', '/b/b', '/c/b', '/a/b/c', '/c/d/c', '/a/z/c', '/a/b/', '/x/y/z/w', '/%61', '/%61/b'];
  let seed = 7;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return Math.floor((seed / 2147483648) * n);
  };

  it('on 300 random tables', () => {
    let compared = 0;
    for (let t = 0; t < 300; t++) {
      const routes: RouteConfig[] = [];
      const n = 1 + rand(8);
      for (let i = 0; i < n; i++) {
        routes.push(route(pool[rand(pool.length)]!, methodSets[rand(methodSets.length)], `r${i}`));
      }
      let table;
      try {
        table = compileRoutes(routes);
      } catch {
        continue;
      }
      for (const m of ['GET', 'HEAD', 'POST', 'DELETE', 'PROPFIND', 'TRACE', 'CONNECT', 'trace']) {
        for (const p of paths) {
          const got = matchRoute(table, m, p);
          const mine = got.kind === 'match' ? got.route.id : got.kind === 'not_found' ? '404' : `405 ${got.allow.join(',')}`;
          expect(mine, `${m} ${p} in ${JSON.stringify(routes.map((r) => [r.id, r.path, r.methods ?? '*']))}`).toBe(reference(routes, m, p));
          compared++;
        }
      }
    }
    expect(compared).toBeGreaterThan(5000);
  });
});
