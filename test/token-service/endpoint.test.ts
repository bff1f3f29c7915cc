/**
 * The token endpoint through real sockets on one real embedded store: the livedigital and
 * standard dialects, the password grant (store users, a users URL, the failed-attempt limit), the
 * rotating refresh grant and its replay detection, JWKS, RFC 8414 metadata, the body limit and a
 * store outage. Every issued token is checked with the gateway's own verifier.
 */
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeProtectedHeader } from 'jose';
import fc from 'fast-check';
import { openEmbeddedStore } from '../../src/token-service/store/embedded.js';
import { openTokenStore } from '../../src/token-service/store/open.js';
import { createTestSchema, describePostgres, type TestSchema } from '../helpers/postgres.js';
import type { TokenStore } from '../../src/token-service/store.js';
import { rawRequest } from '../helpers/http.js';
import { tempDir, testClock, type TempDir } from '../helpers/tokens.js';
import { basic, jwtPayload, serviceConfig, startService, type ServiceHarness } from './harness.js';

const clock = testClock(Date.now());
let dir: TempDir;
let store: TokenStore;
/** password grant on, users in the store, ES256 keys from the store. */
let pw: ServiceHarness;
/** password grant on, users checked by a URL. */
let viaUrl: ServiceHarness;
/** HS256 issuer (TEST_SECRET), public_url set. */
let hs: ServiceHarness;
let users: Server;
const usersSeen: Array<{ method?: string | undefined; type?: string | undefined; body: string }> = [];
let client: { id: string; secret: string };
let other: { id: string; secret: string };

const json = (body: unknown, extra: Record<string, string> = {}) => ({ method: 'POST', headers: { 'content-type': 'application/json', ...extra }, body: JSON.stringify(body) });
const form = (body: Record<string, string>, extra: Record<string, string> = {}) => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded', ...extra },
  body: new URLSearchParams(body).toString(),
});

beforeAll(async () => {
  dir = await tempDir();
  store = await openEmbeddedStore(`${dir.path}/store`, { control: false });
  users = createServer((req: IncomingMessage, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      usersSeen.push({ method: req.method, type: req.headers['content-type'], body });
      const { username } = JSON.parse(body) as { username: string };
      if (username === 'slow') return; // never answers
      if (username === 'broken') return void res.writeHead(500).end();
      if (username === 'nosub') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"scopes":["view_room"]}');
      if (username === 'carol') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"sub":"user-carol","scopes":["view_room","admin_group"]}');
      res.writeHead(401).end();
    });
  });
  await new Promise<void>((r) => users.listen(0, '127.0.0.1', r));
  const usersUrl = `http://127.0.0.1:${(users.address() as AddressInfo).port}/check`;
  const shared = { store, dir, clock };
  pw = await startService(serviceConfig({ tokenService: 'password_grant: true' }), { ...shared, endpoint: { attempts: { perUser: 3, perClient: 1000, windowMs: 60_000 } } });
  viaUrl = await startService(serviceConfig({ tokenService: `password_grant: true\nusers: ${usersUrl}` }), { ...shared, endpoint: { usersTimeoutMs: 300 } });
  hs = await startService(serviceConfig({ issuer: 'local', tokenService: 'public_url: https://tokens.example.com/' }), shared);
  client = await pw.createClient({ clientType: 'group', scopes: ['send_notification', 'view_room', 'view_group'], groupId: '7', groupName: 'Seven' });
  other = await pw.createClient({ clientType: 'group', scopes: ['view_room'] });
  await pw.addUser('alice', 'correct horse', ['view_room', 'view_group', 'admin_group']);
  await pw.addUser('bob', 'bob-password', ['view_room']);
}, 240_000);

afterAll(async () => {
  for (const h of [pw, viaUrl, hs]) await h?.close();
  users?.close();
  await store?.close().catch(() => {});
  await dir?.cleanup();
}, 60_000);

