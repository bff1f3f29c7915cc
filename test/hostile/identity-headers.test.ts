/**
 * Forged identity and re-routing through header names (SPEC §5, rule 5), through the real
 * gateway and a real echo upstream: whatever spelling a client picks — `X_Auth_Subject`,
 * `x_auth_subject`, `X-AUTH_SUBJECT` — the upstream sees only the gateway's own identity headers;
 * underscore names are dropped unless `listen.underscore_headers: keep`; routing overrides never
 * arrive; `X-Forwarded-*`, `Forwarded` and `X-Real-IP` pass only from `trusted_proxies`.
 *
 * Depends on src/app.ts passing `underscoreHeaders` and `trustedPeer` to buildUpstreamHeaders
 * for the `keep` and trusted-peer cases; the others hold with the safe defaults alone.
 *
 * @example
 *   npx vitest run test/hostile/identity-headers.test.ts
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway.js';
import { rawRequest } from '../helpers/http.js';
import { hsToken, nowS } from '../helpers/tokens.js';
import { startUpstream, type RecordedRequest, type Upstream } from '../helpers/upstream.js';

/** Header names as CGI/WSGI read them: lower case, "_" as "-". */
const fold = (name: string) => name.toLowerCase().replaceAll('_', '-');

/** Every header the upstream received whose folded name is `folded`, as [raw name, value]. */
function received(req: RecordedRequest, folded: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (fold(req.rawHeaders[i]!) === folded) out.push([req.rawHeaders[i]!, req.rawHeaders[i + 1]!]);
  return out;
}

const SPOOFS: Record<string, string> = {
  X_Auth_Subject: 'admin',
  x_auth_scopes: 'admin_group',
  'X-AUTH_ROOM': '1',
  'X-Auth_Client-Type': 'group',
  'X-Auth-Token-Id': 'forged',
  X_AUTH_ISSUER: 'evil',
};
const OVERRIDES: Record<string, string> = {
  'X-Original-URL': '/v2/admin/users',
  X_Original_URL: '/v2/admin/users',
  'X-Rewrite-URL': '/v2/admin/users',
  'X-HTTP-Method-Override': 'DELETE',
  X_HTTP_Method_Override: 'DELETE',
  'X-HTTP-Method': 'DELETE',
  'X-Method-Override': 'DELETE',
  'X-Forwarded-Prefix': '/admin',
  X_Forwarded_Prefix: '/admin',
  'X-Original-URI': '/v2/admin/users',
  'X-Forwarded-Method': 'DELETE',
};

let up: Upstream;
let token: string;
const gateways: TestGateway[] = [];
const start = async (extra = '') => {
  const gw = await startTestGateway(baseConfig({ upstream: up.url, extra }));
  gateways.push(gw);
  return gw;
};
let gw: TestGateway;

beforeAll(async () => {
  up = await startUpstream();
  gw = await start();
  token = await hsToken(TEST_SECRET, {
    iss: 'scopegate-test', aud: 'api', sub: 'alice', client_type: 'user', scope: 'view_group view_room', jti: 'real-jti', iat: nowS(), exp: nowS() + 600,
  });
});
afterAll(async () => {
  for (const g of gateways) await g.close();
  await up.close();
});
beforeEach(() => {
  up.requests.length = 0;
});

describe('identity look-alikes (rule 5)', () => {
  it('never reach the upstream on a public route, in any spelling', async () => {
    const res = await rawRequest(gw.url, 'GET', '/v2/capabilities', { ...SPOOFS, 'X-Auth-Subject': 'admin' });
    expect(res.status).toBe(200);
    const seen = up.requests[0]!;
    const identity = [];
    for (let i = 0; i < seen.rawHeaders.length; i += 2) if (fold(seen.rawHeaders[i]!).startsWith('x-auth-')) identity.push(seen.rawHeaders[i]);
    expect(identity).toEqual([]);
  });

  it('leave only the token\'s real identity on an authenticated route', async () => {
    const res = await rawRequest(gw.url, 'GET', '/v2/room/42', { ...SPOOFS, authorization: `Bearer ${token}` });
    expect(res.status).toBe(200);
    const seen = up.requests[0]!;
    expect(received(seen, 'x-auth-subject')).toEqual([['x-auth-subject', 'alice']]);
    expect(received(seen, 'x-auth-scopes')).toEqual([['x-auth-scopes', 'view_group view_room']]);
    expect(received(seen, 'x-auth-client-type')).toEqual([['x-auth-client-type', 'user']]);
    expect(received(seen, 'x-auth-token-id')).toEqual([['x-auth-token-id', 'real-jti']]);
    expect(received(seen, 'x-auth-issuer')).toEqual([['x-auth-issuer', 'scopegate-test']]);
    expect(received(seen, 'x-auth-room')).toEqual([]);
  });

  it('drops every other underscore header by default', async () => {
    await rawRequest(gw.url, 'GET', '/v2/capabilities', { X_Custom: '1', 'X-Tenant_Id': 't', 'X-Plain': 'p' });
    const seen = up.requests[0]!;
    expect(seen.rawHeaders.filter((_, i) => i % 2 === 0 && seen.rawHeaders[i]!.includes('_'))).toEqual([]);
    expect(seen.headers['x-plain']).toBe('p');
  });
});

