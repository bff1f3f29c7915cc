import { describe, expect, it } from 'vitest';
import type { HttpMethod, RouteConfig } from '../config/schema.js';
import { analyzeRoutes, methodsLabel, type RouteFinding } from './analyze-routes.js';
import { compileRoutes } from './compile-routes.js';
import { matchRoute } from './match-route.js';

function route(path: string, methods?: HttpMethod[], extra: Partial<RouteConfig> = {}): RouteConfig {
  return { path, public: false, scopes: ['s'], ...(methods ? { methods } : {}), ...extra };
}

const brief = (fs: RouteFinding[]) => fs.map((f) => `${f.severity} ${f.code} ${f.index} ${f.route}`);

/** shared/example-gateway.yaml's routes: a clean table. */
const exampleRoutes: RouteConfig[] = [
  { path: '/v2/capabilities', public: true },
  route('/v2/room/{room_id_or_name}/notification', ['POST'], {
    id: 'send-room-notification',
    scopes: ['send_notification'],
    client_types: ['group', 'room', 'user'],
    room_param: 'room_id_or_name',
    flood_control: { limit: 30, window_s: 60, param: 'room_id_or_name' },
  }),
  route('/v2/room/{room_id_or_name}', ['GET'], { scopes: ['view_group', 'view_room'], room_param: 'room_id_or_name' }),
  route('/v2/room', ['GET'], { scopes: ['view_group', 'view_room'], client_types: ['group', 'user'] }),
  route('/v2/room', ['POST'], { scopes: ['manage_rooms'], client_types: ['group', 'user'] }),
  route('/v2/room/{room_id_or_name}/message', ['POST'], {
    client_types: ['user'],
    flood_control: { limit: 30, window_s: 60, param: 'room_id_or_name' },
  }),
  // room_param on a route no room token can reach is fine
  route('/v2/room/{room_id_or_name}/history', ['GET'], { client_types: ['user'], room_param: 'room_id_or_name' }),
  route('/v2/user/{id_or_email}', ['GET']),
  route('/v2/admin/*', undefined, { scopes: undefined, scopes_all: ['admin_group', 'view_group'], upstream: 'default' }),
  // explicit HEAD next to GET is deliberate, not a finding
  route('/v2/room/{room_id_or_name}', ['HEAD'], { id: 'room-head' }),
  // a wildcard that still owns most of its paths
  route('/v2/room/{room_id_or_name}/*', ['GET']),
  route('/v2/room/{room_id_or_name}/history/*', ['GET']),
];

