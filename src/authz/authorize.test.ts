import { describe, expect, it } from 'vitest';
import type { RouteConfig } from '../config/schema.js';
import type { CompiledRoute, Principal } from '../types.js';
import { authorize, isNumericPathValue, roomMatches } from './authorize.js';

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

  // SPEC §3: a path value made only of digits names a room id, never a room name.
  const roomCases: Array<[string, Partial<Principal>, string, string | null]> = [
    ['a digits-only room name does not reach the room with that id', { clientType: 'room', room: '7', roomName: '42' }, '42', 'room_forbidden'],
    ['a digits-only room name without a room id reaches nothing numeric', { clientType: 'room', roomName: '42' }, '42', 'room_forbidden'],
    ['a numeric room id still matches its own digits', { clientType: 'room', room: '42', roomName: '42' }, '42', null],
    ['a zero-padded path is not the room id', { clientType: 'room', room: '42' }, '042', 'room_forbidden'],
    ['a signed path value is not the room id', { clientType: 'room', room: '42' }, '+42', 'room_forbidden'],
    ['a zero-padded room name is compared as a number', { clientType: 'room', room: '7', roomName: '042' }, '042', 'room_forbidden'],
    ['a "+42" room name is compared as a number', { clientType: 'room', room: '7', roomName: '+42' }, '+42', 'room_forbidden'],
    ['a "-1" room name is compared as a number', { clientType: 'room', room: '7', roomName: '-1' }, '-1', 'room_forbidden'],
    ['a room name of fullwidth digits is compared as a number', { clientType: 'room', room: '7', roomName: '４２' }, '４２', 'room_forbidden'],
    ['a room name of Arabic-Indic digits is compared as a number', { clientType: 'room', room: '7', roomName: '٤٢' }, '٤٢', 'room_forbidden'],
    ['a "4_2" room name is compared as a number', { clientType: 'room', room: '7', roomName: '4_2' }, '4_2', 'room_forbidden'],
    ['a room name with digits and letters is still a name', { clientType: 'room', room: '7', roomName: 'ops42' }, 'ops42', null],
    ['a room name like "42a" is still a name', { clientType: 'room', room: '7', roomName: '42a' }, '42a', null],
    ['a room name "1.5" is still a name', { clientType: 'room', room: '7', roomName: '1.5' }, '1.5', null],
    ['a room name is compared exactly (case)', { clientType: 'room', room: '7', roomName: 'Ops' }, 'ops', 'room_forbidden'],
    ['a room name is compared exactly (spaces)', { clientType: 'room', room: '7', roomName: 'Ops' }, 'Ops ', 'room_forbidden'],
    ['a non-numeric room id matches exactly', { clientType: 'room', room: 'abc' }, 'abc', null],
    ['an empty path value matches nothing', { clientType: 'room', room: '7', roomName: 'ops' }, '', 'room_forbidden'],
    ['a user token with only a room name is bound by it', { clientType: 'user', roomName: 'ops' }, 'dev', 'room_forbidden'],
  ];
  it.each(roomCases)('%s', (_name, principal, value, expected) => {
    const denied = authorize(route({ room_param: 'room' }), p(principal), { room: value });
    expect(denied?.code ?? null).toBe(expected);
    expect(roomMatches(p(principal), value)).toBe(expected === null);
  });

  it('says why a numeric room name was not used, without any token text', () => {
    const denied = authorize(route({ room_param: 'room' }), p({ clientType: 'room', room: '7', roomName: '42' }), { room: '42' });
    expect(denied?.detail.why).toContain('numeric path value is compared with the room id only');
    expect(denied?.detail.room).toBe('42');
  });

  it.each([
    ['42', true],
    ['0', true],
    ['042', true],
    ['+42', true],
    ['-42', true],
    [' 42 ', true],
    ['4_2', true],
    ['４２', true],
    ['42a', false],
    ['4__2', false],
    ['_42', false],
    ['1.5', false],
    ['1e3', false],
    ['', false],
    ['+', false],
    ['ops', false],
  ])('isNumericPathValue(%j) → %s', (value, expected) => {
    expect(isNumericPathValue(value)).toBe(expected);
  });

  it('names the route scopes in HipChat wording on scope_insufficient', () => {
    const denied = authorize(route({ scopes: ['view_group', 'view_room'] }), p({}), {});
    expect(denied?.detail.scopes).toEqual(['view_group', 'view_room']);
    expect(denied?.detail.allScopes).toBeUndefined();
  });
});