describe('routing overrides', () => {
  it.each([
    ['a public route', '/v2/capabilities', {}],
    ['an authenticated route', '/v2/room/42', { authorization: 'Bearer TOKEN' }],
  ])('never reach the upstream on %s', async (_name, path, auth: Record<string, string>) => {
    const headers = { ...OVERRIDES, ...(auth.authorization ? { authorization: `Bearer ${token}` } : {}) };
    const res = await rawRequest(gw.url, 'GET', path, headers);
    expect(res.status).toBe(200);
    const seen = up.requests[0]!;
    for (const name of Object.keys(OVERRIDES)) expect(received(seen, fold(name)), name).toEqual([]);
    expect(seen.method).toBe('GET');
    expect(seen.url).toBe(path);
  });
});

describe('forwarding headers from an untrusted peer', () => {
  it('are replaced by the gateway\'s own, and Forwarded and X-Real-IP are dropped', async () => {
    const untrusted = await start('trusted_proxies: ["10.255.0.0/16"]');
    const res = await rawRequest(untrusted.url, 'GET', '/v2/capabilities', {
      'X-Forwarded-For': '203.0.113.9',
      'X-Forwarded-Proto': 'https',
      'X-Forwarded-Host': 'evil.example',
      'X-Forwarded-Port': '443',
      'X-Forwarded-Server': 'lb',
      Forwarded: 'for=203.0.113.9;proto=https',
      'X-Real-IP': '203.0.113.9',
      'True-Client-IP': '203.0.113.9',
    });
    expect(res.status).toBe(200);
    const h = up.requests[0]!.headers;
    expect(h['x-forwarded-for']).toBe('127.0.0.1');
    expect(h['x-forwarded-proto']).toBe('http');
    expect(h['x-forwarded-host']).toBe(new URL(untrusted.url).host);
    for (const name of ['x-forwarded-port', 'x-forwarded-server', 'forwarded', 'x-real-ip', 'true-client-ip']) expect(h, name).not.toHaveProperty(name);
  });
});

describe('wired options (need src/app.ts to pass underscoreHeaders and trustedPeer)', () => {
  it('keeps a trusted peer\'s forwarding headers and appends the client', async () => {
    // The test client is 127.0.0.1, inside the default trusted_proxies (loopback).
    const res = await rawRequest(gw.url, 'GET', '/v2/capabilities', {
      'X-Forwarded-For': '203.0.113.9',
      'X-Forwarded-Proto': 'https',
      'X-Forwarded-Host': 'api.example.com',
      Forwarded: 'for=203.0.113.9;proto=https',
      'X-Real-IP': '203.0.113.9',
      X_Forwarded_For: '6.6.6.6',
    });
    expect(res.status).toBe(200);
    const seen = up.requests[0]!;
    expect(received(seen, 'x-forwarded-for')).toEqual([['x-forwarded-for', '203.0.113.9, 127.0.0.1']]);
    expect(seen.headers['x-forwarded-proto']).toBe('https');
    expect(seen.headers['x-forwarded-host']).toBe('api.example.com');
    expect(seen.headers['x-real-ip']).toBe('203.0.113.9');
    expect(seen.headers['forwarded']).toBe(`for=203.0.113.9;proto=https, for=127.0.0.1;host="${new URL(gw.url).host}";proto=http`);
  });

  it('keeps other underscore headers with underscore_headers: keep, never an identity or proxy look-alike', async () => {
    const keep = await start('listen:\n  underscore_headers: keep');
    const res = await rawRequest(keep.url, 'GET', '/v2/room/42', {
      ...SPOOFS,
      X_Custom: '1',
      X_Forwarded_For: '6.6.6.6',
      X_Request_Id: 'forged',
      authorization: `Bearer ${token}`,
    });
    expect(res.status).toBe(200);
    const seen = up.requests[0]!;
    expect(received(seen, 'x-custom')).toEqual([['x_custom', '1']]);
    expect(received(seen, 'x-auth-subject')).toEqual([['x-auth-subject', 'alice']]);
    expect(received(seen, 'x-forwarded-for').map(([n]) => n)).toEqual(['x-forwarded-for']);
    expect(received(seen, 'x-request-id').map(([n]) => n)).toEqual(['x-request-id']);
  });
});
