/**
 * The configs we ship (config/*.yaml) must load and carry a clean route table, and the HipChat v2
 * table must grant what HipChat documented (shared/reference/hipchat-auth.md §6).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { allowedClientTypes } from '../../src/authz/authorize.js';
import { ERROR_CODES, ERRORS } from '../../src/errors.js';
import { loadConfigText, type LoadedConfig } from '../../src/config/load.js';
import { analyzeRoutes } from '../../src/routing/analyze-routes.js';
import { compileRoutes } from '../../src/routing/compile-routes.js';
import { matchRoute } from '../../src/routing/match-route.js';

const CONFIG_DIR = new URL('../../config/', import.meta.url);
/** Placeholders without a default get a dummy value; the rest keep their `:-default`. */
const ENV = { SCOPEGATE_HS_SECRET: 'test-only-secret-0123456789abcdef' };

const files = readdirSync(CONFIG_DIR).filter((f) => f.endsWith('.yaml') || f.endsWith('.yml')).sort();

function load(file: string): LoadedConfig {
  return loadConfigText(readFileSync(new URL(file, CONFIG_DIR), 'utf8'), { env: ENV, file });
}

describe('shipped configs', () => {
  it('include the HipChat v2 table and the example gateway config', () => {
    expect(files).toEqual(expect.arrayContaining(['gateway.yaml', 'hipchat-v2.yaml']));
  });

  it.each(files)('%s loads and its route table has no errors', (file) => {
    const { config } = load(file);
    const errors = analyzeRoutes(config.routes, { fallback: config.fallback }).filter((f) => f.severity === 'error');
    expect(errors).toEqual([]);
  });
});

