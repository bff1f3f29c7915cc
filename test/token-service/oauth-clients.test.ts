/**
 * Real OAuth 2 clients nobody here wrote, against the token service on a real socket and a real
 * embedded store: oauth4webapi (RFC 8414 discovery, client_credentials, password via the generic
 * grant, refresh_token; client_secret_basic and client_secret_post) and simple-oauth2
 * (ClientCredentials, ResourceOwnerPassword and its refresh). Every token is checked with the
 * gateway's own verifier.
 */
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as oauth from 'oauth4webapi';
import { openEmbeddedStore } from '../../src/token-service/store/embedded.js';
import type { TokenStore } from '../../src/token-service/store.js';
import { tempDir, type TempDir } from '../helpers/tokens.js';
import { serviceConfig, startService, type ServiceHarness } from './harness.js';

interface SimpleToken {
  token: { access_token: string; refresh_token?: string; token_type: string; expires_in?: number; scope?: string; expires_at?: Date };
  refresh(params?: { scope?: string }): Promise<SimpleToken>;
}
interface SimpleConfig {
  client: { id: string; secret: string };
  auth: { tokenHost: string; tokenPath?: string };
  options?: { authorizationMethod?: 'header' | 'body' };
}
const simpleOauth2 = createRequire(import.meta.url)('simple-oauth2') as {
  ClientCredentials: new (c: SimpleConfig) => { getToken(p: { scope?: string | string[] }): Promise<SimpleToken> };
  ResourceOwnerPassword: new (c: SimpleConfig) => { getToken(p: { username: string; password: string; scope?: string | string[] }): Promise<SimpleToken> };
};

const insecure = { [oauth.allowInsecureRequests]: true } as const;
let dir: TempDir;
let store: TokenStore;
/** ES256 store keys; the issuer's iss is https://auth.scopegate.test (not where it is served). */
let svc: ServiceHarness;
/** HS256 issuer with a non-URL iss: the metadata's issuer is the URL it is served from. */
let local: ServiceHarness;
let c: { id: string; secret: string };

beforeAll(async () => {
  dir = await tempDir();
  store = await openEmbeddedStore(`${dir.path}/store`, { control: false });
  svc = await startService(serviceConfig({ tokenService: 'password_grant: true' }), { store, dir });
  local = await startService(serviceConfig({ issuer: 'local', tokenService: 'password_grant: true' }), { store, dir });
  c = await svc.createClient({ clientType: 'group', scopes: ['send_notification', 'view_room'], groupId: '5' });
  await svc.addUser('dana', 'dana-pass', ['view_room', 'send_notification']);
}, 240_000);

afterAll(async () => {
  for (const h of [svc, local]) await h?.close();
  await store?.close();
  await dir?.cleanup();
}, 60_000);