describe('livedigital: POST /v1/auth/token (JSON)', () => {
  it('answers client_credentials with {"token_type","access_token","refresh_token"}, byte for byte', async () => {
    const res = await fetch(`${pw.url}/v1/auth/token`, json({ client_id: client.id, client_secret: client.secret, grant_type: 'client_credentials' }));
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const text = await res.text();
    const body = JSON.parse(text) as { access_token: string; refresh_token: string };
    expect(text).toBe(`{"token_type":"Bearer","access_token":"${body.access_token}","refresh_token":"${body.refresh_token}"}`);
    expect(body.refresh_token).toMatch(/^rt_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    expect(await (await pw.verifier()).verify(body.access_token)).toMatchObject({ clientType: 'group', subject: client.id, group: '7', scopes: ['send_notification', 'view_room', 'view_group'] });
    const rec = await store.getRefresh(body.refresh_token.split('.')[0]!);
    expect(rec).toMatchObject({ clientId: client.id, ownerType: 'client', subject: client.id });
    expect(rec!.secretHash).not.toContain(body.refresh_token.split('.')[1]!);
  });

  it('issues a user token for the password grant, ignoring the Bearer client token livedigital sends along', async () => {
    const res = await fetch(
      `${pw.url}/v1/auth/token`,
      json({ client_id: client.id, client_secret: client.secret, grant_type: 'password', username: 'alice', password: 'correct horse' }, { authorization: 'Bearer some.client.token' }),
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as { access_token: string; refresh_token: string };
    // The client's and the user's scopes, in the client's order.
    expect(await (await pw.verifier()).verify(body.access_token)).toMatchObject({ clientType: 'user', subject: 'alice', scopes: ['view_room', 'view_group'] });
    expect(jwtPayload(body.access_token)['client_id']).toBe(client.id);
    expect(await store.getToken(jwtPayload(body.access_token)['jti'] as string)).toMatchObject({ ownerType: 'user', ownerId: 'alice', clientId: client.id });
  });

  it('answers errors in the RFC 6749 §5.2 body', async () => {
    const bad = await fetch(`${pw.url}/v1/auth/token`, json({ client_id: client.id, client_secret: 'nope', grant_type: 'client_credentials' }));
    expect(bad.status).toBe(401);
    expect(bad.headers.get('www-authenticate')).toBeNull();
    expect(bad.headers.get('cache-control')).toBe('no-store');
    expect(await bad.text()).toBe('{"error":"invalid_client","error_description":"Client authentication failed."}');
    const formBody = await fetch(`${pw.url}/v1/auth/token`, form({ client_id: client.id, client_secret: client.secret, grant_type: 'client_credentials' }));
    expect([formBody.status, ((await formBody.json()) as { error: string }).error]).toEqual([400, 'invalid_request']);
    const number = await fetch(`${pw.url}/v1/auth/token`, json({ client_id: client.id, client_secret: client.secret, grant_type: 'client_credentials', scope: 1 }));
    expect(await number.json()).toEqual({ error: 'invalid_request', error_description: 'Invalid request: parameter scope must be a string' });
  });
});

describe('standard: POST /oauth/token', () => {
  it('takes client_secret_post and issues no refresh token for client_credentials (RFC 6749 §4.4.3)', async () => {
    const res = await fetch(`${pw.url}/oauth/token`, form({ grant_type: 'client_credentials', client_id: client.id, client_secret: client.secret, scope: 'view_room' }));
    const text = await res.text();
    const token = (JSON.parse(text) as { access_token: string }).access_token;
    expect(text).toBe(`{"access_token":"${token}","token_type":"Bearer","expires_in":3600,"scope":"view_room"}`);
  });

  it('refuses two client authentication methods at once, and challenges a bad Basic', async () => {
    const both = await fetch(`${pw.url}/oauth/token`, form({ grant_type: 'client_credentials', client_secret: client.secret }, { authorization: basic(client.id, client.secret) }));
    expect([both.status, ((await both.json()) as { error: string }).error]).toEqual([400, 'invalid_request']);
    const wrong = await fetch(`${pw.url}/oauth/token`, form({ grant_type: 'client_credentials' }, { authorization: basic(client.id, 'wrong') }));
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toBe('Basic realm="api"');
    expect(await wrong.json()).toEqual({ error: 'invalid_client', error_description: 'Client authentication failed.' });
  });

  it('stops reading a chunked body at max_body_bytes and answers invalid_request', async () => {
    const port = new URL(pw.url).port;
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/oauth/token', headers: { 'content-type': 'application/x-www-form-urlencoded', 'transfer-encoding': 'chunked' } }, (r) => {
        let body = '';
        r.on('data', (c: Buffer) => (body += c.toString()));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.write(`grant_type=client_credentials&pad=${'x'.repeat(10_000)}`);
      req.write('y'.repeat(10_000));
      req.end();
    });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toEqual({ error: 'invalid_request', error_description: 'Invalid request: the body is larger than 16384 bytes' });
  });
});