describe('analyzeRoutes', () => {
  it('finds nothing in a clean table', () => {
    expect(analyzeRoutes(exampleRoutes)).toEqual([]);
    expect(analyzeRoutes(exampleRoutes, { fallback: 'authenticated' })).toEqual([]);
    expect(analyzeRoutes([])).toEqual([]);
  });

  const tables: Array<[string, RouteConfig[], string[], RegExp]> = [
    [
      'duplicate method and path shape',
      [route('/a/{x}', ['GET']), route('/a/{y}', ['GET', 'POST'])],
      ['error duplicate 1 /a/{y}'],
      /Route "\/a\/\{y\}" \(routes\[1\]\): .*serves GET on path "\/a\/\{y\}" .*"\/a\/\{x\}" \(routes\[0\]\) already serves/,
    ],
    [
      'duplicate id',
      [route('/a', ['GET'], { id: 'x' }), route('/b', ['GET'], { id: 'x' })],
      ['error duplicate_id 1 x'],
      /^Route "x" \(routes\[1\], path \/b\): id "x" is already the id of routes\[0\] \(path "\/a"\)/,
    ],
    ['invalid path', [route('/a/*/b', ['GET'])], ['error invalid_path 0 /a/*/b'], /invalid path "\/a\/\*\/b": "\*" is only allowed as the last segment/],
    [
      'wildcard shadowed by more specific routes',
      [route('/a/*', ['GET']), route('/a/{x}', ['GET']), route('/a/{x}/*', ['GET'])],
      ['warning shadowed 0 /a/*'],
      /Route "\/a\/\*" \(routes\[0\]\) is only used for paths ending in "\/" \(such as "\/a\/"\): every other request it matches goes to a more specific route instead: "\/a\/\{x\}" \(routes\[1\]\), "\/a\/\{x\}\/\*" \(routes\[2\]\)/,
    ],
    [
      'wildcard shadowed by routes several levels deep',
      [route('/d/{x}/{y}/*'), route('/d/{x}'), route('/d/*'), route('/d/{x}/{y}')],
      ['warning shadowed 2 /d/*'],
      /"\/d\/\*" \(routes\[2\]\) is only used for paths ending in "\/" \(such as "\/d\/"\).*"\/d\/\{x\}\/\{y\}\/\*" \(routes\[0\]\), "\/d\/\{x\}" \(routes\[1\]\), "\/d\/\{x\}\/\{y\}" \(routes\[3\]\)/,
    ],
    [
      'wildcard shadowed for one of its methods',
      [route('/f/*', ['GET', 'POST']), route('/f/{x}', ['GET']), route('/f/{x}/*', ['GET'])],
      ['warning method_shadowed 0 /f/*'],
      /Route "\/f\/\*" \(routes\[0\]\) never handles GET \(except paths ending in "\/", such as "\/f\/"\): .*"\/f\/\{x\}" \(routes\[1\]\), "\/f\/\{x\}\/\*" \(routes\[2\]\)/,
    ],
    [
      'non-public route without scopes',
      [route('/a', ['GET'], { scopes: undefined, client_types: ['user'] })],
      ['warning no_scopes 0 /a'],
      /is not public but lists no scopes: any valid token of an allowed client type \(user\) can call it\. Add `scopes`/,
    ],
    [
      'room_param naming a missing parameter',
      [route('/r/{room}', ['GET'], { room_param: 'room_id' })],
      ['warning room_param_missing 0 /r/{room}'],
      /has room_param "room_id", but its path parameters are \{room\}\. Room-bound tokens .* refused here with room_forbidden/,
    ],
    [
      'room_param on a path without parameters',
      [route('/r', ['GET'], { room_param: 'room' })],
      ['warning room_param_missing 0 /r'],
      /but its path has no parameters/,
    ],
    [
      'flood_control.param naming a missing parameter',
      [route('/r/{room}/notify', ['POST'], { flood_control: { limit: 1, window_s: 1, param: 'rooom' } })],
      ['warning flood_param_missing 0 /r/{room}/notify'],
      /flood_control\.param "rooom", but its path parameters are \{room\}, so flood control cannot tell recipients apart/,
    ],
    [
      'auth settings on a public route',
      [route('/p', ['GET'], { public: true, client_types: ['user'] })],
      ['warning public_with_auth 0 /p'],
      /is public, so no token is checked and scopes, client_types have no effect/,
    ],
    [
      'a literal with ";"',
      [route('/files;v2/{name}', ['GET'])],
      ['warning semicolon_literal 0 /files;v2/{name}'],
      /has ";" in the literal segment "files;v2"\. Requests with a raw ";" .* as %3B \("files%3Bv2"\)/,
    ],
  ];
  it.each(tables)('reports %s', (_name, routes, expected, message) => {
    const findings = analyzeRoutes(routes);
    expect(brief(findings)).toEqual(expected);
    expect(findings[0]!.message).toMatch(message);
  });

  const notShadowed: Array<[string, RouteConfig[]]> = [
    ['a wildcard that still owns deeper paths', [route('/a/*', ['GET']), route('/a/{x}', ['GET'])]],
    ['a wildcard whose specific siblings serve other methods', [route('/a/*', ['GET']), route('/a/{x}', ['POST']), route('/a/{x}/*', ['POST'])]],
    ['a wildcard more specific than its would-be shadows', [route('/a/b/*', ['GET']), route('/a/{x}', ['GET']), route('/a/{x}/*', ['GET'])]],
    ['a literal route next to a param route', [route('/a/b', ['GET']), route('/a/{x}', ['GET'])]],
    ['a param route next to a wildcard route', [route('/a/{x}', ['GET']), route('/*', ['GET'])]],
    ['a wildcard whose siblings only cover some literals', [route('/a/*', ['GET']), route('/a/b', ['GET']), route('/a/b/*', ['GET'])]],
  ];
  it.each(notShadowed)('does not report %s as shadowed', (_name, routes) => {
    expect(analyzeRoutes(routes)).toEqual([]);
  });

  it('treats a route without methods as shadowed only when every method is taken', () => {
    const all = [route('/n/*'), route('/n/{x}'), route('/n/{x}/*')];
    expect(brief(analyzeRoutes(all))).toEqual(['warning shadowed 0 /n/*']);
    // Specific routes serving only the standard methods leave the wildcard the other methods.
    const listed = [route('/n/*'), route('/n/{x}', ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']), route('/n/{x}/*', ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])];
    const findings = analyzeRoutes(listed);
    expect(brief(findings)).toEqual(['warning method_shadowed 0 /n/*']);
    expect(findings[0]!.message).toMatch(/never handles GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS \(except/);
  });

  it('does not count TRACE and CONNECT as served by a route without methods', () => {
    // The TRACE route shares the shape of a route without methods: no conflict, nothing shadowed.
    expect(analyzeRoutes([route('/t/*'), route('/t/*', ['TRACE'], { id: 'trace' }), route('/t/{x}', ['CONNECT'])])).toEqual([]);
    // Specific routes taking the seven named methods leave a route without methods only the rest.
    const named = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as HttpMethod[];
    const f = analyzeRoutes([route('/n/*'), route('/n/{x}', named), route('/n/{x}/*', named)]);
    expect(brief(f)).toEqual(['warning method_shadowed 0 /n/*']);
    expect(f[0]!.message).not.toMatch(/TRACE|CONNECT/);
  });

  it('labels the methods of a route for the listing', () => {
    expect(methodsLabel(null)).toBe('* (not TRACE, CONNECT)');
    expect(methodsLabel(new Set(['GET', 'HEAD']))).toBe('GET,HEAD');
    expect(methodsLabel(['TRACE'])).toBe('TRACE');
  });

  it('mentions fallback: authenticated when a route without scopes adds nothing to it', () => {
    const [f] = analyzeRoutes([route('/a', ['GET'], { scopes: undefined })], { fallback: 'authenticated' });
    expect(f!.message).toMatch(/any valid token can call it \(that is also what fallback: authenticated gives/);
  });

  it('collects every finding, sorted by route and errors first', () => {
    const findings = analyzeRoutes([
      route('/a', ['GET'], { scopes: undefined }),
      route('/a', ['GET'], { scopes: undefined, room_param: 'x' }),
      route('/b/{id}', ['GET'], { id: 'b', flood_control: { limit: 1, window_s: 1, param: 'room' } }),
      route('/c', ['GET'], { id: 'b' }),
    ]);
    expect(brief(findings)).toEqual([
      'warning no_scopes 0 /a',
      'error duplicate 1 /a',
      'warning no_scopes 1 /a',
      'warning room_param_missing 1 /a',
      'warning flood_param_missing 2 b',
      'error duplicate_id 3 b',
    ]);
    expect(findings[4]!.message).toMatch(/^Route "b" \(routes\[2\], path \/b\/\{id\}\)/);
  });
});

describe('analyzeRoutes shadow analysis agrees with matchRoute', () => {
  // Small random tables over a tiny alphabet; every path up to 5 segments is matched and the
  // routes that never win (or only win paths ending in "/") must be exactly the ones reported.
  const METHODS: Array<HttpMethod[] | undefined> = [['GET'], ['POST'], ['GET', 'POST'], undefined, ['TRACE']];
  const SEGMENTS = ['a', 'b', '{p}', '{q}', '*'];
  let seed = 42;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return Math.floor((seed / 2147483648) * n); // high bits: an LCG's low bits cycle fast
  };
  const randomPattern = (): string => {
    const len = 1 + rand(3);
    const segs: string[] = [];
    for (let i = 0; i < len; i++) {
      let s = SEGMENTS[rand(SEGMENTS.length)]!;
      if (s === '*' && i < len - 1) s = 'a';
      if (s.startsWith('{') && segs.includes(s)) s = s === '{p}' ? '{q}' : '{p}';
      if (s.startsWith('{') && segs.includes(s)) s = 'b';
      segs.push(s);
    }
    return `/${segs.join('/')}`;
  };
  const paths: string[] = [];
  const grow = (prefix: string[], depth: number) => {
    if (prefix.length) {
      paths.push(`/${prefix.join('/')}`);
      paths.push(`/${prefix.join('/')}/`);
    }
    if (depth === 0) return;
    for (const v of ['a', 'b', 'z']) grow([...prefix, v], depth - 1);
  };
  grow([], 5);
  paths.push('/');

  it('on 300 random tables', () => {
    let checked = 0;
    for (let t = 0; t < 300; t++) {
      const routes: RouteConfig[] = [];
      const n = 1 + rand(4);
      for (let i = 0; i < n; i++) routes.push(route(randomPattern(), METHODS[rand(METHODS.length)]));
      // Half the tables get a wildcard with a chain of more specific routes under the same
      // prefix: the shapes that can shadow it.
      if (rand(2) === 0) {
        const prefix = ['', '/a', '/{p}'][rand(3)]!;
        const q = prefix === '/{p}' ? '{q}' : '{p}';
        const specific = () => [['GET'], ['GET'], ['POST'], undefined][rand(4)] as HttpMethod[] | undefined;
        routes.push(route(`${prefix}/*`, METHODS[rand(METHODS.length)]));
        routes.push(route(`${prefix}/${q}`, specific()));
        if (rand(3) > 0) routes.push(route(`${prefix}/${q}/*`, specific()));
        else routes.push(route(`${prefix}/${q}/{r}`, specific()), route(`${prefix}/${q}/{r}/*`, specific()));
        routes.reverse();
      }
      let table;
      try {
        table = compileRoutes(routes);
      } catch {
        continue; // duplicates: nothing to compare
      }
      checked++;
      const findings = analyzeRoutes(routes);
      for (const r of table.routes) {
        const served = r.config.methods ? [...r.methods!] : ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'PROPFIND'];
        const listed = r.config.methods ?? served;
        const winsFor = new Set<string>();
        let winsAnything = false;
        for (const m of served) {
          for (const p of paths) {
            const res = matchRoute(table, m, p);
            if (res.kind === 'match' && res.route === r) {
              winsAnything = true;
              if (!p.endsWith('/')) winsFor.add(m);
            }
          }
        }
        const codes = findings.filter((f) => f.index === r.index && f.code.includes('shadowed')).map((f) => f.code);
        const label = `${JSON.stringify(routes.map((x) => [x.path, x.methods ?? '*']))} route ${r.index}`;
        if (winsFor.size === 0) {
          expect(codes, label).toEqual(['shadowed']);
          const f = findings.find((x) => x.index === r.index)!;
          expect(f.message.includes('only used for paths ending in'), label).toBe(winsAnything);
        } else if (listed.some((m) => !winsFor.has(m))) {
          expect(codes, label).toEqual(['method_shadowed']);
        } else {
          expect(codes, label).toEqual([]);
        }
      }
    }
    expect(checked).toBeGreaterThan(100);
  });
});
