/**
 * The HipChat dialect on the wire: POST /v2/oauth/token with Basic + form exactly as hipchat-go's
 * GenerateToken writes it (req.SetBasicAuth, params.Encode(), form content type), answers byte for
 * byte, and the token verified by the gateway's own verifier to the right principal.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawRequest } from '../helpers/http.js';
import { jwtPayload, serviceConfig, startService, type ServiceHarness } from './harness.js';

let h: ServiceHarness;
let group: { id: string; secret: string };

/** Go's SetBasicAuth: base64("id:secret"), no form-encoding (our ids and secrets are base64url). */
const goBasic = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;

function hipchatGo(auth: string | undefined, body: string, extra: Record<string, string> = {}) {
  const headers: Record<string, string> = {
    'Content-Type': 'application/x-www-form-urlencoded',
    'User-Agent': 'Go-http-client/1.1',
    'Content-Length': String(Buffer.byteLength(body)),
    ...extra,
  };
  if (auth) headers['Authorization'] = auth;
  return rawRequest(h.url, 'POST', '/v2/oauth/token', headers, body);
}

beforeAll(async () => {
  h = await startService(serviceConfig());
  group = await h.createClient({ clientType: 'group', scopes: ['send_notification', 'view_room'], groupId: '123456', groupName: 'TestGroup' });
}, 180_000); // a fresh embedded store runs initdb (PGlite, WASM): tens of seconds on a loaded machine
afterAll(() => h?.close(), 60_000);

