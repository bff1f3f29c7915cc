/**
 * SPEC §1–3 and §5 through real sockets: a real echo upstream, tokens minted with jose, the real
 * gateway on 127.0.0.1:0. Each test asserts the status, the exact body where SPEC gives it, the
 * headers, and what the upstream saw (or that it saw nothing).
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway.js';
import { hsToken, unsecuredToken, craftToken } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { rawRequest as raw } from '../helpers/http.js';

const now = () => Math.floor(Date.now() / 1000);
function claims(over: Record<string, unknown> = {}) {
  return { iss: 'scopegate-test', aud: 'api', sub: 'alice', iat: now(), exp: now() + 600, jti: `t-${Math.random()}`, client_type: 'user', scope: 'view_group view_room', ...over };
}
const mint = (over: Record<string, unknown> = {}) => hsToken(TEST_SECRET, claims(over));

const AUTH_TEST_202 = { success: { code: 202, message: 'This auth_token has access to use this method.', type: 'Accepted' } };


let up: Upstream;
let gw: TestGateway;

beforeAll(async () => {
  up = await startUpstream();
  gw = await startTestGateway(baseConfig({ upstream: up.url }));
});
afterAll(async () => {
  await gw.close();
  await up.close();
});
beforeEach(() => {
  up.requests.length = 0;
});

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

describe('token extraction (SPEC 1.3)', () => {
  it('forwards a request with a valid Bearer token', async () => {
    const t = await mint();
    const res = await raw(gw.url, 'GET', '/v2/room/42', bearer(t));
    expect(res.status).toBe(200);
    expect(up.requests).toHaveLength(1);
    expect(up.requests[0]!.url).toBe('/v2/room/42');
  });

  it('accepts the scheme in any case', async () => {
    const t = await mint();
    const res = await raw(gw.url, 'GET', '/v2/room/42', { authorization: `bEaReR ${t}` });
    expect(res.status).toBe(200);
  });

  it('accepts the token in the auth_token query parameter and strips it before forwarding', async () => {
    const t = await mint();
    const res = await raw(gw.url, 'GET', `/v2/room/42?expand=items.user&auth_token=${t}&max-results=5`);
    expect(res.status).toBe(200);
    expect(up.requests[0]!.url).toBe('/v2/room/42?expand=items.user&max-results=5');
    expect(up.requests[0]!.headers.authorization).toBe(`Bearer ${t}`);
  });

  it('answers 401 token_missing with HipChat wording and a bare challenge when no token is sent', async () => {
    const res = await raw(gw.url, 'GET', '/v2/room/42');
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body)).toEqual({ error: { code: 401, message: 'Authenticated requests only.', type: 'Unauthorized', reason: 'token_missing' } });
    expect(res.headers['www-authenticate']).toBe('Bearer realm="api"');
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(up.requests).toHaveLength(0);
  });

  it('answers 400 token_conflict when header and query carry different tokens', async () => {
    const [a, b] = [await mint(), await mint()];
    const res = await raw(gw.url, 'GET', `/v2/room/42?auth_token=${b}`, bearer(a));
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body).error.reason).toBe('token_conflict');
    expect(res.headers['www-authenticate']).toBe('Bearer realm="api", error="invalid_request"');
    expect(up.requests).toHaveLength(0);
  });

  it('accepts the same token in header and query', async () => {
    const t = await mint();
    const res = await raw(gw.url, 'GET', `/v2/room/42?auth_token=${t}`, bearer(t));
    expect(res.status).toBe(200);
  });

  it('answers token_conflict for a repeated query token or a repeated Authorization header', async () => {
    const [a, b] = [await mint(), await mint()];
    const q = await raw(gw.url, 'GET', `/v2/room/42?auth_token=${a}&auth_token=${b}`);
    expect(JSON.parse(q.body).error.reason).toBe('token_conflict');
    const h = await raw(gw.url, 'GET', '/v2/room/42', { authorization: [`Bearer ${a}`, `Bearer ${b}`] });
    expect(h.status).toBe(400);
    expect(JSON.parse(h.body).error.reason).toBe('token_conflict');
    expect(up.requests).toHaveLength(0);
  });

  it('refuses an oversized token without echoing it', async () => {
    const huge = 'a'.repeat(9000);
    const res = await raw(gw.url, 'GET', '/v2/room/42', bearer(huge));
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body).error.reason).toBe('token_malformed');
    expect(res.body).not.toContain(huge.slice(0, 100));
  });
});

describe('verification (SPEC 1.4)', () => {
  const invalid = async (token: string, reason: string) => {
    const res = await raw(gw.url, 'GET', '/v2/room/42', bearer(token));
    expect(res.status).toBe(401);
    expect(JSON.parse(res.body)).toEqual({ error: { code: 401, message: 'Invalid OAuth session', type: 'Unauthorized', reason } });
    expect(res.headers['www-authenticate']).toBe('Bearer realm="api", error="invalid_token"');
    expect(res.body).not.toContain(token);
    expect(up.requests).toHaveLength(0);
  };

  it('rejects an expired token', async () => invalid(await mint({ exp: now() - 120 }), 'token_expired'));
  it('rejects a token not yet valid', async () => invalid(await mint({ nbf: now() + 600 }), 'token_not_yet_valid'));
  it('rejects a wrong signature', async () => invalid(await hsToken('another-secret-0123456789abcdef', claims()), 'signature_invalid'));
  it('rejects a wrong audience', async () => invalid(await mint({ aud: 'other' }), 'audience_mismatch'));
  it('rejects an unknown issuer', async () => invalid(await mint({ iss: 'evil' }), 'issuer_unknown'));
  it('rejects alg none', async () => invalid(unsecuredToken(claims()), 'algorithm_forbidden'));
  it('rejects an algorithm outside the allowlist', async () => invalid(await hsToken(TEST_SECRET, claims(), { alg: 'HS512' }), 'algorithm_forbidden'));
  it('rejects garbage', async () => invalid('not.a.jwt', 'token_malformed'));
  it('rejects a JWE-shaped or JSON-serialised token', async () => invalid(craftToken({ alg: 'HS256' }, claims()) + '.x.y', 'token_malformed'));
  it('requires exp by default', async () => {
    const { exp: _exp, ...rest } = claims();
    await invalid(await hsToken(TEST_SECRET, rest), 'token_malformed');
  });
});

describe('authorization (SPEC 1.5)', () => {
  it('answers 403 scope_insufficient in HipChat wording with an insufficient_scope challenge', async () => {
    const t = await mint({ scope: 'send_notification' });
    const res = await raw(gw.url, 'GET', '/v2/room/42', bearer(t));
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body)).toEqual({
      error: { code: 403, message: "This action requires one of the following scopes: [u'view_group', u'view_room']", type: 'Forbidden', reason: 'scope_insufficient' },
    });
    expect(res.headers['www-authenticate']).toBe('Bearer realm="api", error="insufficient_scope", scope="view_group view_room"');
    expect(up.requests).toHaveLength(0);
  });

  it('answers 403 client_type_forbidden to a group token on a users-only route', async () => {
    const t = await mint({ client_type: 'group', scope: 'send_message' });
    const res = await raw(gw.url, 'POST', '/v2/room/42/message', bearer(t));
    expect(res.status).toBe(403);
    const body = JSON.parse(res.body);
    expect(body.error.reason).toBe('client_type_forbidden');
    expect(body.error.message).toContain('group');
    expect(up.requests).toHaveLength(0);
  });

  it('answers 403 (not 401) to an authentic token whose client type no route allows', async () => {
    const t = await mint({ client_type: 'device' });
    const res = await raw(gw.url, 'GET', '/v2/room/42', bearer(t));
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body).error.reason).toBe('client_type_forbidden');
  });

  it('requires every scope on a scopes_all route', async () => {
    const one = await mint({ scope: 'admin_group' });
    const res = await raw(gw.url, 'GET', '/v2/admin/users', bearer(one));
    expect(JSON.parse(res.body).error.message).toBe("This action requires all of the following scopes: [u'admin_group', u'view_group']");
    const both = await mint({ scope: 'admin_group view_group' });
    expect((await raw(gw.url, 'GET', '/v2/admin/users/1', bearer(both))).status).toBe(200);
  });

  it('lets a room token notify its own room, by id and by name', async () => {
    const t = await mint({ client_type: 'room', scope: 'send_notification', room_id: 42, room_name: 'ops' });
    expect((await raw(gw.url, 'POST', '/v2/room/42/notification', bearer(t), '{"message":"hi"}')).status).toBe(200);
    expect((await raw(gw.url, 'POST', '/v2/room/ops/notification', bearer(t), '{}')).status).toBe(200);
    expect(up.requests.map((r) => r.url)).toEqual(['/v2/room/42/notification', '/v2/room/ops/notification']);
    expect(up.requests[0]!.body.toString()).toBe('{"message":"hi"}');
  });

  it("rejects a room token on another room's notification route", async () => {
    const t = await mint({ client_type: 'room', scope: 'send_notification', room_id: 42 });
    const res = await raw(gw.url, 'POST', '/v2/room/7/notification', bearer(t));
    expect(res.status).toBe(403);
    const body = JSON.parse(res.body);
    expect(body.error.reason).toBe('room_forbidden');
    expect(body.error.message).toContain("'7'");
    expect(up.requests).toHaveLength(0);
  });

  it('matches room names percent-decoded', async () => {
    const t = await mint({ client_type: 'room', scope: 'send_notification', room_id: 1, room_name: 'My Room' });
    expect((await raw(gw.url, 'POST', '/v2/room/My%20Room/notification', bearer(t))).status).toBe(200);
    expect(up.requests[0]!.url).toBe('/v2/room/My%20Room/notification');
  });

  it('lets a room client read history (oauth = any client type) only for its room', async () => {
    const t = await mint({ client_type: 'room', scope: 'view_messages', room_id: 5 });
    expect((await raw(gw.url, 'GET', '/v2/room/5/history', bearer(t))).status).toBe(200);
    expect((await raw(gw.url, 'GET', '/v2/room/6/history', bearer(t))).status).toBe(403);
  });
});

describe('auth_test (SPEC 1.6)', () => {
  it('answers 202 with exactly HipChat body and never contacts the upstream', async () => {
    const t = await mint({ client_type: 'room', scope: 'send_notification', room_id: 42 });
    const res = await raw(gw.url, 'POST', `/v2/room/42/notification?auth_test=true&auth_token=${t}`);
    expect(res.status).toBe(202);
    expect(res.body).toBe(JSON.stringify(AUTH_TEST_202));
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(up.requests).toHaveLength(0);
  });

  it('accepts the value in any case', async () => {
    const t = await mint();
    const res = await raw(gw.url, 'GET', '/v2/room/42?auth_test=TRUE', bearer(t));
    expect(res.status).toBe(202);
    expect(up.requests).toHaveLength(0);
  });

  it('gives the normal error for a token without access', async () => {
    const t = await mint({ scope: 'send_notification' });
    const res = await raw(gw.url, 'GET', '/v2/room/42?auth_test=true', bearer(t));
    expect(res.status).toBe(403);
    expect(JSON.parse(res.body).error.reason).toBe('scope_insufficient');
    expect(up.requests).toHaveLength(0);
  });

  it('forwards a request whose auth_test is not true, without the auth_test parameter', async () => {
    const t = await mint();
    const res = await raw(gw.url, 'GET', '/v2/room/42?auth_test=false&a=1', bearer(t));
    expect(res.status).toBe(200);
    expect(up.requests[0]!.url).toBe('/v2/room/42?a=1');
  });
});

describe('path safety and routing (SPEC 1.1–1.2)', () => {
  it.each([
    ['/v2/room/..%2F42'],
    ['/v2/room/a%2Fb'],
    ['/v2/room/a%5cb'],
    ['/v2/room/../admin/x'],
    ['/v2/room/%2e%2e/admin/x'],
    ['/v2/room/./42'],
    ['/v2/room/a%00b'],
    ['/v2/room/a\\b'],
  ])('rejects %s with 400 bad_request before anything else', async (path) => {
    const res = await raw(gw.url, 'GET', path);
    expect(res.status).toBe(400);
    const body = JSON.parse(res.body);
    expect(body.error.reason).toBe('bad_request');
    expect(res.headers['www-authenticate']).toBe('Bearer realm="api", error="invalid_request"');
    expect(up.requests).toHaveLength(0);
  });

  it('rejects a path longer than 8 KiB', async () => {
    const res = await raw(gw.url, 'GET', `/v2/room/${'x'.repeat(8200)}`);
    expect(res.status).toBe(400);
  });

  it('answers 404 route_not_found for an unknown path', async () => {
    const t = await mint();
    const res = await raw(gw.url, 'GET', '/v3/nothing', bearer(t));
    expect(res.status).toBe(404);
    expect(JSON.parse(res.body)).toEqual({ error: { code: 404, message: 'No route matches this path.', type: 'Not Found', reason: 'route_not_found' } });
    expect(up.requests).toHaveLength(0);
  });

  it('answers 405 with Allow for a known path and another method', async () => {
    const res = await raw(gw.url, 'DELETE', '/v2/room/42');
    expect(res.status).toBe(405);
    expect(res.headers.allow).toBe('GET, HEAD');
    expect(JSON.parse(res.body).error.reason).toBe('method_not_allowed');
  });

  it('serves HEAD through a GET route', async () => {
    const t = await mint();
    const res = await raw(gw.url, 'HEAD', '/v2/room/42', bearer(t));
    expect(res.status).toBe(200);
    expect(up.requests[0]!.method).toBe('HEAD');
  });

  it('forwards a public route without a token', async () => {
    const res = await raw(gw.url, 'GET', '/v2/capabilities');
    expect(res.status).toBe(200);
    expect(up.requests).toHaveLength(1);
  });

  it('prefers the most specific route whatever the file order', async () => {
    const t = await mint({ scope: 'send_message' });
    // /v2/room/{room}/message (users, send_message) must win over nothing else; /v2/room/{room} must not match it.
    const res = await raw(gw.url, 'POST', '/v2/room/42/message', bearer(t));
    expect(res.status).toBe(200);
  });

  it('forwards any valid token with fallback: authenticated, and still refuses a bad one', async () => {
    const gw2 = await startTestGateway(baseConfig({ upstream: up.url, extra: 'fallback: authenticated' }));
    try {
      const t = await mint({ scope: '' });
      expect((await raw(gw2.url, 'GET', '/anything/else?x=1', bearer(t))).status).toBe(200);
      expect(up.requests.at(-1)!.url).toBe('/anything/else?x=1');
      expect((await raw(gw2.url, 'GET', '/anything/else')).status).toBe(401);
    } finally {
      await gw2.close();
    }
  });
});

describe('forwarding (SPEC §5)', () => {
  it('forwards method, path, query and body byte for byte, minus auth_token', async () => {
    const t = await mint({ client_type: 'room', scope: 'send_notification', room_id: 42 });
    const body = JSON.stringify({ message: 'héllo', n: [1, 2, 3] });
    const res = await raw(gw.url, 'POST', `/v2/room/42/notification?b=%2Fx&a=1&a=2&auth_token=${t}&expand=items`, { 'content-type': 'application/json' }, body);
    expect(res.status).toBe(200);
    const r = up.requests[0]!;
    expect(r.method).toBe('POST');
    expect(r.url).toBe('/v2/room/42/notification?b=%2Fx&a=1&a=2&expand=items');
    expect(r.body.toString('utf8')).toBe(body);
    expect(r.headers['content-type']).toBe('application/json');
  });

  it('sets identity headers from the token and strips spoofed ones', async () => {
    const t = await mint({ sub: 'bob', client_type: 'room', scope: 'send_notification view_room', room_id: 42, jti: 'tok-1' });
    await raw(gw.url, 'GET', '/v2/room/42', { ...bearer(t), 'x-auth-subject': 'admin', 'X-Auth-Scopes': 'admin_group', 'x-auth-anything': '1' });
    const h = up.requests[0]!.headers;
    expect(h['x-auth-subject']).toBe('bob');
    expect(h['x-auth-client-type']).toBe('room');
    expect(h['x-auth-scopes']).toBe('send_notification view_room');
    expect(h['x-auth-room']).toBe('42');
    expect(h['x-auth-token-id']).toBe('tok-1');
    expect(h['x-auth-issuer']).toBe('scopegate-test');
    expect(h['x-auth-anything']).toBeUndefined();
  });

  it('passes client credentials through unchanged on a public route', async () => {
    await raw(gw.url, 'GET', '/v2/capabilities?auth_token=x&a=1', { authorization: 'Basic b2F1dGhJZDpzZWNyZXQ=' });
    expect(up.requests[0]!.headers.authorization).toBe('Basic b2F1dGhJZDpzZWNyZXQ=');
    expect(up.requests[0]!.url).toBe('/v2/capabilities?a=1');
  });

  it('strips spoofed identity headers on public routes too', async () => {
    await raw(gw.url, 'GET', '/v2/capabilities', { 'x-auth-subject': 'admin' });
    expect(up.requests[0]!.headers['x-auth-subject']).toBeUndefined();
  });

  it('adds X-Forwarded-* and X-Request-Id, keeping a valid incoming request id', async () => {
    const t = await mint();
    const res = await raw(gw.url, 'GET', '/v2/room/42', { ...bearer(t), 'x-request-id': 'req-123', 'x-forwarded-for': '10.0.0.1' });
    const h = up.requests[0]!.headers;
    expect(h['x-request-id']).toBe('req-123');
    expect(res.headers['x-request-id']).toBe('req-123');
    expect(h['x-forwarded-for']).toBe('10.0.0.1, 127.0.0.1');
    expect(h['x-forwarded-proto']).toBe('http');
    expect(h['x-forwarded-host']).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it('replaces an invalid request id with a UUID on gateway errors too', async () => {
    const res = await raw(gw.url, 'GET', '/v2/room/42', { 'x-request-id': 'bad id with spaces' });
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('drops hop-by-hop headers', async () => {
    const t = await mint();
    await raw(gw.url, 'GET', '/v2/room/42', { ...bearer(t), connection: 'keep-alive, x-secret-hop', 'x-secret-hop': '1', te: 'trailers', 'proxy-authorization': 'Basic eA==' });
    const h = up.requests[0]!.headers;
    expect(h['x-secret-hop']).toBeUndefined();
    expect(h['proxy-authorization']).toBeUndefined();
  });

  it('strips the token when forward_token is false', async () => {
    const gw2 = await startTestGateway(baseConfig({ upstream: up.url, tokens: '  forward_token: false' }));
    try {
      const t = await mint();
      await raw(gw2.url, 'GET', `/v2/room/42?auth_token=${t}`);
      await raw(gw2.url, 'GET', '/v2/room/42', bearer(t));
      expect(up.requests.map((r) => r.headers.authorization)).toEqual([undefined, undefined]);
      expect(up.requests[0]!.url).toBe('/v2/room/42');
    } finally {
      await gw2.close();
    }
  });

  it('passes upstream status, headers and body back with X-Request-Id', async () => {
    up.route('/v2/room/99', { kind: 'respond', status: 201, headers: { location: '/v2/room/99', 'x-custom': 'y' }, body: 'created' });
    const t = await mint();
    const res = await raw(gw.url, 'GET', '/v2/room/99', bearer(t));
    expect(res.status).toBe(201);
    expect(res.body).toBe('created');
    expect(res.headers.location).toBe('/v2/room/99');
    expect(res.headers['x-custom']).toBe('y');
    expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});