describe('password grant', () => {
  const pwd = (username: string, password: string) =>
    fetch(`${pw.url}/oauth/token`, form({ grant_type: 'password', username, password }, { authorization: basic(client.id, client.secret) }));

  it('issues a user token and a refresh token; a wrong password is invalid_grant', async () => {
    const ok = await pwd('alice', 'correct horse');
    const body = (await ok.json()) as { refresh_token?: string; scope: string; expires_in: number };
    expect(body.scope).toBe('view_room view_group');
    expect(body.refresh_token).toBeDefined();
    const bad = await pwd('alice', 'wrong');
    expect([bad.status, ((await bad.json()) as { error: string }).error]).toEqual([400, 'invalid_grant']);
    const nobody = await pwd('nobody', 'x');
    expect(((await nobody.json()) as { error: string }).error).toBe('invalid_grant');
  });

  it('refuses a username after 3 failures without checking the password, until the window has passed', async () => {
    for (let i = 0; i < 3; i++) expect((await pwd('bob', `guess-${i}`)).status).toBe(400);
    const right = await pwd('bob', 'bob-password');
    expect(((await right.json()) as { error: string }).error).toBe('invalid_grant');
    expect(pw.logs.some((l) => l.includes('too many failed password attempts') && l.includes('password not checked'))).toBe(true);
    // Another user of the same client is not affected.
    expect((await pwd('alice', 'correct horse')).status).toBe(200);
    clock.advance(60_000);
    expect((await pwd('bob', 'bob-password')).status).toBe(200);
    expect(pw.logs.join('\n')).not.toMatch(/bob-password|guess-\d|correct horse/);
  });

  it('asks the users URL with {username, password} JSON: 200 with sub accepts, anything else rejects, no answer is 503', async () => {
    const ask = (username: string, dialect: 'standard' | 'hipchat' = 'standard') =>
      fetch(`${viaUrl.url}${dialect === 'hipchat' ? '/v2/oauth/token' : '/oauth/token'}`, form({ grant_type: 'password', username, password: 'pw-123' }, { authorization: basic(client.id, client.secret) }));
    const ok = await ask('carol');
    expect(ok.status).toBe(200);
    const { access_token } = (await ok.json()) as { access_token: string };
    expect(await (await viaUrl.verifier()).verify(access_token)).toMatchObject({ clientType: 'user', subject: 'user-carol', scopes: ['view_room'] });
    expect(usersSeen.at(-1)).toEqual({ method: 'POST', type: 'application/json', body: '{"username":"carol","password":"pw-123"}' });
    for (const name of ['denied', 'nosub']) expect(((await (await ask(name)).json()) as { error: string }).error).toBe('invalid_grant');
    const slow = await ask('slow');
    expect(slow.status).toBe(503);
    expect(await slow.json()).toEqual({ error: 'temporarily_unavailable', error_description: 'The token store is unavailable; try again later.' });
    const broken = await ask('broken', 'hipchat');
    expect(broken.status).toBe(503);
    expect(((await broken.json()) as { error: { reason: string; message: string } }).error).toMatchObject({ reason: 'store_unavailable', message: 'The token store is unavailable; try again later.' });
    expect(await viaUrl.counter('scopegate_store_errors_total', { op: 'users_url' })).toBe(2);
  });
});

