import { describe, expect, it } from 'vitest';
import type { RouteConfig } from '../config/schema.js';
import type { CompiledRoute, Principal } from '../types.js';
import { authorize, isAuthTest } from './authorize.js';

function route(config: Partial<RouteConfig>): CompiledRoute {
  const c = { path: '/v2/room/{room}', public: false, ...config } as RouteConfig;
  return { id: c.id ?? c.path, config: c, methods: null, params: ['room'], upstream: 'default', index: 0 };
}
const p = (over: Partial<Principal>): Principal => ({ issuerName: 'local', clientType: 'user', scopes: [], ...over });

describe('authorize', () => {
  const cases: Array<[string, Partial<RouteConfig>, Partial<Principal>, Record<string, string>, string | null]> = [
    ['allows a listed client type with one of the scopes', { client_types: ['group', 'user'], scopes: ['view_group', 'view_room'] }, { scopes: ['view_room'] }, {}, null],
    ['refuses a client type the route does not list', { client_types: ['user'], scopes: ['a'] }, { clientType: 'group', scopes: ['a'] }, {}, 'client_type_forbidden'],
    ['treats oauth as any of group, room, user', { client_types: ['oauth'] }, { clientType: 'room', room: '1' }, { room: '1' }, null],
    ['refuses an unknown client type even for oauth', { client_types: ['oauth'] }, { clientType: 'device' }, {}, 'client_type_forbidden'],
    ['refuses a token without a client type', {}, { clientType: '' }, {}, 'client_type_forbidden'],
    ['checks client type before scopes', { client_types: ['user'], scopes: ['x'] }, { clientType: 'group' }, {}, 'client_type_forbidden'],
    ['refuses when no listed scope is held', { scopes: ['view_group', 'view_room'] }, { scopes: ['send_notification'] }, {}, 'scope_insufficient'],
    ['scopes_all needs every scope', { scopes_all: ['admin_group', 'view_group'] }, { scopes: ['admin_group'] }, {}, 'scope_insufficient'],
    ['scopes_all passes with every scope', { scopes_all: ['admin_group', 'view_group'] }, { scopes: ['view_group', 'admin_group'] }, {}, null],
    ['binds a room token to its room id', { room_param: 'room' }, { clientType: 'room', room: '42' }, { room: '42' }, null],
    ['binds a room token to its room name', { room_param: 'room' }, { clientType: 'room', room: '42', roomName: 'ops' }, { room: 'ops' }, null],
    ['rejects a room token on another room', { room_param: 'room' }, { clientType: 'room', room: '42' }, { room: '7' }, 'room_forbidden'],
    ['rejects a room client without any room claim on a room route', { room_param: 'room' }, { clientType: 'room' }, { room: '7' }, 'room_forbidden'],
    ['binds a user token that carries a room claim', { room_param: 'room' }, { clientType: 'user', room: '42' }, { room: '7' }, 'room_forbidden'],
    ['does not bind an unbound user token', { room_param: 'room' }, { clientType: 'user' }, { room: '7' }, null],
    ['lets a room token use a route without room_param', {}, { clientType: 'room', room: '42' }, {}, null],
  ];
  it.each(cases)('%s', (_name, cfg, principal, params, expected) => {
    const denied = authorize(route(cfg), p(principal), params);
    expect(denied?.code ?? null).toBe(expected);
  });

  it('names the route scopes in HipChat wording on scope_insufficient', () => {
    const denied = authorize(route({ scopes: ['view_group', 'view_room'] }), p({}), {});
    expect(denied?.detail.scopes).toEqual(['view_group', 'view_room']);
    expect(denied?.detail.allScopes).toBeUndefined();
  });
});

describe('isAuthTest', () => {
  it.each([
    ['auth_test=true', true],
    ['auth_test=TRUE', true],
    ['a=1&auth_test=True&b=2', true],
    ['auth%5Ftest=true', true],
    ['auth_test=false', false],
    ['auth_test=1', false],
    ['auth_test', false],
    ['xauth_test=true', false],
    ['', false],
  ])('%s → %s', (q, expected) => {
    expect(isAuthTest(q)).toBe(expected);
  });
});
