/**
 * Sessions and revocation through the real gateway (startTestGateway with `token_service:`, a
 * real embedded store, a real upstream): HipChat's GET/DELETE /v2/oauth/token/{access_token},
 * RFC 7009 revoke and RFC 7662 introspect, the owner rules, the access log's redaction of the
 * path token, and property tests that arbitrary session requests never answer a session.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redactUrl } from '../../src/observability/logger.js';
import { matchServicePath } from '../../src/token-service/service.js';
import { hashSecret, newId, newSecret } from '../../src/token-service/secrets.js';
import type { TokenStore } from '../../src/token-service/store.js';
import { openTokenStore } from '../../src/token-service/store/open.js';
import { startTestGateway, TEST_ISSUER, TEST_SECRET, type TestGateway } from '../helpers/gateway.js';
import { hsToken, nowS, tempDir, type TempDir } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { basic, jwtPayload } from './harness.js';

function gatewayYaml(o: { upstream: string; store: string }): string {
  return `
realm: api
shutdown_timeout_ms: 2000
upstreams:
  default: { url: ${o.upstream}, timeout_ms: 2000, connect_timeout_ms: 500 }
tokens:
  issuers:
    - name: svc
      issuer: https://auth.scopegate.test
      audience: api
      algorithms: [ES256]
${TEST_ISSUER}
token_service:
  issuer: svc
  store: ${o.store}
  password_grant: true
  revocation: { max_lag_ms: 200 }
routes:
  - id: get-room
    path: /v2/room/{room_id_or_name}
    methods: [GET]
    scopes: [view_group, view_room]
    room_param: room_id_or_name
`;
}

interface Fixture {
  gw: TestGateway;
  up: Upstream;
  dir: TempDir;
  store: TokenStore;
  client(scopes?: string[]): Promise<{ id: string; secret: string }>;
  clientToken(c: { id: string; secret: string }): Promise<string>;
  userToken(c: { id: string; secret: string }, user: string): Promise<{ access: string; refresh: string }>;
  close(): Promise<void>;
}

async function fixture(): Promise<Fixture> {
  const up = await startUpstream();
  const dir = await tempDir();
  const gw = await startTestGateway(gatewayYaml({ upstream: up.url, store: `${dir.path}/store` }));
  // The operator's way in while serve holds the store: its control socket (as `scopegate clients` does).
  const store = await openTokenStore(`${dir.path}/store`, { attach: true });
  for (const [u, name] of [['alice', 'Alice A.'], ['bob', 'Bob B.']] as const) {
    await store.putUser({ username: u, passwordHash: await hashSecret(`${u}-pw`), scopes: ['view_group', 'view_room'], displayName: name, createdAt: Date.now() });
  }
  const post = (path: string, auth: string, body: string) =>
    fetch(`${gw.url}${path}`, { method: 'POST', headers: { authorization: auth, 'content-type': 'application/x-www-form-urlencoded' }, body });
  return {
    gw,
    up,
    dir,
    store,
    async client(scopes = ['view_group', 'view_room']) {
      const secret = newSecret();
      const id = newId('cl');
      await store.createClient({ id, name: `client ${id.slice(0, 8)}`, secretHash: await hashSecret(secret), clientType: 'group', scopes, groupId: '7', createdAt: Date.now() });
      return { id, secret };
    },
    async clientToken(c) {
      const res = await post('/v2/oauth/token', basic(c.id, c.secret), 'grant_type=client_credentials');
      expect(res.status).toBe(200);
      return ((await res.json()) as { access_token: string }).access_token;
    },
    async userToken(c, user) {
      const res = await post('/oauth/token', basic(c.id, c.secret), `grant_type=password&username=${user}&password=${user}-pw`);
      expect(res.status).toBe(200);
      const j = (await res.json()) as { access_token: string; refresh_token: string };
      return { access: j.access_token, refresh: j.refresh_token };
    },
    async close() {
      await store.close();
      await gw.close();
      await up.close();
      await dir.cleanup();
    },
  };
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

describe('HipChat sessions: GET/DELETE /v2/oauth/token/{access_token}', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await fixture();
  }, 60_000);
  afterAll(() => f.close());

  it("answers a client_credentials token's own session, owner_type client", async () => {
    const c = await f.client();
    const t = await f.clientToken(c);
    const res = await fetch(`${f.gw.url}/v2/oauth/token/${t}`, { headers: bearer(t) });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const s = (await res.json()) as Record<string, unknown>;
    expect(s).toMatchObject({ access_token: t, scopes: ['view_group', 'view_room'], client_id: c.id, owner: { id: c.id }, owner_type: 'client' });
    expect(s['expires_in']).toBeGreaterThan(3500);
    expect(s['expires_in']).toBeLessThanOrEqual(3600);
    expect(f.up.requests).toHaveLength(0);
  });

  it("answers a user token's session with owner_type user and the user's display name", async () => {
    const c = await f.client();
    const { access } = await f.userToken(c, 'alice');
    const s = (await (await fetch(`${f.gw.url}/v2/oauth/token/${access}`, { headers: bearer(access) })).json()) as Record<string, unknown>;
    expect(s).toMatchObject({ owner: { id: 'alice', name: 'Alice A.' }, owner_type: 'user', client_id: c.id });
  });

  it('lets another token of the same owner read and delete a session, and refuses another owner (403 not_owner)', async () => {
    const c = await f.client();
    const one = await f.userToken(c, 'alice');
    const two = await f.userToken(c, 'alice');
    const bobs = await f.userToken(c, 'bob');
    expect((await fetch(`${f.gw.url}/v2/oauth/token/${one.access}`, { headers: bearer(two.access) })).status).toBe(200);
    const other = await fetch(`${f.gw.url}/v2/oauth/token/${one.access}`, { headers: bearer(bobs.access) });
    expect(other.status).toBe(403);
    expect(((await other.json()) as { error: { reason: string } }).error.reason).toBe('not_owner');
    expect((await fetch(`${f.gw.url}/v2/oauth/token/${one.access}`, { method: 'DELETE', headers: bearer(bobs.access) })).status).toBe(403);
    // A token the gateway accepts but the service never issued owns nothing.
    const foreign = await hsToken(TEST_SECRET, { iss: 'scopegate-test', aud: 'api', sub: 'alice', client_type: 'user', scope: 'view_group', exp: nowS() + 600 });
    expect((await fetch(`${f.gw.url}/v2/oauth/token/${one.access}`, { headers: bearer(foreign) })).status).toBe(403);
    // The same owner deletes it.
    expect((await fetch(`${f.gw.url}/v2/oauth/token/${one.access}`, { method: 'DELETE', headers: bearer(two.access) })).status).toBe(204);
    expect((await fetch(`${f.gw.url}/v2/oauth/token/${two.access}`, { headers: bearer(two.access) })).status).toBe(200);
  });

  it('deletes a session (204); the token then has "Invalid OAuth session" there, and its refresh family is gone', async () => {
    const c = await f.client();
    const { access, refresh } = await f.userToken(c, 'alice');
    const del = await fetch(`${f.gw.url}/v2/oauth/token/${access}`, { method: 'DELETE', headers: bearer(access) });
    expect(del.status).toBe(204);
    expect(await del.text()).toBe('');
    const again = await fetch(`${f.gw.url}/v2/oauth/token/${access}`, { headers: bearer(access) });
    expect(again.status).toBe(401);
    expect(again.headers.get('www-authenticate')).toContain('error="invalid_token"');
    expect(await again.json()).toEqual({ error: { code: 401, message: 'Invalid OAuth session', type: 'Unauthorized', reason: 'token_revoked' } });
    // Its refresh token was part of the session: refreshing now fails.
    const r = await fetch(`${f.gw.url}/oauth/token`, { method: 'POST', headers: { authorization: basic(c.id, c.secret), 'content-type': 'application/x-www-form-urlencoded' }, body: `grant_type=refresh_token&refresh_token=${refresh}` });
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: string }).error).toBe('invalid_grant');
  });

  it('refuses without a bearer (401 token_missing) and for an unknown or garbage path token (401 Invalid OAuth session)', async () => {
    const c = await f.client();
    const t = await f.clientToken(c);
    const none = await fetch(`${f.gw.url}/v2/oauth/token/${t}`);
    expect(none.status).toBe(401);
    expect(((await none.json()) as { error: { reason: string } }).error.reason).toBe('token_missing');
    const foreign = await hsToken(TEST_SECRET, { iss: 'scopegate-test', aud: 'api', sub: 'x', exp: nowS() + 600 });
    for (const path of [foreign, 'not-a-token', `${t.slice(0, -4)}AAAA`]) {
      const res = await fetch(`${f.gw.url}/v2/oauth/token/${path}`, { headers: bearer(t) });
      expect(res.status).toBe(401);
      expect(((await res.json()) as { error: { message: string } }).error.message).toBe('Invalid OAuth session');
    }
  });

  it('takes the bearer from auth_token as HipChat clients send it, and never logs the path token', async () => {
    const c = await f.client();
    const t = await f.clientToken(c);
    const res = await fetch(`${f.gw.url}/v2/oauth/token/${t}?auth_token=${t}`);
    expect(res.status).toBe(200);
    await new Promise((r) => setTimeout(r, 50));
    expect(f.gw.logs.some((l) => l.includes(t))).toBe(false);
    expect(f.gw.logs.some((l) => l.includes(t.split('.')[2]!))).toBe(false);
    const line = f.gw.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => typeof l['path'] === 'string' && (l['path'] as string).startsWith('/v2/oauth/token/'));
    expect(line?.['path']).toMatch(/^\/v2\/oauth\/token\/\[REDACTED\]/);
  });

  it('405 with Allow for another method on a session path', async () => {
    const res = await fetch(`${f.gw.url}/v2/oauth/token/abc.def.ghi`, { method: 'PUT' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, DELETE');
  });
});

describe('RFC 7009 revoke and RFC 7662 introspect', () => {
  let f: Fixture;
  beforeAll(async () => {
    f = await fixture();
  }, 60_000);
  afterAll(() => f.close());
  const form = (path: string, auth: string | undefined, body: string) =>
    fetch(`${f.gw.url}${path}`, { method: 'POST', headers: { ...(auth ? { authorization: auth } : {}), 'content-type': 'application/x-www-form-urlencoded' }, body });
  const introspect = async (c: { id: string; secret: string }, token: string) => (await (await form('/oauth/introspect', basic(c.id, c.secret), `token=${encodeURIComponent(token)}`)).json()) as Record<string, unknown>;

  it('introspects an active token of the calling client with every RFC 7662 member', async () => {
    const c = await f.client();
    const t = await f.clientToken(c);
    const res = await form('/oauth/introspect', basic(c.id, c.secret), `token=${t}&token_type_hint=access_token`);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const p = jwtPayload(t);
    expect(await res.json()).toEqual({
      active: true,
      scope: 'view_group view_room',
      client_id: c.id,
      sub: c.id,
      exp: p['exp'],
      iat: p['iat'],
      token_type: 'Bearer',
      iss: 'https://auth.scopegate.test',
      aud: 'api',
      jti: p['jti'],
    });
  });

  it('says {"active":false} and nothing else for garbage, another client\'s token and a revoked one', async () => {
    const mine = await f.client();
    const theirs = await f.client();
    const theirToken = await f.clientToken(theirs);
    expect(await introspect(mine, 'garbage')).toEqual({ active: false });
    expect(await introspect(mine, theirToken)).toEqual({ active: false });
    expect(await introspect(theirs, theirToken)).toMatchObject({ active: true });
    const t = await f.clientToken(mine);
    expect((await form('/oauth/revoke', basic(mine.id, mine.secret), `token=${t}`)).status).toBe(200);
    expect(await introspect(mine, t)).toEqual({ active: false });
  });

  it("revoke: 200 for an unknown token, a 200 no-op for another client's token", async () => {
    const mine = await f.client();
    const theirs = await f.client();
    const theirToken = await f.clientToken(theirs);
    const unknown = await form('/oauth/revoke', basic(mine.id, mine.secret), 'token=no-such-token&token_type_hint=refresh_token');
    expect(unknown.status).toBe(200);
    expect(await unknown.text()).toBe('');
    expect((await form('/oauth/revoke', basic(mine.id, mine.secret), `token=${theirToken}`)).status).toBe(200);
    // Still alive: the other client could not revoke it.
    expect(await introspect(theirs, theirToken)).toMatchObject({ active: true });
    expect((await fetch(`${f.gw.url}/v2/oauth/token/${theirToken}`, { headers: bearer(theirToken) })).status).toBe(200);
  });

  it('revoking a refresh token revokes its family: the access tokens issued with it stop working', async () => {
    const c = await f.client();
    const first = await f.userToken(c, 'alice');
    // Rotate once: the family now has two access tokens and a current refresh token.
    const rot = await form('/oauth/token', basic(c.id, c.secret), `grant_type=refresh_token&refresh_token=${first.refresh}`);
    const second = (await rot.json()) as { access_token: string; refresh_token: string };
    expect(await introspect(c, second.refresh_token)).toMatchObject({ active: true, token_type: 'refresh_token', sub: 'alice' });
    expect((await form('/oauth/revoke', basic(c.id, c.secret), `token=${second.refresh_token}&token_type_hint=refresh_token`)).status).toBe(200);
    expect(await introspect(c, second.refresh_token)).toEqual({ active: false });
    expect(await introspect(c, first.access)).toEqual({ active: false });
    expect(await introspect(c, second.access_token)).toEqual({ active: false });
    const s = await fetch(`${f.gw.url}/v2/oauth/token/${second.access_token}`, { headers: bearer(second.access_token) });
    expect(s.status).toBe(401);
  });

  it('authenticates the client first: 401 invalid_client (with a Basic challenge), 400 without a token', async () => {
    const c = await f.client();
    const bad = await form('/oauth/introspect', basic(c.id, 'wrong'), 'token=x');
    expect(bad.status).toBe(401);
    expect(bad.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
    expect(((await bad.json()) as { error: string }).error).toBe('invalid_client');
    expect((await form('/oauth/revoke', undefined, 'token=x')).status).toBe(401);
    const missing = await form('/oauth/revoke', basic(c.id, c.secret), 'token_type_hint=access_token');
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { error: string }).error).toBe('invalid_request');
    // client_secret_post works too.
    const post = await form('/oauth/introspect', undefined, `client_id=${c.id}&client_secret=${c.secret}&token=x`);
    expect(await post.json()).toEqual({ active: false });
  });

  it('advertises both endpoints in the RFC 8414 metadata', async () => {
    const doc = (await (await fetch(`${f.gw.url}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    expect(doc['revocation_endpoint']).toMatch(/\/oauth\/revoke$/);
    expect(doc['introspection_endpoint']).toMatch(/\/oauth\/introspect$/);
  });
});

describe('arbitrary session requests', () => {
  let f: Fixture;
  let good: string;
  beforeAll(async () => {
    f = await fixture();
    good = await f.clientToken(await f.client());
  }, 60_000);
  afterAll(() => f.close());

  it('never answer a session for a path token that is not a live token of the bearer', async () => {
    const segment = fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.constant(good).map((t) => `${t}x`),
      fc.constant(good).map((t) => t.replace(/\.[^.]*$/, '.AAAA')),
      fc.constantFrom('%', '%zz', '..', 'a.b.c', '%2e'),
    );
    await fc.assert(
      fc.asyncProperty(segment, fc.boolean(), async (seg, withBearer) => {
        const path = `/v2/oauth/token/${encodeURIComponent(seg).replace(/%25/g, () => (seg.includes('%') ? '%' : '%25'))}`;
        let res: Response;
        try {
          res = await fetch(`${f.gw.url}${path}`, { headers: withBearer ? bearer(good) : {} });
        } catch {
          return; // fetch refuses to send some targets at all
        }
        expect(res.status).not.toBe(200);
        expect(res.status).toBeLessThan(500);
        // Refused by the service itself (not by path safety before it, nor by the route table for a
        // target fetch normalised away from the service, e.g. '..'): never cacheable.
        if (res.status !== 400 && res.status !== 404) expect(res.headers.get('cache-control')).toBe('no-store');
        await res.body?.cancel();
      }),
      { numRuns: 60 },
    );
    expect(f.up.requests).toHaveLength(0);
  });

  it('matchServicePath never throws and decodes only valid segments', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (p) => {
        const m = matchServicePath(`/v2/oauth/token/${p}`);
        if (m?.route === 'session') expect(m.token).toBe(decodeURIComponent(p));
        matchServicePath(`/v2/room/${p}/notification-tokens`);
        matchServicePath(`/v2/oauth/personal-tokens/${p}`);
        matchServicePath(p);
      }),
    );
    expect(matchServicePath('/v2/room/a%20b/notification-tokens/rn_1')).toEqual({ route: 'room_tokens', room: 'a b', id: 'rn_1' });
    expect(matchServicePath('/v2/room/%zz/notification-tokens')).toEqual({ route: 'bad_path' });
    expect(matchServicePath('/v2/room/1/notification')).toBeUndefined();
    expect(matchServicePath('/v2/oauth/token/a/b')).toBeUndefined();
  });

  it("redactUrl censors any of the service's tokens in a session path", async () => {
    const user = await f.userToken(await f.client(), 'alice');
    for (const t of [good, user.access]) {
      const red = redactUrl(`/v2/oauth/token/${t}?auth_token=${t}`, ['auth_token']);
      expect(red).not.toContain(t.split('.')[1]);
      expect(red).not.toContain(t.split('.')[2]);
      expect(red.startsWith('/v2/oauth/token/')).toBe(true);
    }
  });
});