describe('refresh_token grant', () => {
  const refresh = (h: ServiceHarness, c: { id: string; secret: string }, token: string, scope?: string) =>
    fetch(`${h.url}/oauth/token`, form({ grant_type: 'refresh_token', refresh_token: token, ...(scope ? { scope } : {}) }, { authorization: basic(c.id, c.secret) }));

  async function login(): Promise<{ access_token: string; refresh_token: string }> {
    const res = await fetch(`${pw.url}/oauth/token`, form({ grant_type: 'password', username: 'alice', password: 'correct horse' }, { authorization: basic(client.id, client.secret) }));
    return (await res.json()) as { access_token: string; refresh_token: string };
  }

  it('rotates: the new refresh token replaces the old; the previous access token is left to expire', async () => {
    const first = await login();
    const t0 = clock();
    const res = await refresh(pw, client, first.refresh_token);
    expect(res.status).toBe(200);
    const second = (await res.json()) as { access_token: string; refresh_token: string };
    expect(second.refresh_token).not.toBe(first.refresh_token);
    expect(await (await pw.verifier()).verify(second.access_token)).toMatchObject({ subject: 'alice', clientType: 'user' });
    expect((await refresh(pw, client, second.refresh_token)).status).toBe(200);
    expect(await store.revokedSince(t0, clock())).toEqual([]);
  });

  it('revokes the whole family when a replaced refresh token comes back (RFC 9700 §4.14.2)', async () => {
    const first = await login();
    const t0 = clock();
    const second = (await (await refresh(pw, client, first.refresh_token)).json()) as { access_token: string; refresh_token: string };
    const replay = await refresh(pw, client, first.refresh_token);
    expect(replay.status).toBe(400);
    expect(((await replay.json()) as { error: string }).error).toBe('invalid_grant');
    const revoked = (await store.revokedSince(t0, clock())).map((r) => r.jti);
    expect(revoked).toEqual(expect.arrayContaining([jwtPayload(first.access_token)['jti'], jwtPayload(second.access_token)['jti']]));
    // The newest refresh token of the family is dead too.
    expect(((await (await refresh(pw, client, second.refresh_token)).json()) as { error: string }).error).toBe('invalid_grant');
    expect(pw.logs.some((l) => l.includes('refresh_replay'))).toBe(true);
    expect(await pw.counter('scopegate_revocations_total')).toBeGreaterThanOrEqual(2);
  });

  it("needs the client it was issued to, and never widens the scope", async () => {
    const first = await login();
    const stolen = await refresh(pw, other, first.refresh_token);
    expect(((await stolen.json()) as { error: string }).error).toBe('invalid_grant');
    const wider = await refresh(pw, client, first.refresh_token, 'view_room admin_group');
    expect(((await wider.json()) as { error: string }).error).toBe('invalid_scope');
    // Neither attempt consumed it: the rightful client narrows the scope.
    const narrow = await refresh(pw, client, first.refresh_token, 'view_room');
    expect(((await narrow.json()) as { scope: string }).scope).toBe('view_room');
    for (const garbage of ['nodot', 'rt_x.short', `${first.refresh_token}x`]) {
      expect(((await (await refresh(pw, client, garbage)).json()) as { error: string }).error).toBe('invalid_grant');
    }
  });
});

