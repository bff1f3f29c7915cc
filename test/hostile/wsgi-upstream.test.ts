/**
 * Rule 5 end to end with a real WSGI server: Python's wsgiref (standard library) behind the real
 * gateway, its app echoing `environ`. First the premise — wsgiref folds `_` and `-` into one
 * HTTP_* name and joins repeats with "," — then the fix: `X_Auth_Subject: admin` never becomes
 * HTTP_X_AUTH_SUBJECT on a public route, and on an authenticated route HTTP_X_AUTH_SUBJECT is the
 * token's real subject, unmerged.
 *
 * @example
 *   npx vitest run test/hostile/wsgi-upstream.test.ts
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway.js';
import { hsToken, nowS } from '../helpers/tokens.js';
import { startWsgiUpstream, wsgiEnviron, type WsgiUpstream } from '../helpers/wsgi-upstream.js';

let wsgi: WsgiUpstream;
let gw: TestGateway;
let keep: TestGateway;
let token: string;

beforeAll(async () => {
  wsgi = await startWsgiUpstream();
  gw = await startTestGateway(baseConfig({ upstream: wsgi.url }));
  keep = await startTestGateway(baseConfig({ upstream: wsgi.url, extra: 'listen:\n  underscore_headers: keep' }));
  token = await hsToken(TEST_SECRET, {
    iss: 'scopegate-test', aud: 'api', sub: 'alice', client_type: 'user', scope: 'view_group', iat: nowS(), exp: nowS() + 600,
  });
});
afterAll(async () => {
  await keep?.close();
  await gw?.close();
  await wsgi?.close();
});

const SPOOFS = { X_Auth_Subject: 'admin', 'X-Auth_Scopes': 'admin_group', X_AUTH_CLIENT_TYPE: 'group', X_Original_URL: '/v2/admin/x' };

describe('wsgiref, asked directly (the premise)', () => {
  it('reads X_Auth_Subject as HTTP_X_AUTH_SUBJECT and merges it with X-Auth-Subject', async () => {
    const alone = await wsgiEnviron(`${wsgi.url}/v2/capabilities`, { X_Auth_Subject: 'admin' });
    expect(alone.environ['HTTP_X_AUTH_SUBJECT']).toBe('admin');
    const both = await wsgiEnviron(`${wsgi.url}/v2/capabilities`, { 'X-Auth-Subject': 'alice', X_Auth_Subject: 'admin' });
    expect(both.environ['HTTP_X_AUTH_SUBJECT']).toBe('alice,admin');
    expect((await wsgiEnviron(`${wsgi.url}/x`, { X_Original_URL: '/v2/admin' })).environ['HTTP_X_ORIGINAL_URL']).toBe('/v2/admin');
  });
});

describe('wsgiref behind the gateway', () => {
  it('sees no HTTP_X_AUTH_* on a public route, whatever the client spelled', async () => {
    const { status, environ } = await wsgiEnviron(`${gw.url}/v2/capabilities`, { ...SPOOFS, 'X-Auth-Subject': 'admin' });
    expect(status).toBe(200);
    expect(environ['PATH_INFO']).toBe('/v2/capabilities');
    expect(Object.keys(environ).filter((k) => k.startsWith('HTTP_X_AUTH_'))).toEqual([]);
    expect(environ).not.toHaveProperty('HTTP_X_ORIGINAL_URL');
  });

  it('sees the token\'s real subject, unmerged, on an authenticated route', async () => {
    const { status, environ } = await wsgiEnviron(`${gw.url}/v2/room/42`, { ...SPOOFS, authorization: `Bearer ${token}` });
    expect(status).toBe(200);
    expect(environ['PATH_INFO']).toBe('/v2/room/42');
    expect(environ['HTTP_X_AUTH_SUBJECT']).toBe('alice');
    expect(environ['HTTP_X_AUTH_SCOPES']).toBe('view_group');
    expect(environ['HTTP_X_AUTH_CLIENT_TYPE']).toBe('user');
    expect(environ).not.toHaveProperty('HTTP_X_ORIGINAL_URL');
  });

  it('sees one X-Forwarded-For, the gateway\'s, however the client spelled its own', async () => {
    const { environ } = await wsgiEnviron(`${gw.url}/v2/capabilities`, { X_Forwarded_For: '6.6.6.6' });
    expect(environ['HTTP_X_FORWARDED_FOR']).toBe('127.0.0.1');
  });

  it('with underscore_headers: keep, still sees only the real identity and one X-Forwarded-For', async () => {
    const { status, environ } = await wsgiEnviron(`${keep.url}/v2/room/42`, {
      ...SPOOFS,
      X_Forwarded_For: '6.6.6.6',
      X_Custom: 'kept',
      authorization: `Bearer ${token}`,
    });
    expect(status).toBe(200);
    expect(environ['HTTP_X_AUTH_SUBJECT']).toBe('alice');
    expect(environ['HTTP_X_AUTH_SCOPES']).toBe('view_group');
    expect(environ['HTTP_X_FORWARDED_FOR']).toBe('127.0.0.1');
    expect(environ['HTTP_X_CUSTOM']).toBe('kept');
  });
});
