/**
 * The Hono middleware door (SPEC §8) in-process: a real Hono app driven with `app.request()`,
 * real tokens minted with jose (TEST_SECRET), a frozen clock. Every refusal is checked for its
 * status, envelope and headers AND for the handler not having run (a counter); every allowed
 * request for what the handler saw in `c.get('scopegate')`. The last block runs the same
 * requests through the proxy door (a real gateway and echo upstream) and demands the same
 * status, body and gateway headers from both doors.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Hono, type Context } from 'hono';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { scopegate, type ScopegatePrincipal } from '../../src/doors/hono/index.js';
import { baseConfig, startTestGateway, TEST_ISSUER, TEST_SECRET, type TestGateway } from '../helpers/gateway.js';
import { hsToken, testClock } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const T0 = Date.UTC(2030, 0, 1); // aligned to the 60 s window
const clock = testClock(T0 + 1_000);
const nowS = () => Math.floor(clock() / 1000);

const ROUTES = `  - path: /v2/capabilities
    public: true
  - id: get-room
    path: /v2/room/{room_id_or_name}
    methods: [GET]
    scopes: [view_group, view_room]
    client_types: [group, room, user]
    room_param: room_id_or_name
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
    client_types: [group, user]`;

const RATE_LIMIT = `rate_limit:
  store: memory
  default: { limit: 3, window_s: 60 }`;

/** The middleware's config: the proxy's file minus listen/admin/upstreams. */
const MIDDLEWARE_YAML = `realm: api
tokens:
  issuers:
${TEST_ISSUER}
      claims: { client_type: client_type, scopes: scope, room: room_id, room_name: room_name }
${RATE_LIMIT}
routes:
${ROUTES}
`;

let jti = 0;
function token(claims: Record<string, unknown> = {}): Promise<string> {
  return hsToken(TEST_SECRET, {
    iss: 'scopegate-test',
    aud: 'api',
    sub: 'user-1',
    client_type: 'user',
    scope: 'view_group send_notification',
    exp: nowS() + 3600,
    jti: `t-${++jti}`,
    ...claims,
  });
}

/** An app behind the middleware whose handlers count their runs and report what they saw. */
function makeApp(mw = scopegate({ configFile: writeConfig(), clock })) {
  const app = new Hono();
  const seen: Array<ScopegatePrincipal | undefined> = [];
  app.use('/v2/*', mw);
  const handle = (c: Context) => {
    const p = c.get('scopegate');
    seen.push(p);
    return c.json({ ok: true, subject: p?.subject ?? null }, 200, { 'x-app': 'yes' });
  };
  app.get('/v2/capabilities', handle);
  app.get('/v2/room', handle);
  app.get('/v2/room/:room', handle);
  app.post('/v2/room/:room/notification', handle);
  app.get('/v2/unlisted', handle);
  return { app, seen };
}