describe('JWKS and RFC 8414 metadata', () => {
  it('publishes the ES256 key that signed the tokens, public members only', async () => {
    const res = await fetch(`${pw.url}/.well-known/jwks.json`);
    const set = (await res.json()) as { keys: Array<Record<string, unknown>> };
    expect(set.keys.length).toBeGreaterThanOrEqual(1);
    expect(Object.keys(set.keys[0]!).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
    const issued = await fetch(`${pw.url}/oauth/token`, form({ grant_type: 'client_credentials' }, { authorization: basic(client.id, client.secret) }));
    const { access_token } = (await issued.json()) as { access_token: string };
    expect(set.keys.map((k) => k['kid'])).toContain(decodeProtectedHeader(access_token).kid);
    const head = await rawRequest(pw.url, 'HEAD', '/.well-known/jwks.json');
    expect([head.status, head.body]).toEqual([200, '']);
  });

  it('publishes no keys for an HS issuer, whose tokens verify with its secret', async () => {
    expect(await (await fetch(`${hs.url}/.well-known/jwks.json`)).text()).toBe('{"keys":[]}');
    const res = await fetch(`${hs.url}/oauth/token`, form({ grant_type: 'client_credentials' }, { authorization: basic(client.id, client.secret) }));
    const { access_token } = (await res.json()) as { access_token: string };
    expect(decodeProtectedHeader(access_token).alg).toBe('HS256');
    expect(await (await hs.verifier()).verify(access_token)).toMatchObject({ issuerName: 'local', clientType: 'group', iss: 'scopegate-test' });
  });

  it("builds the metadata from the request's Host, or from public_url", async () => {
    const doc = (await (await fetch(`${pw.url}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    // The svc issuer's iss is an https URL: it is the metadata's issuer (RFC 9068 consistency).
    expect(doc).toEqual({
      issuer: 'https://auth.scopegate.test',
      token_endpoint: `${pw.url}/oauth/token`,
      jwks_uri: `${pw.url}/.well-known/jwks.json`,
      scopes_supported: ['send_notification', 'view_group', 'view_room', 'admin_group'],
      response_types_supported: [],
      grant_types_supported: ['client_credentials', 'password', 'refresh_token'],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      // RFC 7009 / RFC 7662 endpoints (sessions.ts), advertised since issue 14.
      revocation_endpoint: `${pw.url}/oauth/revoke`,
      revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
      introspection_endpoint: `${pw.url}/oauth/introspect`,
      introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    });
    const fromHs = await fetch(`${hs.url}/.well-known/oauth-authorization-server`);
    expect(fromHs.headers.get('cache-control')).toBe('public, max-age=60');
    expect(await fromHs.json()).toMatchObject({ issuer: 'https://tokens.example.com', token_endpoint: 'https://tokens.example.com/oauth/token', grant_types_supported: ['client_credentials', 'refresh_token'] });
    const badHost = await rawRequest(pw.url, 'GET', '/.well-known/oauth-authorization-server', { host: 'evil.example/x' });
    expect(badHost.status).toBe(400);
  });
});

describe('arbitrary requests', () => {
  it('never issue a token without the client secret, never crash, always no-store', async () => {
    const paths = ['/v2/oauth/token', '/v1/auth/token', '/oauth/token'];
    const auth = fc.oneof(
      fc.constant(undefined),
      fc.string({ maxLength: 40 }),
      fc.tuple(fc.constantFrom(client.id, 'cl_unknown', ''), fc.string({ maxLength: 20 })).map(([id, s]) => basic(id, s)),
    );
    const body = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.dictionary(fc.constantFrom('grant_type', 'client_id', 'client_secret', 'scope', 'username', 'password', 'refresh_token'), fc.string({ maxLength: 20 })).map((d) => new URLSearchParams(d).toString()),
      fc.jsonValue().map((v) => JSON.stringify(v)),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...paths), auth, body, fc.constantFrom('application/x-www-form-urlencoded', 'application/json', 'text/plain'), async (path, a, b, type) => {
        const headers: Record<string, string> = { 'content-type': type };
        if (a !== undefined) headers['authorization'] = a;
        const res = await pw.service.handle(new Request(`http://127.0.0.1${path}`, { method: 'POST', headers, body: b }), { clientIp: '127.0.0.1', proto: 'http', host: '127.0.0.1' });
        expect([400, 401]).toContain(res.status);
        expect(res.headers.get('cache-control')).toBe('no-store');
        const text = await res.text();
        expect(() => JSON.parse(text)).not.toThrow();
        expect(text).not.toContain('access_token');
      }),
      { numRuns: 60 },
    );
  }, 120_000);
});

describe('store outage', () => {
  it('answers 503 temporarily_unavailable (store_unavailable in the envelope) and readiness says why', async () => {
    expect(await pw.service.readiness()).toEqual({ ok: true });
    await store.close();
    const res = await fetch(`${pw.url}/oauth/token`, form({ grant_type: 'client_credentials' }, { authorization: basic(client.id, client.secret) }));
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: string }).error).toBe('temporarily_unavailable');
    const hip = await fetch(`${pw.url}/v2/oauth/token`, form({ grant_type: 'client_credentials' }, { authorization: basic(client.id, client.secret) }));
    // The HipChat envelope names the store that failed: the token store, not the rate-limit store.
    const hipBody = (await hip.json()) as { error: { reason: string; message: string } };
    expect([hip.status, hipBody.error.reason, hipBody.error.message]).toEqual([503, 'store_unavailable', 'The token store is unavailable; try again later.']);
    const ready = await pw.service.readiness();
    expect(ready.ok).toBe(false);
    expect(ready.error).toMatch(/token store \(embedded\)/);
  });
});

