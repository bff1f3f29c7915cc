import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import type { HttpMethod, RouteConfig } from '../config/schema.js';
import { compileRoutes } from './compile-routes.js';

function route(path: string, methods?: HttpMethod[], extra: Partial<RouteConfig> = {}): RouteConfig {
  return { path, public: false, scopes: ['s'], ...(methods ? { methods } : {}), ...extra };
}

function compileError(routes: RouteConfig[]): ConfigError {
  try {
    compileRoutes(routes);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('compileRoutes accepted the routes');
}

describe('compileRoutes', () => {
  it('compiles ids, methods, params, upstream and index', () => {
    const table = compileRoutes([
      route('/v2/room/{room}/member/{user}', ['GET', 'PUT'], { id: 'member', upstream: 'rooms' }),
      route('/v2/admin/*'),
      route('/v2/room', ['POST']),
    ]);
    const [a, b, c] = table.routes;
    expect(a).toMatchObject({ id: 'member', params: ['room', 'user'], upstream: 'rooms', index: 0 });
    expect([...a!.methods!].sort()).toEqual(['GET', 'HEAD', 'PUT']);
    expect(b).toMatchObject({ id: '/v2/admin/*', params: [], upstream: 'default', index: 1, methods: null });
    expect([...c!.methods!]).toEqual(['POST']);
  });

  it('accepts the same path with different methods, and an explicit HEAD next to GET', () => {
    expect(() =>
      compileRoutes([
        route('/v2/room', ['GET']),
        route('/v2/room', ['POST']),
        route('/v2/room', ['HEAD']),
        route('/v2/room/{id}', ['GET']),
        route('/v2/room/{name}', ['DELETE']),
      ]),
    ).not.toThrow();
  });

  it('accepts routes that only overlap in shape across literal and parameter segments', () => {
    expect(() => compileRoutes([route('/a/{x}', ['GET']), route('/a/b', ['GET']), route('/a/*', ['GET'])])).not.toThrow();
  });

  const duplicates: Array<[string, RouteConfig[], string, RegExp]> = [
    ['same method and path', [route('/a', ['GET']), route('/a', ['GET'])], 'routes[1]', /route "\/a" \(routes\[0\]\) already serves/],
    [
      'same shape with other parameter names',
      [route('/a/{x}', ['GET']), route('/b'), route('/a/{y}', ['POST', 'GET'])],
      'routes[2]',
      /serves GET on path "\/a\/\{y\}" \(the same shape as "\/a\/\{x\}": only the parameter names differ\).*routes\[0\]/,
    ],
    ['a route without methods next to one with methods', [route('/a', ['POST']), route('/a')], 'routes[1]', /routes\[0\]/],
    ['a route with methods after one without', [route('/a/*'), route('/a/*', ['DELETE'])], 'routes[1]', /serves DELETE .*routes\[0\]/],
    ['two routes without methods', [route('/'), route('/')], 'routes[1]', /every method but TRACE and CONNECT/],
    ['a route without methods next to one listing TRACE and GET', [route('/a', ['TRACE', 'GET']), route('/a')], 'routes[1]', /serves GET on path "\/a", which route "\/a" \(routes\[0\]\)/],
    ['TRACE and GET after a route without methods', [route('/a/*'), route('/a/*', ['GET', 'TRACE'])], 'routes[1]', /serves GET on .*routes\[0\]/],
    ['TRACE twice', [route('/a'), route('/a', ['TRACE']), route('/a', ['TRACE'])], 'routes[2]', /serves TRACE .*routes\[1\]/],
    ['GET listed twice across routes with extra methods', [route('/a', ['GET', 'PUT']), route('/a', ['PATCH', 'GET'])], 'routes[1]', /serves GET/],
  ];
  it.each(duplicates)('refuses %s', (_name, routes, path, message) => {
    const err = compileError(routes);
    expect(err.issues).toHaveLength(1);
    expect(err.issues[0]!.path).toBe(path);
    expect(err.issues[0]!.message).toMatch(message);
  });

  it('accepts TRACE and CONNECT routes next to a route without methods, in any order', () => {
    const a = compileRoutes([route('/a'), route('/a', ['TRACE'], { id: 't' }), route('/a', ['CONNECT'], { id: 'c' })]);
    const b = compileRoutes([route('/a', ['CONNECT'], { id: 'c' }), route('/a', ['TRACE'], { id: 't' }), route('/a')]);
    expect(a.routes.map((r) => r.id)).toEqual(['/a', 't', 'c']);
    expect(b.routes.map((r) => r.id)).toEqual(['c', 't', '/a']);
  });

  it('refuses two routes with the same id', () => {
    const err = compileError([route('/a', ['GET'], { id: 'rooms' }), route('/b', ['GET'], { id: 'rooms' })]);
    expect(err.issues).toEqual([{ path: 'routes[1].id', message: expect.stringMatching(/id "rooms" is already the id of routes\[0\]/) }]);
  });

  it('refuses a named id that equals another route\'s default id', () => {
    const err = compileError([route('/a', ['GET']), route('/b', ['GET'], { id: '/a' })]);
    expect(err.issues[0]!.path).toBe('routes[1].id');
  });

  it('lets routes of one path share the default id', () => {
    const table = compileRoutes([route('/a', ['GET']), route('/a', ['POST'], { id: '/a' })]);
    expect(table.routes.map((r) => r.id)).toEqual(['/a', '/a']);
  });

  it('reports every problem at once', () => {
    const err = compileError([
      route('/a', ['GET']),
      route('/a', ['GET']),
      route('/b', ['GET'], { id: 'x' }),
      route('/c', ['GET'], { id: 'x' }),
    ]);
    expect(err.issues.map((i) => i.path)).toEqual(['routes[1]', 'routes[3].id']);
  });

  it.each([
    ['no leading slash', 'a/b'],
    ['wildcard in the middle', '/a/*/b'],
    ['empty segment', '/a//b'],
    ['percent in a literal', '/a/%2e'],
    ['dot segment', '/a/../b'],
    ['repeated parameter', '/a/{x}/{x}'],
  ])('refuses a malformed path when called directly (%s)', (_name, path) => {
    const err = compileError([route('/ok'), route(path)]);
    expect(err.issues[0]!.path).toBe('routes[1].path');
  });
});