describe('oauth4webapi', () => {
  async function discover(h: ServiceHarness, expected: URL): Promise<oauth.AuthorizationServer> {
    const res = await oauth.discoveryRequest(new URL(h.url), { algorithm: 'oauth2', ...insecure });
    return oauth.processDiscoveryResponse(expected, res);
  }

  it('discovers the server from RFC 8414 metadata served at its own URL', async () => {
    const as = await discover(local, new URL(local.url));
    expect(as.token_endpoint).toBe(`${local.url}/oauth/token`);
    expect(as.grant_types_supported).toContain('client_credentials');
  });

  it('needs the expected issuer when the configured iss is another URL, and says so otherwise', async () => {
    await expect(discover(svc, new URL(svc.url))).rejects.toMatchObject({ code: oauth.JSON_ATTRIBUTE_COMPARISON });
    const as = await discover(svc, new URL('https://auth.scopegate.test'));
    expect(as.issuer).toBe('https://auth.scopegate.test');
  });

  it('gets a client_credentials token with client_secret_basic that the gateway accepts', async () => {
    const as = await discover(svc, new URL('https://auth.scopegate.test'));
    const client: oauth.Client = { client_id: c.id };
    const res = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(c.secret), new URLSearchParams({ scope: 'view_room' }), insecure);
    const tok = await oauth.processClientCredentialsResponse(as, client, res);
    expect(tok).toMatchObject({ token_type: 'bearer', expires_in: 3600, scope: 'view_room' });
    expect(tok.refresh_token).toBeUndefined();
    expect(await (await svc.verifier()).verify(tok.access_token)).toMatchObject({ clientType: 'group', subject: c.id, group: '5', scopes: ['view_room'] });
  });

  it('gets one with client_secret_post from the HS issuer, verified with its secret', async () => {
    const as = await discover(local, new URL(local.url));
    const client: oauth.Client = { client_id: c.id };
    const res = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretPost(c.secret), new URLSearchParams(), insecure);
    const tok = await oauth.processClientCredentialsResponse(as, client, res);
    expect(tok.scope).toBe('send_notification view_room');
    expect(await (await local.verifier()).verify(tok.access_token)).toMatchObject({ issuerName: 'local', clientType: 'group' });
  });

  it('sees invalid_client (challenge for Basic, body error for post) and invalid_scope as RFC errors', async () => {
    const as = await discover(svc, new URL('https://auth.scopegate.test'));
    const client: oauth.Client = { client_id: c.id };
    const basicRes = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic('wrong'), new URLSearchParams(), insecure);
    const basicErr = await oauth.processClientCredentialsResponse(as, client, basicRes).catch((e: unknown) => e);
    expect(basicErr).toBeInstanceOf(oauth.WWWAuthenticateChallengeError);
    expect((basicErr as oauth.WWWAuthenticateChallengeError).cause[0]).toMatchObject({ scheme: 'basic', parameters: { realm: 'api' } });
    const postRes = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretPost('wrong'), new URLSearchParams(), insecure);
    await expect(oauth.processClientCredentialsResponse(as, client, postRes)).rejects.toMatchObject({ error: 'invalid_client', status: 401 });
    const scopeRes = await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(c.secret), new URLSearchParams({ scope: 'admin_group' }), insecure);
    await expect(oauth.processClientCredentialsResponse(as, client, scopeRes)).rejects.toMatchObject({ error: 'invalid_scope', status: 400 });
  });

  it('runs the password grant and rotates its refresh token; the replaced one is refused', async () => {
    const as = await discover(svc, new URL('https://auth.scopegate.test'));
    const client: oauth.Client = { client_id: c.id };
    const auth = oauth.ClientSecretBasic(c.secret);
    const pwRes = await oauth.genericTokenEndpointRequest(as, client, auth, 'password', new URLSearchParams({ username: 'dana', password: 'dana-pass' }), insecure);
    const first = await oauth.processGenericTokenEndpointResponse(as, client, pwRes);
    expect(first.refresh_token).toBeDefined();
    expect(await (await svc.verifier()).verify(first.access_token)).toMatchObject({ clientType: 'user', subject: 'dana', scopes: ['send_notification', 'view_room'] });
    const second = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, auth, first.refresh_token!, insecure));
    expect(second.refresh_token).not.toBe(first.refresh_token);
    const replay = await oauth.refreshTokenGrantRequest(as, client, auth, first.refresh_token!, insecure);
    await expect(oauth.processRefreshTokenResponse(as, client, replay)).rejects.toMatchObject({ error: 'invalid_grant' });
    const revoked = await store.getToken((JSON.parse(Buffer.from(second.access_token.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti);
    expect(revoked?.revokedAt).toBeDefined();
  });
});

describe('simple-oauth2', () => {
  const config = (h: ServiceHarness, authorizationMethod: 'header' | 'body' = 'header'): SimpleConfig => ({
    client: { id: c.id, secret: c.secret },
    auth: { tokenHost: h.url, tokenPath: '/oauth/token' },
    options: { authorizationMethod },
  });

  it('ClientCredentials gets a token, with Basic and with body credentials', async () => {
    for (const method of ['header', 'body'] as const) {
      const at = await new simpleOauth2.ClientCredentials(config(svc, method)).getToken({ scope: ['send_notification'] });
      expect(at.token).toMatchObject({ token_type: 'Bearer', scope: 'send_notification', expires_in: 3600 });
      expect(await (await svc.verifier()).verify(at.token.access_token)).toMatchObject({ clientType: 'group', scopes: ['send_notification'] });
    }
  });

  it('ResourceOwnerPassword gets a user token and refreshes it; the old refresh token is then refused', async () => {
    const at = await new simpleOauth2.ResourceOwnerPassword(config(svc)).getToken({ username: 'dana', password: 'dana-pass', scope: 'view_room' });
    expect(at.token.scope).toBe('view_room');
    const next = await at.refresh();
    expect(await (await svc.verifier()).verify(next.token.access_token)).toMatchObject({ clientType: 'user', subject: 'dana', scopes: ['view_room'] });
    await expect(at.refresh()).rejects.toMatchObject({ output: { statusCode: 400 }, data: { payload: { error: 'invalid_grant' } } });
  });

  it('ResourceOwnerPassword gets invalid_grant for a wrong password', async () => {
    await expect(new simpleOauth2.ResourceOwnerPassword(config(svc)).getToken({ username: 'dana', password: 'nope' })).rejects.toMatchObject({
      output: { statusCode: 400 },
      data: { payload: { error: 'invalid_grant', error_description: 'The grant is invalid, expired or revoked.' } },
    });
  });
});