describePostgres('two replicas on one PostgreSQL store', () => {
  let schema: TestSchema;
  let pgDir: TempDir;
  const stores: TokenStore[] = [];
  let a: ServiceHarness;
  let b: ServiceHarness;
  let cl: { id: string; secret: string };

  beforeAll(async () => {
    schema = await createTestSchema('token_endpoint');
    pgDir = await tempDir();
    stores.push(await openTokenStore(schema.url), await openTokenStore(schema.url));
    const cfg = serviceConfig({ tokenService: 'password_grant: true' });
    // Started together: the store hands out one signing key, not two.
    [a, b] = await Promise.all([startService(cfg, { store: stores[0], dir: pgDir }), startService(cfg, { store: stores[1], dir: pgDir })]);
    cl = await a.createClient({ clientType: 'group', scopes: ['view_room', 'view_group'], groupId: '9' });
    await a.addUser('erin', 'erin-password', ['view_room']);
  }, 120_000);

  afterAll(async () => {
    for (const h of [a, b]) await h?.close();
    for (const s of stores) await s.close();
    await schema?.drop();
    await pgDir?.cleanup();
  }, 60_000);

  const post = (h: ServiceHarness, body: Record<string, string>) => fetch(`${h.url}/oauth/token`, form(body, { authorization: basic(cl.id, cl.secret) }));

  it('publishes one key on both replicas; a token from one verifies with the keys of the other', async () => {
    const [ja, jb] = await Promise.all([a, b].map(async (h) => (await fetch(`${h.url}/.well-known/jwks.json`)).text()));
    expect(ja).toBe(jb);
    expect((JSON.parse(ja!) as { keys: unknown[] }).keys).toHaveLength(1);
    const res = await post(b, { grant_type: 'client_credentials' });
    const { access_token } = (await res.json()) as { access_token: string };
    expect(await (await a.verifier()).verify(access_token)).toMatchObject({ subject: cl.id, clientType: 'group', group: '9' });
  });

  it('revokes the family when a refresh token rotated on one replica is replayed on the other', async () => {
    const t0 = Date.now();
    const first = (await (await post(a, { grant_type: 'password', username: 'erin', password: 'erin-password' })).json()) as { access_token: string; refresh_token: string };
    const second = (await (await post(b, { grant_type: 'refresh_token', refresh_token: first.refresh_token })).json()) as { access_token: string; refresh_token: string };
    expect(second.refresh_token).toBeDefined();
    const replay = await post(a, { grant_type: 'refresh_token', refresh_token: first.refresh_token });
    expect(((await replay.json()) as { error: string }).error).toBe('invalid_grant');
    const revoked = (await stores[1]!.revokedSince(t0, Date.now())).map((r) => r.jti);
    expect(revoked).toEqual(expect.arrayContaining([jwtPayload(first.access_token)['jti'], jwtPayload(second.access_token)['jti']]));
    expect(((await (await post(b, { grant_type: 'refresh_token', refresh_token: second.refresh_token })).json()) as { error: string }).error).toBe('invalid_grant');
  });
});
