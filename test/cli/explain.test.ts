/**
 * `scopegate explain` (SPEC §6) through the built CLI: for every kind of decision, the status and
 * body explain predicts offline are exactly what the running gateway answers for the same request
 * (and, for forwarded requests, the gateway forwards to the path explain predicted). The token
 * never appears in explain's output.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway.js';
import { runCli } from '../helpers/process.js';
import { hsToken, nowS, tempDir, type TempDir } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { rawRequest } from '../helpers/http.js';

function yaml(upstream: string, extra = ''): string {
  return baseConfig({
    upstream,
    extra: `admin: { enabled: false }\n${extra}`,
    routes: `  - path: /v2/capabilities
    public: true
  - id: send-room-notification
    path: /v2/room/{room_id_or_name}/notification
    methods: [POST]
    scopes: [send_notification]
    client_types: [group, room, user]
    room_param: room_id_or_name
  - id: get-room
    path: /v2/room/{room_id_or_name}
    methods: [GET]
    scopes: [view_group, view_room]
    client_types: [group, room, user]
    room_param: room_id_or_name
  - id: get-all-rooms
    path: /v2/room
    methods: [GET]
    scopes: [view_group, view_room]
    client_types: [group, user]
  - id: create-room
    path: /v2/room
    methods: [POST]
    scopes: [manage_rooms]
    client_types: [group, user]`,
  });
}

interface Claims {
  client_type?: string;
  scope?: string;
  room_id?: string;
  aud?: string;
  exp?: number;
  iss?: string;
}

function token(c: Claims = {}, secret = TEST_SECRET): Promise<string> {
  return hsToken(secret, { iss: 'scopegate-test', aud: 'api', iat: nowS(), exp: nowS() + 3600, jti: `j-${Math.random()}`, ...c });
}

const user = (scope = 'view_group send_notification manage_rooms') => token({ client_type: 'user', scope });
const room42 = () => token({ client_type: 'room', scope: 'send_notification view_room', room_id: '42' });

interface Explained {
  allowed: boolean;
  decision: string;
  steps: Array<{ step: string; ok: boolean; detail: string }>;
  response: { status: number; reason?: string; body: unknown; headers: Record<string, string> } | null;
  upstream?: { name: string; pathAndQuery: string };
}


let up: Upstream;
let dir: TempDir;
let gw: TestGateway;
let gwFallback: TestGateway;
let configFile: string;
let fallbackFile: string;

beforeAll(async () => {
  up = await startUpstream();
  dir = await tempDir();
  const text = yaml(up.url);
  const fallbackText = yaml(up.url, 'fallback: authenticated');
  configFile = await dir.write('gateway.yaml', text);
  fallbackFile = await dir.write('fallback.yaml', fallbackText);
  gw = await startTestGateway(text, { admin: false });
  gwFallback = await startTestGateway(fallbackText, { admin: false });
});

afterAll(async () => {
  await gw?.close();
  await gwFallback?.close();
  await up?.close();
  await dir?.cleanup();
});

async function explainJson(file: string, method: string, url: string, tok?: string): Promise<{ code: number; r: Explained; raw: string }> {
  const args = ['explain', '--config', file, '--json', ...(tok !== undefined ? ['--token', tok] : []), method, url];
  const res = await runCli(args);
  expect(res.stderr).toBe('');
  return { code: res.code, r: JSON.parse(res.stdout) as Explained, raw: res.stdout + res.stderr };
}

// [name, method, url, token factory, expected status, expected reason or decision, fallback config?]
type Case = [string, string, string, (() => Promise<string>) | null, number, string, boolean?];

const cases: Case[] = [
  ['bad path (encoded dot segment)', 'GET', '/v2/room/%2e%2e/x', user, 400, 'bad_request'],
  ['bad path (encoded slash)', 'GET', '/v2/room/a%2Fb', user, 400, 'bad_request'],
  ['unknown path', 'GET', '/v2/nothing/here', user, 404, 'route_not_found'],
  ['known path, wrong method', 'DELETE', '/v2/room', user, 405, 'method_not_allowed'],
  ['missing token', 'GET', '/v2/room', null, 401, 'token_missing'],
  ['expired token', 'GET', '/v2/room', () => token({ client_type: 'user', scope: 'view_group', exp: nowS() - 3600 }), 401, 'token_expired'],
  ['bad signature', 'GET', '/v2/room', () => token({ client_type: 'user', scope: 'view_group' }, 'another-secret-0123456789abcdef-xyz'), 401, 'signature_invalid'],
  ['wrong audience', 'GET', '/v2/room', () => token({ client_type: 'user', scope: 'view_group', aud: 'other' }), 401, 'audience_mismatch'],
  ['client type not allowed', 'GET', '/v2/room', room42, 403, 'client_type_forbidden'],
  ['scope missing', 'GET', '/v2/room', () => user('send_notification'), 403, 'scope_insufficient'],
  ["room token on another room's route", 'POST', '/v2/room/43/notification', room42, 403, 'room_forbidden'],
  ['auth_test probe', 'POST', '/v2/room/42/notification?auth_test=true', room42, 202, 'auth_test'],
  ['allowed room token, forwarded', 'POST', '/v2/room/42/notification?x=1', room42, 200, 'forward'],
  ['allowed user token, forwarded', 'GET', '/v2/room?max=5', () => user(), 200, 'forward'],
  ['public route without a token', 'GET', '/v2/capabilities?v=1', null, 200, 'public'],
  ['fallback: any valid token forwarded', 'GET', '/v1/legacy/thing?a=b', () => user('nothing'), 200, 'forward', true],
  ['fallback: still needs a token', 'GET', '/v1/legacy/thing', null, 401, 'token_missing', true],
];

const send = (base: string, method: string, path: string, tok?: string) =>
  rawRequest(base, method, path, tok ? { authorization: `Bearer ${tok}` } : {});

describe('scopegate explain predicts what the gateway answers', () => {
  it.each(cases)('%s', async (_name, method, url, make, status, what, fallback) => {
    const tok = make ? await make() : undefined;
    const file = fallback ? fallbackFile : configFile;
    const { code, r, raw } = await explainJson(file, method, url, tok);
    const live = await send((fallback ? gwFallback : gw).url, method, url, tok);
    if (tok) expect(raw).not.toContain(tok);

    expect(live.status).toBe(status);
    if (status >= 400) {
      expect(code).toBe(1);
      expect(r.allowed).toBe(false);
      expect(r.response?.reason).toBe(what);
      expect(r.response?.status).toBe(live.status);
      expect(r.response?.body).toEqual(JSON.parse(live.body));
      for (const h of ['www-authenticate', 'allow']) expect(r.response?.headers[h]).toBe(live.headers[h]);
    } else if (status === 202) {
      expect(code).toBe(0);
      expect(r.decision).toBe('auth_test');
      expect(r.response?.status).toBe(202);
      expect(r.response?.body).toEqual(JSON.parse(live.body));
    } else {
      expect(code).toBe(0);
      expect(r.allowed).toBe(true);
      expect(r.decision).toBe(what);
      expect(r.response).toBeNull();
      const echoed = JSON.parse(live.body) as { url: string; method: string };
      expect(echoed.method).toBe(method);
      expect(r.upstream?.pathAndQuery).toBe(echoed.url);
    }
  });

  it('predicts the forwarded path of a query token without the token, and never shows it', async () => {
    const tok = await room42();
    const url = `/v2/room/42/notification?auth_token=${tok}&x=1`;
    const { code, r, raw } = await explainJson(configFile, 'POST', url);
    const live = await send(gw.url, 'POST', url);
    expect(code).toBe(0);
    expect(live.status).toBe(200);
    expect(r.upstream?.pathAndQuery).toBe((JSON.parse(live.body) as { url: string }).url);
    expect(r.upstream?.pathAndQuery).toBe('/v2/room/42/notification?x=1');
    expect(r.steps.find((s) => s.step === 'token')?.detail).toMatch(/^token from query/);
    expect(raw).not.toContain(tok);
  });
});

describe('scopegate explain output', () => {
  it('walks every step of an allowed request in text form', async () => {
    const tok = await room42();
    const res = await runCli(['explain', '--config', configFile, '--token', tok, 'POST', '/v2/room/42/notification']);
    expect(res.code).toBe(0);
    for (const step of ['path_safety', 'route', 'token', 'verify', 'client_type', 'scopes', 'room', 'proxy']) {
      expect(res.stdout).toMatch(new RegExp(`✓ ${step}\\b`));
    }
    expect(res.stdout).toMatch(/matched send-room-notification .* room_id_or_name="42"/);
    expect(res.stdout).toMatch(/selects issuer local/);
    expect(res.stdout).toMatch(/token holds \[send_notification view_room\]; route needs any one of \[send_notification\]/);
    expect(res.stdout).toMatch(/ALLOWED: forwarded to upstream default as \/v2\/room\/42\/notification/);
  });

  it('says why the less specific route lost', async () => {
    const dir2 = await tempDir();
    try {
      const file = await dir2.write(
        'w.yaml',
        yaml(up.url).replace('routes:\n', 'routes:\n  - { id: catch-all, path: /v2/room/*, methods: [GET], scopes: [view_group] }\n'),
      );
      const res = await runCli(['explain', '--config', file, '--token', await user(), 'GET', '/v2/room/7']);
      expect(res.code).toBe(0);
      expect(res.stdout).toMatch(/matched get-room .*catch-all \(\/v2\/room\/\*\) also matches but is less specific/);
    } finally {
      await dir2.cleanup();
    }
  });

  it('names the failing step and the answer of a denied request in text form', async () => {
    const res = await runCli(['explain', '--config', configFile, '--token', await user('send_notification'), 'GET', '/v2/room']);
    expect(res.code).toBe(1);
    expect(res.stdout).toMatch(/✗ scopes +token holds \[send_notification\]; route needs any one of \[view_group view_room\]/);
    expect(res.stdout).toMatch(/DENIED: 403 scope_insufficient/);
    expect(res.stdout).toContain(`This action requires one of the following scopes: [u'view_group', u'view_room']`);
  });

  const leakCases: Array<[string, () => Promise<string>]> = [
    ['a valid token', room42],
    ['a token with a bad signature', () => token({ client_type: 'room', room_id: '42' }, 'another-secret-0123456789abcdef-xyz')],
    ['an expired token', () => token({ client_type: 'room', room_id: '42', exp: nowS() - 7200 })],
    ['garbage that is no JWT', async () => 'not-a-jwt-but-a-secret-value-123456'],
  ];
  it.each(leakCases)('never prints %s (text and --json)', async (_name, make) => {
    const tok = await make();
    for (const json of [false, true]) {
      const res = await runCli(['explain', '--config', configFile, ...(json ? ['--json'] : []), '--token', tok, 'POST', '/v2/room/42/notification']);
      expect([0, 1]).toContain(res.code);
      expect(res.stdout.length).toBeGreaterThan(0);
      expect(res.stdout + res.stderr).not.toContain(tok);
    }
  });

  it('reads the token from --token-file, and from stdin with --token-file -', async () => {
    const tok = await room42();
    const file = await dir.write('token.txt', `${tok}\n`);
    const fromFile = await runCli(['explain', '--config', configFile, '--token-file', file, 'POST', '/v2/room/42/notification']);
    expect(fromFile.code).toBe(0);
    expect(fromFile.stdout).toMatch(/✓ verify +valid, issuer local/);
    expect(fromFile.stdout).not.toContain(tok);

    const fromStdin = await runCli(['explain', '--config', configFile, '--token-file', '-', 'POST', '/v2/room/43/notification'], { input: tok });
    expect(fromStdin.code).toBe(1);
    expect(fromStdin.stdout).toMatch(/DENIED: 403 room_forbidden/);
  });

  it('refuses --token together with --token-file, and a missing URL, as usage errors', async () => {
    const both = await runCli(['explain', '--config', configFile, '--token', 'abcdefgh', '--token-file', '/dev/null', 'GET', '/v2/room']);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--token or --token-file, not both/);
    const noUrl = await runCli(['explain', '--config', configFile, 'GET']);
    expect(noUrl.code).toBe(2);
    expect(noUrl.stderr).toMatch(/METHOD and URL/);
  });
});