describe('config/hipchat-v2.yaml', () => {
  const { config } = load('hipchat-v2.yaml');
  const table = compileRoutes(config.routes);

  function route(method: string, path: string) {
    const m = matchRoute(table, method, path);
    if (m.kind !== 'match') throw new Error(`${method} ${path}: ${m.kind}`);
    return m.route;
  }

  it('warns only where no scope is documented (sessions, global actions)', () => {
    const warnings = analyzeRoutes(config.routes, { fallback: config.fallback }).map((f) => `${f.code} ${f.route}`);
    expect(warnings.sort()).toEqual(
      [
        'no_scopes create-global-action',
        'no_scopes delete-global-action',
        'no_scopes delete-session',
        'no_scopes get-global-action',
        'no_scopes get-session',
      ].sort(),
    );
  });

  // [method, path, route id, scopes (any-of), allowed client types, room_param]
  const cases: Array<[string, string, string, string[], string[], string | undefined]> = [
    ['GET', '/v2/room', 'get-all-rooms', ['view_group', 'view_room'], ['group', 'user'], undefined],
    ['POST', '/v2/room', 'create-room', ['manage_rooms'], ['group', 'user'], undefined],
    ['GET', '/v2/room/42', 'get-room', ['view_group', 'view_room'], ['group', 'room', 'user'], 'room_id_or_name'],
    ['PUT', '/v2/room/42', 'update-room', ['admin_room'], ['group', 'user'], 'room_id_or_name'],
    ['DELETE', '/v2/room/Ops', 'delete-room', ['manage_rooms'], ['group', 'user'], 'room_id_or_name'],
    ['POST', '/v2/room/42/notification', 'send-room-notification', ['send_notification'], ['group', 'room', 'user'], 'room_id_or_name'],
    ['POST', '/v2/room/42/message', 'send-room-message', ['send_message'], ['user'], 'room_id_or_name'],
    ['POST', '/v2/room/42/reply', 'reply-to-message', ['send_message'], ['user'], 'room_id_or_name'],
    ['POST', '/v2/room/42/share/link', 'share-link-with-room', ['send_message'], ['user'], 'room_id_or_name'],
    ['GET', '/v2/room/42/history', 'view-room-history', ['view_messages'], ['group', 'room', 'user'], 'room_id_or_name'],
    ['GET', '/v2/room/42/history/latest', 'view-recent-room-history', ['view_messages'], ['group', 'room', 'user'], 'room_id_or_name'],
    ['PUT', '/v2/room/42/topic', 'set-topic', ['admin_room'], ['group', 'room', 'user'], 'room_id_or_name'],
    ['GET', '/v2/room/42/participant', 'get-all-participants', ['view_room'], ['group', 'room', 'user'], 'room_id_or_name'],
    ['GET', '/v2/room/42/member', 'get-all-members', ['view_room'], ['group', 'room', 'user'], 'room_id_or_name'],
    ['POST', '/v2/room/42/webhook', 'create-webhook', ['admin_room'], ['group', 'room', 'user'], 'room_id_or_name'],
    ['PUT', '/v2/room/42/extension/webhook/k1', 'create-room-extension-webhook', ['admin_room'], ['group', 'room'], 'room_id_or_name'],
    ['GET', '/v2/user', 'get-all-users', ['view_group'], ['group', 'user'], undefined],
    ['GET', '/v2/user/a@example.com', 'view-user', ['view_group'], ['group', 'user'], undefined],
    ['POST', '/v2/user/a@example.com/message', 'private-message-user', ['send_message'], ['user'], undefined],
    ['GET', '/v2/emoticon', 'get-all-emoticons', ['view_group'], ['group', 'room', 'user'], undefined],
    ['GET', '/v2/emoticon/shrug', 'get-emoticon', ['view_group'], ['group', 'room', 'user'], undefined],
    ['POST', '/v2/invite/user', 'invite-user', ['admin_group'], ['group', 'user'], undefined],
    ['PUT', '/v2/extension/action/k1', 'create-global-action', [], ['group'], undefined],
    ['GET', '/v2/oauth/token/abc', 'get-session', [], ['group', 'room', 'user'], undefined],
    ['DELETE', '/v2/oauth/token/abc', 'delete-session', [], ['group', 'room', 'user'], undefined],
  ];

  it.each(cases)('%s %s is %s with the reference scopes and client types', (method, path, id, scopes, types, roomParam) => {
    const r = route(method, path);
    expect(r.id).toBe(id);
    expect(r.config.public).toBe(false);
    expect(r.config.scopes ?? []).toEqual(scopes);
    expect(r.config.scopes_all).toBeUndefined();
    expect([...allowedClientTypes(r)].sort()).toEqual(types);
    expect(r.config.room_param).toBe(roomParam);
  });

  it.each([
    ['GET', '/v2/capabilities', 'capabilities'],
    ['POST', '/v2/oauth/token', 'generate-token'],
  ])('%s %s is public (%s)', (method, path, id) => {
    const r = route(method, path);
    expect(r.id).toBe(id);
    expect(r.config.public).toBe(true);
  });

  it('refuses room clients on user-only and group-wide listings', () => {
    for (const [method, path] of [
      ['GET', '/v2/user'],
      ['GET', '/v2/room'],
      ['POST', '/v2/room/42/message'],
      ['POST', '/v2/user/1/message'],
    ] as const) {
      expect(allowedClientTypes(route(method, path))).not.toContain('room');
    }
  });

  it('puts flood control of 30 per 60 s per recipient on the message-sending routes', () => {
    for (const [path, param] of [
      ['/v2/room/42/notification', 'room_id_or_name'],
      ['/v2/room/42/message', 'room_id_or_name'],
      ['/v2/user/1/message', 'id_or_email'],
    ] as const) {
      expect(route('POST', path).config.flood_control).toEqual({ limit: 30, window_s: 60, param });
    }
    expect(route('GET', '/v2/room/42').config.flood_control).toBeUndefined();
  });

  it('binds every route under /v2/room/{room_id_or_name} to the room', () => {
    const perRoom = table.routes.filter((r) => r.config.path.startsWith('/v2/room/{room_id_or_name}'));
    expect(perRoom.length).toBeGreaterThan(10);
    for (const r of perRoom) expect({ id: r.id, room_param: r.config.room_param }).toEqual({ id: r.id, room_param: 'room_id_or_name' });
  });

  it('gives every route a readable id', () => {
    for (const r of table.routes) expect(r.config.id, r.config.path).toMatch(/^[a-z][a-z0-9-]*$/);
  });

  it('serves HEAD through GET routes and answers 405 with the allowed methods otherwise', () => {
    expect(route('HEAD', '/v2/room/42/history').id).toBe('view-room-history');
    expect(matchRoute(table, 'PATCH', '/v2/room/42')).toEqual({ kind: 'method_not_allowed', allow: ['DELETE', 'GET', 'HEAD', 'PUT'] });
    expect(matchRoute(table, 'GET', '/v2/nothing-here')).toEqual({ kind: 'not_found' });
  });

  it('uses the local HS256 issuer with its secret from the environment', () => {
    const [issuer, ...others] = config.tokens.issuers;
    expect(others).toEqual([]);
    expect(issuer).toMatchObject({ name: 'local', algorithms: ['HS256'], secrets: [ENV.SCOPEGATE_HS_SECRET] });
  });
});

describe('docs/configuration.md', () => {
  it('its full example is a valid config', () => {
    const md = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
    const block = /## Full example\s+```yaml\n([\s\S]*?)```/.exec(md)?.[1];
    expect(block).toBeDefined();
    const { config } = loadConfigText(block!, { env: ENV });
    expect(config.tokens.issuers.map((i) => i.name)).toEqual(['local', 'idp']);
    expect(config.rate_limit).toMatchObject({ enabled: true, store: 'redis', default: { limit: 500, window_s: 300 } });
  });
});

describe('docs/errors.md', () => {
  const md = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  it.each(ERROR_CODES.map((c) => [c, ERRORS[c].status] as const))('lists %s with status %i', (code, status) => {
    expect(md).toContain(`| \`${code}\` | ${status} |`);
  });
});
