/**
 * `scopegate mint` (SPEC §3, §6) through the built CLI: each --kind preset gives the expected
 * claims and lifetime, prints only the token, and the token is accepted by a running gateway on a
 * route it should pass. Argument mistakes are usage errors.
 */
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, TEST_ISSUER, type TestGateway } from '../helpers/gateway.js';
import { runCli } from '../helpers/process.js';
import { tempDir, type TempDir } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const YEAR_S = 365 * 86_400;

function yaml(upstream: string): string {
  return `
realm: api
admin: { enabled: false }
shutdown_timeout_ms: 2000
upstreams:
  default: { url: ${upstream} }
tokens:
  issuers:
${TEST_ISSUER}
      max_token_age_s: ${YEAR_S}
rate_limit:
  enabled: true
  default: { limit: 500, window_s: 300 }
routes:
  - id: send-room-notification
    path: /v2/room/{room_id_or_name}/notification
    methods: [POST]
    scopes: [send_notification]
    client_types: [group, room, user]
    room_param: room_id_or_name
  - id: get-all-rooms
    path: /v2/room
    methods: [GET]
    scopes: [view_group, view_room]
    client_types: [group, user]
`;
}

let up: Upstream;
let gw: TestGateway;
let dir: TempDir;
let file: string;

beforeAll(async () => {
  up = await startUpstream();
  dir = await tempDir();
  const text = yaml(up.url);
  file = await dir.write('gateway.yaml', text);
  gw = await startTestGateway(text, { admin: false });
});

afterAll(async () => {
  await gw?.close();
  await up?.close();
  await dir?.cleanup();
});

const mint = (...args: string[]) => runCli(['mint', '--config', file, '--issuer', 'local', ...args]);

// [kind, extra args, client_type, scopes, lifetime s, request the token should pass]
const kinds: Array<[string, string[], string, string, number, [string, string]]> = [
  ['addon', [], 'group', 'send_notification view_group view_room', 3600, ['GET', '/v2/room']],
  ['user', [], 'user', 'view_group view_room view_messages send_message send_notification', 3600, ['GET', '/v2/room']],
  ['personal', [], 'user', 'view_group view_room view_messages send_message send_notification', YEAR_S, ['GET', '/v2/room']],
  ['room-notification', ['--room', '42'], 'room', 'send_notification', YEAR_S, ['POST', '/v2/room/42/notification']],
];

describe('scopegate mint --kind', () => {
  it.each(kinds)('%s: prints one token with the preset claims, which the gateway accepts', async (kind, extra, clientType, scope, lifetime, [method, path]) => {
    const r = await mint('--kind', kind, '--sub', 'alice', ...extra);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$/);
    const token = r.stdout.trim();
    const c = decodeJwt(token);
    expect(c).toMatchObject({ iss: 'scopegate-test', aud: 'api', sub: 'alice', client_type: clientType, scope });
    expect(c.exp! - c.iat!).toBe(lifetime);
    expect(typeof c.jti).toBe('string');
    if (kind === 'room-notification') expect(c.room_id).toBe('42');
    else expect(c.room_id).toBeUndefined();

    const res = await fetch(`${gw.url}${path}`, { method, headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { url: string }).url).toBe(path);
  });

  it('lets --scopes and --ttl override the preset', async () => {
    const r = await mint('--kind', 'personal', '--scopes', 'view_group', '--ttl', '30d');
    expect(r.code).toBe(0);
    const c = decodeJwt(r.stdout.trim());
    expect(c.scope).toBe('view_group');
    expect(c.exp! - c.iat!).toBe(30 * 86_400);
  });

  it('refuses a room-notification token without --room, saying so', async () => {
    const r = await mint('--kind', 'room-notification');
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/--kind room-notification needs --room/);
  });

  it('refuses an unknown --kind with exit 2 and the usage', async () => {
    const r = await mint('--kind', 'bot');
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/--kind must be one of addon, user, personal, room-notification/);
    expect(r.stderr).toMatch(/Usage:\n/);
  });
});