const dir = mkdtempSync(join(tmpdir(), 'sg-hono-'));
let fileSeq = 0;
function writeConfig(text = MIDDLEWARE_YAML): string {
  const f = join(dir, `config-${++fileSeq}.yaml`);
  writeFileSync(f, text);
  return f;
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
const json = async (r: Response) => JSON.parse(await r.text()) as { error: { code: number; message: string; type: string; reason: string } };

describe('Hono middleware, in-process', () => {
  let app: Hono;
  let seen: Array<ScopegatePrincipal | undefined>;
  beforeEach(() => {
    clock.set(T0 + 1_000);
    ({ app, seen } = makeApp());
  });

  it('lets an allowed request through with the principal in c.get("scopegate") and the rate-limit headers on the app response', async () => {
    const t = await token({ sub: 'alice', group_id: 'g1' });
    const res = await app.request('/v2/room/42', { headers: bearer(t) });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, subject: 'alice' });
    expect(res.headers.get('x-app')).toBe('yes');
    expect(res.headers.get('x-ratelimit-limit')).toBe('3');
    expect(res.headers.get('x-ratelimit-remaining')).toBe('2');
    expect(res.headers.get('x-ratelimit-reset')).toBe(String(T0 / 1000 + 60));
    expect(res.headers.get('ratelimit-policy')).toMatch(/q=3/);
    expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toEqual({
      subject: 'alice',
      clientType: 'user',
      scopes: ['view_group', 'send_notification'],
      issuer: 'scopegate-test',
      route: 'get-room',
      group: 'g1',
      tokenId: `t-${jti}`,
    });
    expect(Object.isFrozen(seen[0])).toBe(true);
  });

  it('gives a room token its room and room name, and lets it reach its own room by name', async () => {
    const t = await token({ client_type: 'room', room_id: '42', room_name: 'Ops', scope: 'view_room', sub: 'addon-1' });
    const res = await app.request('/v2/room/Ops', { headers: bearer(t) });
    expect(res.status).toBe(200);
    expect(seen[0]).toMatchObject({ clientType: 'room', room: '42', roomName: 'Ops', route: 'get-room', scopes: ['view_room'] });
  });

  it('keeps a valid incoming X-Request-Id', async () => {
    const res = await app.request('/v2/room/42', { headers: { 'x-request-id': 'req-abc.1' } });
    expect(res.status).toBe(401);
    expect(res.headers.get('x-request-id')).toBe('req-abc.1');
  });

  it('answers 401 token_missing with WWW-Authenticate and never runs the handler', async () => {
    const res = await app.request('/v2/room/42');
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="api"');
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await json(res)).toEqual({ error: { code: 401, message: 'Authenticated requests only.', type: 'Unauthorized', reason: 'token_missing' } });
    expect(seen).toHaveLength(0);
  });

  it('answers 401 Invalid OAuth session for a token signed with another secret, without echoing it', async () => {
    const t = await hsToken('another-secret-0123456789abcdef-xyz', { iss: 'scopegate-test', aud: 'api', sub: 'x', exp: nowS() + 60 });
    const res = await app.request('/v2/room/42', { headers: bearer(t) });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="api", error="invalid_token"');
    const body = await res.text();
    expect(JSON.parse(body).error.reason).toBe('signature_invalid');
    expect(body).not.toContain(t.split('.')[2]!);
    expect(seen).toHaveLength(0);
  });

  it('answers 403 scope_insufficient with HipChat wording and an insufficient_scope challenge', async () => {
    const t = await token({ scope: 'send_message' });
    const res = await app.request('/v2/room/42', { headers: bearer(t) });
    expect(res.status).toBe(403);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="api", error="insufficient_scope", scope="view_group view_room"');
    const b = await json(res);
    expect(b.error.message).toBe("This action requires one of the following scopes: [u'view_group', u'view_room']");
    expect(b.error.reason).toBe('scope_insufficient');
    // a refusal still spends budget (SPEC §4): its rate-limit headers say so
    expect(res.headers.get('x-ratelimit-remaining')).toBe('2');
    expect(seen).toHaveLength(0);
  });

  it("answers 403 room_forbidden for a room token on another room's route", async () => {
    const t = await token({ client_type: 'room', room_id: '42', scope: 'send_notification' });
    const res = await app.request('/v2/room/43/notification', { method: 'POST', headers: bearer(t) });
    expect(res.status).toBe(403);
    expect((await json(res)).error.reason).toBe('room_forbidden');
    expect(seen).toHaveLength(0);
  });

  it('answers 403 client_type_forbidden for a room token on a group/user route', async () => {
    const t = await token({ client_type: 'room', room_id: '42', scope: 'view_room' });
    const res = await app.request('/v2/room', { headers: bearer(t) });
    expect(res.status).toBe(403);
    expect((await json(res)).error.reason).toBe('client_type_forbidden');
    expect(seen).toHaveLength(0);
  });

  it('answers 429 with Retry-After and X-Ratelimit headers once the window is spent, without running the handler', async () => {
    const t = await token();
    for (let i = 0; i < 3; i++) expect((await app.request('/v2/room/42', { headers: bearer(t) })).status).toBe(200);
    clock.advance(10_000);
    const res = await app.request('/v2/room/42', { headers: bearer(t) });
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('49');
    expect(res.headers.get('x-ratelimit-limit')).toBe('3');
    expect(res.headers.get('x-ratelimit-remaining')).toBe('0');
    expect(res.headers.get('x-ratelimit-reset')).toBe(String(T0 / 1000 + 60));
    expect((await json(res)).error).toMatchObject({ code: 429, message: 'Rate limit exceeded', reason: 'rate_limited' });
    expect(seen).toHaveLength(3);
    // the next window is a fresh budget
    clock.set(T0 + 60_000);
    expect((await app.request('/v2/room/42', { headers: bearer(t) })).status).toBe(200);
  });

  it('answers auth_test=true with the exact 202, the current rate-limit headers, and never runs the handler', async () => {
    const t = await token();
    const res = await app.request('/v2/room/42?auth_test=true', { headers: bearer(t) });
    expect(res.status).toBe(202);
    expect(await res.text()).toBe('{"success":{"code":202,"message":"This auth_token has access to use this method.","type":"Accepted"}}');
    expect(res.headers.get('x-ratelimit-remaining')).toBe('3'); // read, not spent
    expect(seen).toHaveLength(0);
    const bad = await app.request('/v2/room/42?auth_test=1', { headers: bearer(t) });
    expect(bad.status).toBe(400);
    expect(seen).toHaveLength(0);
  });

  it('accepts the token in the auth_token query parameter', async () => {
    const t = await token({ sub: 'q-user' });
    const res = await app.request(`/v2/room/42?auth_token=${t}&x=1`);
    expect(res.status).toBe(200);
    expect(seen[0]?.subject).toBe('q-user');
  });

  it('runs a public route with no principal', async () => {
    const res = await app.request('/v2/capabilities');
    expect(res.status).toBe(200);
    expect(seen).toEqual([undefined]);
    expect(res.headers.get('x-ratelimit-limit')).toBeNull();
  });

  it('answers 404 route_not_found for a path the table does not list, even when the app has a handler for it', async () => {
    const t = await token();
    const res = await app.request('/v2/unlisted', { headers: bearer(t) });
    expect(res.status).toBe(404);
    expect((await json(res)).error.reason).toBe('route_not_found');
    expect(seen).toHaveLength(0);
  });

  it('answers 405 with Allow for a method the route does not serve', async () => {
    const t = await token();
    const res = await app.request('/v2/room/42', { method: 'DELETE', headers: bearer(t) });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD');
    expect(seen).toHaveLength(0);
  });

  it('answers 400 token_conflict for two Authorization values merged by the Fetch Headers class', async () => {
    const a = await token();
    const b = await token();
    const h = new Headers();
    h.append('authorization', `Bearer ${a}`);
    h.append('authorization', `Bearer ${b}`);
    expect(h.get('authorization')).toBe(`Bearer ${a}, Bearer ${b}`);
    const res = await app.request('/v2/room/42', { headers: h });
    expect(res.status).toBe(400);
    expect((await json(res)).error.reason).toBe('token_conflict');
    // the same token twice is still two tokens presented
    const same = await app.request('/v2/room/42', { headers: { authorization: `Bearer ${a}, Bearer ${a}` } });
    expect(same.status).toBe(400);
    expect(seen).toHaveLength(0);
  });

  it('answers 400 token_conflict for a header token and a different query token', async () => {
    const a = await token();
    const b = await token();
    const res = await app.request(`/v2/room/42?auth_token=${b}`, { headers: bearer(a) });
    expect(res.status).toBe(400);
    expect((await json(res)).error.reason).toBe('token_conflict');
    expect(seen).toHaveLength(0);
  });

  it('refuses an encoded slash or backslash in the path with 400 (spellings a WHATWG URL keeps)', async () => {
    const t = await token();
    for (const p of ['/v2/room/4%2F2', '/v2/room/4%5C2', '/v2/room/4%002']) {
      const res = await app.request(p, { headers: bearer(t) });
      expect(res.status, p).toBe(400);
      expect((await json(res)).error.reason).toBe('bad_request');
    }
    expect(seen).toHaveLength(0);
  });

  it('decides the path the app routes: dot segments, also encoded, are resolved by the URL before either sees them', async () => {
    const t = await token({ sub: 'dots' });
    // WHATWG URL parsing turns /v2/room/%2e%2e/room into /v2/room: the route table and Hono's
    // router both see /v2/room (get-all-rooms), never the room route with a ".." parameter.
    const res = await app.request('/v2/room/%2e%2e/room', { headers: bearer(t) });
    expect(res.status).toBe(200);
    expect(seen).toHaveLength(1);
    expect(seen[0]?.route).toBe('get-all-rooms');
  });

  it('matches a percent-encoded literal segment as the decoded route (as Hono routes it)', async () => {
    const t = await token();
    const res = await app.request('/v2/%72oom/42', { headers: bearer(t) });
    expect(res.status).toBe(200);
    expect(seen[0]?.route).toBe('get-room');
  });

  it('keeps the app response headers and adds the rate-limit headers to an immutable response', async () => {
    const a = new Hono();
    a.use('/v2/*', scopegate({ configFile: writeConfig(), clock }));
    a.get('/v2/room/:room', () => {
      const r = Response.redirect('https://example.test/elsewhere', 302); // immutable headers
      return r;
    });
    const res = await a.request('/v2/room/42', { headers: bearer(await token()) });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('https://example.test/elsewhere');
    expect(res.headers.get('x-ratelimit-remaining')).toBe('2');
  });

  it('adds the rate-limit headers to the error response of a handler that throws', async () => {
    const a = new Hono();
    a.use('/v2/*', scopegate({ configFile: writeConfig(), clock }));
    a.get('/v2/room/:room', () => {
      throw new Error('boom');
    });
    a.onError((_e, c) => c.text('app failed', 500));
    const res = await a.request('/v2/room/42', { headers: bearer(await token()) });
    expect(res.status).toBe(500);
    expect(await res.text()).toBe('app failed');
    expect(res.headers.get('x-ratelimit-limit')).toBe('3');
  });

  it('takes the config as an object', async () => {
    const a = new Hono();
    let ran = 0;
    a.use(
      '*',
      scopegate({
        realm: 'inline',
        tokens: { issuers: [{ name: 'local', issuer: 'scopegate-test', audience: 'api', algorithms: ['HS256'], secrets: [TEST_SECRET], claims: { scopes: 'scope' } }] },
        routes: [{ path: '/things/{id}', methods: ['GET'], scopes: ['view_group'] }],
        clock,
      }),
    );
    a.get('/things/:id', (c) => {
      ran++;
      return c.text(c.get('scopegate')?.route ?? '-');
    });
    const denied = await a.request('/things/1');
    expect(denied.status).toBe(401);
    expect(denied.headers.get('www-authenticate')).toBe('Bearer realm="inline"');
    expect(ran).toBe(0);
    const ok = await a.request('/things/1', { headers: bearer(await token()) });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe('/things/{id}');
    expect(ran).toBe(1);
  });

  it('answers 500 internal_error and tells onError once when a key file cannot be parsed on the first request', async () => {
    const pem = join(dir, 'not-a-key.pem');
    writeFileSync(pem, 'this is not a key');
    const errors: Error[] = [];
    const mw = scopegate({
      tokens: { issuers: [{ name: 'idp', algorithms: ['RS256'], public_key_file: pem }] },
      routes: [{ path: '/x', scopes: ['a'] }],
      onError: (e) => errors.push(e),
    });
    const a = new Hono();
    let ran = 0;
    a.use('*', mw);
    a.get('/x', (c) => (ran++, c.text('x')));
    for (let i = 0; i < 2; i++) {
      const res = await a.request('/x', { headers: bearer(await token()) });
      expect(res.status).toBe(500);
      expect((await json(res)).error.reason).toBe('internal_error');
    }
    expect(ran).toBe(0);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.name).toBe('ScopegateConfigError');
    expect(errors[0]!.message).toContain('tokens.issuers[0].public_key_file');
    await expect(mw.ready()).rejects.toThrow(/public_key_file/);
  });

  it('answers 401 token_revoked for a token the isRevoked option names, also after it was cached', async () => {
    const revoked = new Set<string>();
    const a = new Hono();
    let ran = 0;
    a.use('/v2/*', scopegate({ configFile: writeConfig(), clock, isRevoked: (id) => revoked.has(id) }));
    a.get('/v2/room/:room', (c) => (ran++, c.text('ok')));
    const t = await token({ jti: 'to-revoke' });
    expect((await a.request('/v2/room/42', { headers: bearer(t) })).status).toBe(200);
    revoked.add('to-revoke');
    const res = await a.request('/v2/room/42', { headers: bearer(t) });
    expect(res.status).toBe(401);
    expect((await json(res)).error).toMatchObject({ message: 'Invalid OAuth session', reason: 'token_revoked' });
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="api", error="invalid_token"');
    expect(ran).toBe(1);
  });

  it('never runs the handler, nor yields a principal, for arbitrary targets and Authorization values without a valid token', async () => {
    const valid = await token({ sub: 'the-one' });
    const seg = fc.stringMatching(/^[A-Za-z0-9%._~!$&'()*+,;=:@\\-]{0,12}$/);
    const target = fc.tuple(fc.array(seg, { maxLength: 4 }), fc.option(fc.stringMatching(/^[ -~]{0,30}$/), { nil: undefined })).map(
      ([segs, q]) => `/v2/${segs.join('/')}${q === undefined ? '' : `?${q}`}`,
    );
    const auth = fc.oneof(
      fc.constant(undefined),
      fc.stringMatching(/^[ -~]{0,60}$/),
      fc.stringMatching(/^[A-Za-z0-9._-]{0,40}$/).map((s) => `Bearer ${s}`),
      fc.constant(`Bearer ${valid}, Bearer x`),
      fc.constant(`Bearer ${valid.slice(0, -2)}`),
    );
    await fc.assert(
      fc.asyncProperty(target, auth, async (t, a) => {
        const before = seen.length;
        let res: Response;
        try {
          res = await app.request(t, a === undefined ? {} : { headers: { authorization: a } });
        } catch (e) {
          // the URL or header was rejected by the Fetch API itself, before the app: nothing ran
          expect(e).toBeInstanceOf(TypeError);
          return;
        }
        const ran = seen.slice(before);
        if (res.status < 400) {
          // only the public route may run without the valid token, and it carries no principal
          expect(new URL(t, 'http://h').pathname).toBe('/v2/capabilities');
          for (const p of ran) expect(p).toBeUndefined();
        } else {
          expect(ran).toHaveLength(0);
          // A target the URL parser normalises out of /v2/ ('/v2/..' is '/') never reaches the
          // middleware: Hono's own 404 answers it, not an envelope.
          if (!new URL(t, 'http://h').pathname.startsWith('/v2/')) return;
          const body = await res.text();
          expect(JSON.parse(body).error.code).toBe(res.status);
          expect(body).not.toContain(valid.split('.')[2]!);
          if (a && a.length >= 16) expect(body).not.toContain(a);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('Hono middleware and the proxy door give the same answer', () => {
  let upstream: Upstream;
  let gw: TestGateway;
  let app: Hono;
  beforeAll(async () => {
    clock.set(T0 + 1_000);
    upstream = await startUpstream();
    gw = await startTestGateway(baseConfig({ upstream: upstream.url, rateLimit: RATE_LIMIT, routes: ROUTES }), { clock, admin: false });
    ({ app } = makeApp());
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  const GATEWAY_HEADERS = ['content-type', 'www-authenticate', 'allow', 'retry-after', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'ratelimit-policy', 'ratelimit'];
  const pick = (h: Headers) => Object.fromEntries(GATEWAY_HEADERS.map((n) => [n, h.get(n)]));

  it('for every refusal, auth_test and the rate-limit headers of an allowed call', async () => {
    const user = await token({ jti: 'parity-user' });
    const room = await token({ jti: 'parity-room', client_type: 'room', room_id: '42', scope: 'view_room send_notification' });
    const weak = await token({ jti: 'parity-weak', scope: 'send_message' });
    const cases: Array<[string, string, Record<string, string>]> = [
      ['GET', '/v2/room/42', {}],
      ['GET', '/v2/room/42', bearer('not.a.token')],
      ['GET', '/v2/room/42', bearer(weak)],
      ['GET', '/v2/room/43', bearer(room)],
      ['GET', '/v2/room', bearer(room)],
      ['DELETE', '/v2/room/42', bearer(user)],
      ['GET', '/v2/nothing-here', bearer(user)],
      ['GET', '/v2/room/42?auth_test=true', bearer(user)],
      ['GET', '/v2/room/42?auth_test=yes', bearer(user)],
      ['GET', `/v2/room/42?auth_token=${room}`, bearer(user)],
      ['GET', '/v2/room/4%2F2', bearer(user)],
      ['GET', '/v2/room/42', bearer(user)],
      ['GET', '/v2/room/42', bearer(user)],
      ['GET', '/v2/room/42', bearer(user)], // the third spends the last unit (weak/room spent their own)
      ['GET', '/v2/room/42', bearer(user)], // 429
    ];
    // both doors share the clock but not their stores: each sees the same sequence
    for (const [method, path, headers] of cases) {
      const viaProxy = await fetch(`${gw.url}${path}`, { method, headers });
      const viaHono = await app.request(path, { method, headers });
      const label = `${method} ${path.slice(0, 40)} ${headers['authorization']?.slice(0, 12) ?? ''}`;
      expect(viaHono.status, label).toBe(viaProxy.status);
      if (viaProxy.status !== 200) expect(await viaHono.text(), label).toBe(await viaProxy.text());
      else {
        await viaProxy.body?.cancel();
        await viaHono.body?.cancel();
      }
      const hp = pick(viaHono.headers);
      const pp = pick(viaProxy.headers);
      if (viaProxy.status === 200) {
        // the app's and the upstream's own content-type differ; the gateway's headers must not
        delete hp['content-type'];
        delete pp['content-type'];
      }
      expect(hp, label).toEqual(pp);
    }
  });
});