describe('POST /v2/oauth/token (HipChat)', () => {
  it('issues an add-on token for Basic + form, in hipchat-go fixture order, that the gateway accepts as a group client', async () => {
    const res = await hipchatGo(goBasic(group.id, group.secret), 'grant_type=client_credentials&scope=send_notification+view_room');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.headers['pragma']).toBe('no-cache');
    const token = (JSON.parse(res.body) as { access_token: string }).access_token;
    expect(res.body).toBe(
      `{"access_token":"${token}","token_type":"bearer","expires_in":3600,"scope":"send_notification view_room","group_id":123456,"group_name":"TestGroup"}`,
    );
    const p = await (await h.verifier()).verify(token);
    expect(p).toMatchObject({ issuerName: 'svc', subject: group.id, clientType: 'group', scopes: ['send_notification', 'view_room'], group: '123456' });
    const claims = jwtPayload(token);
    expect(claims).toMatchObject({ iss: 'https://auth.scopegate.test', aud: 'api', client_id: group.id, exp: (claims['iat'] as number) + 3600 });
    const rec = await h.store.getToken(claims['jti'] as string);
    expect(rec).toMatchObject({ kind: 'access', clientId: group.id, ownerType: 'client', ownerId: group.id, expiresAt: (claims['exp'] as number) * 1000 });
    expect(await h.counter('scopegate_tokens_issued_total', { dialect: 'hipchat', grant: 'client_credentials' })).toBeGreaterThanOrEqual(1);
  });

  it("lists the scopes in the client's order and defaults to all of them", async () => {
    const asked = await hipchatGo(goBasic(group.id, group.secret), 'grant_type=client_credentials&scope=view_room+send_notification');
    expect(JSON.parse(asked.body).scope).toBe('send_notification view_room');
    const one = await hipchatGo(goBasic(group.id, group.secret), 'grant_type=client_credentials&scope=view_room');
    expect(JSON.parse(one.body).scope).toBe('view_room');
    const all = await hipchatGo(goBasic(group.id, group.secret), 'grant_type=client_credentials');
    expect(JSON.parse(all.body).scope).toBe('send_notification view_room');
  });

  it('leaves group_id and group_name out for a client without a group; a room client gets a room-bound token', async () => {
    const room = await h.createClient({ clientType: 'room', scopes: ['send_notification'], roomId: '42', roomName: 'ops' });
    const res = await hipchatGo(goBasic(room.id, room.secret), 'grant_type=client_credentials');
    const token = (JSON.parse(res.body) as { access_token: string }).access_token;
    expect(res.body).toBe(`{"access_token":"${token}","token_type":"bearer","expires_in":3600,"scope":"send_notification"}`);
    expect(await (await h.verifier()).verify(token)).toMatchObject({ clientType: 'room', room: '42', roomName: 'ops', scopes: ['send_notification'] });
  });

  it('answers a missing or wrong Basic with 401 invalid_client in the §2 envelope and a Basic challenge', async () => {
    for (const auth of [undefined, goBasic(group.id, 'wrong-secret'), goBasic('cl_nobody', group.secret), 'Bearer abc.def.ghi']) {
      const res = await hipchatGo(auth, 'grant_type=client_credentials');
      expect(res.status).toBe(401);
      expect(res.body).toBe('{"error":{"code":401,"message":"Client authentication failed.","type":"Unauthorized","reason":"invalid_client"}}');
      expect(res.headers['www-authenticate']).toBe('Basic realm="api"');
      expect(res.headers['cache-control']).toBe('no-store');
    }
    expect(await h.counter('scopegate_token_errors_total', { error: 'invalid_client' })).toBeGreaterThanOrEqual(4);
  });

  it.each([
    ['grant_type=client_credentials&scope=admin_group', 400, 'invalid_scope', 'The requested scope is invalid or exceeds the scope granted to the client.'],
    ['grant_type=authorization_code&code=x', 400, 'unsupported_grant_type', 'Unsupported grant type.'],
    ['grant_type=password&username=a&password=b', 400, 'unauthorized_client', 'This client may not use this grant type.'],
    ['scope=view_room', 400, 'invalid_request', 'Invalid request: grant_type is required'],
    ['grant_type=client_credentials&grant_type=client_credentials', 400, 'invalid_request', 'Invalid request: parameter grant_type is repeated'],
  ])('refuses %j with %i %s, byte for byte', async (body, status, reason, message) => {
    const res = await hipchatGo(goBasic(group.id, group.secret), body);
    expect(res.status).toBe(status);
    expect(res.body).toBe(JSON.stringify({ error: { code: status, message, type: 'Bad Request', reason } }));
    expect(res.headers['www-authenticate']).toBeUndefined();
    expect(res.headers['cache-control']).toBe('no-store');
  });

  it('checks the client before the grant', async () => {
    const res = await hipchatGo(goBasic(group.id, 'wrong'), 'grant_type=authorization_code');
    expect(JSON.parse(res.body).error.reason).toBe('invalid_client');
  });

  it('refuses a JSON body, a query string and an oversized body with invalid_request, issuing nothing', async () => {
    const before = await h.counter('scopegate_tokens_issued_total', { dialect: 'hipchat', grant: 'client_credentials' });
    const json = await hipchatGo(goBasic(group.id, group.secret), '{"grant_type":"client_credentials"}', { 'Content-Type': 'application/json' });
    expect([json.status, JSON.parse(json.body).error.reason]).toEqual([400, 'invalid_request']);
    const query = await rawRequest(h.url, 'POST', '/v2/oauth/token?grant_type=client_credentials', { 'content-type': 'application/x-www-form-urlencoded', authorization: goBasic(group.id, group.secret) }, '');
    expect([query.status, JSON.parse(query.body).error.reason]).toEqual([400, 'invalid_request']);
    const big = await hipchatGo(goBasic(group.id, group.secret), `grant_type=client_credentials&pad=${'x'.repeat(20_000)}`);
    expect(big.status).toBe(400);
    expect(JSON.parse(big.body).error).toEqual({ code: 400, message: 'Invalid request: the body is larger than 16384 bytes', type: 'Bad Request', reason: 'invalid_request' });
    expect(await h.counter('scopegate_tokens_issued_total', { dialect: 'hipchat', grant: 'client_credentials' })).toBe(before);
  });

  it('answers another method with 405 and Allow: POST', async () => {
    const res = await rawRequest(h.url, 'GET', '/v2/oauth/token', {});
    expect(res.status).toBe(405);
    expect(res.headers['allow']).toBe('POST');
    expect(JSON.parse(res.body).error.reason).toBe('method_not_allowed');
  });

  it('never logs the client secret or an issued token', async () => {
    const res = await hipchatGo(goBasic(group.id, group.secret), 'grant_type=client_credentials');
    const token = JSON.parse(res.body).access_token as string;
    const all = h.logs.join('\n');
    expect(all).toContain('token_issued');
    expect(all).not.toContain(group.secret);
    expect(all).not.toContain(token);
    expect(all).not.toContain(token.split('.')[2]!);
  });
});
