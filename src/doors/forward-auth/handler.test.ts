/**
 * The forward-auth handler with a real decider (real verifier, real memory-store limiter, the
 * config loaded through the schema), as the doors build it: what each front-proxy style gets
 * back, that an untrusted peer or an ambiguous description is never decided, and (fast-check)
 * that no sub-request, however odd, throws, forges an identity or turns a refusal into a 2xx.
 */
import fc from 'fast-check';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTokenVerifier } from '../../auth/verify-token.js';
import { loadConfigText, type LoadedConfig } from '../../config/load.js';
import { AUTH_TEST_BODY, createDecider, type Decider, type RequestFacts } from '../../core/decide.js';
import { compileCidrs } from '../../net/cidr.js';
import { createMemoryStore } from '../../ratelimit/memory-store.js';
import { createRateLimiter } from '../../ratelimit/policy.js';
import { baseConfig, TEST_SECRET } from '../../../test/helpers/gateway.js';
import { hsToken, nowS } from '../../../test/helpers/tokens.js';
import { bodyHeaderValue, createForwardAuth, readOriginal, type ForwardAuth, type ForwardAuthRequest, type ForwardAuthResult } from './handler.js';

const PATH = '/_scopegate/auth';

async function buildForwardAuth(extra = '', rateLimit = 'rate_limit:\n  store: memory\n  default: { limit: 5, window_s: 300 }\n', prefix?: string) {
  const text = baseConfig({
    upstream: 'http://127.0.0.1:9',
    extra: `forward_auth: { path: ${PATH} }\n${extra}`,
    rateLimit,
    ...(prefix ? { tokens: `  identity_header_prefix: ${prefix}` } : {}),
  });
  const loaded: LoadedConfig = loadConfigText(text, { env: {} });
  const clock = () => Date.now();
  const verifier = await createTokenVerifier(loaded.config.tokens, { clock, baseDir: loaded.baseDir });
  const limiter = createRateLimiter(loaded.config.rate_limit, { store: createMemoryStore({ maxKeys: 1000, clock }), clock });
  const calls: RequestFacts[] = [];
  const real = createDecider(loaded, { clock, verifier, limiter });
  // The real decider, with its calls recorded (to prove when it is not asked at all).
  const decider: Decider = { loaded, render: real.render, decide: (f, t) => (calls.push(f), real.decide(f, t)) };
  const fa = createForwardAuth(loaded, decider, compileCidrs(loaded.config.trusted_proxies));
  return { fa, calls, loaded };
}

let seq = 0;
function mint(claims: Record<string, unknown> = {}): Promise<string> {
  return hsToken(TEST_SECRET, { iss: 'scopegate-test', aud: 'api', iat: nowS(), exp: nowS() + 600, sub: 'alice', client_type: 'user', scope: 'view_room', jti: `fa-${++seq}`, ...claims });
}

function nginx(method: string, uri: string, headers: Record<string, string | string[]> = {}): ForwardAuthRequest {
  return { method: 'GET', target: PATH, headers: { 'x-original-method': method, 'x-original-uri': uri, ...headers }, clientIp: '127.0.0.1', requestId: 'req-1' };
}
function traefik(method: string, uri: string, headers: Record<string, string | string[]> = {}): ForwardAuthRequest {
  return {
    method: 'GET',
    target: PATH,
    headers: { 'X-Forwarded-Method': method, 'X-Forwarded-Uri': uri, 'X-Forwarded-Host': 'api.example.com', 'X-Forwarded-Proto': 'https', ...headers },
    clientIp: '127.0.0.1',
    requestId: 'req-1',
  };
}
function envoy(method: string, uri: string, headers: Record<string, string | string[]> = {}): ForwardAuthRequest {
  return { method, target: `${PATH}${uri}`, headers, clientIp: '127.0.0.1', requestId: 'req-1' };
}
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
const reason = (r: ForwardAuthResult) => (JSON.parse(r.body) as { error: { reason: string } }).error.reason;

let fa: ForwardAuth;
let calls: RequestFacts[];
beforeEach(async () => {
  ({ fa, calls } = await buildForwardAuth());
});

describe('matches', () => {
  it('is the configured path and every path below it, nothing else', () => {
    expect(fa.matches(PATH)).toBe(true);
    expect(fa.matches(`${PATH}/v2/room/42`)).toBe(true);
    expect(fa.matches(`${PATH}?x=1`)).toBe(true);
    expect(fa.matches(`${PATH}x`)).toBe(false);
    expect(fa.matches('/_scopegate')).toBe(false);
    expect(fa.matches('/_SCOPEGATE/auth')).toBe(false);
    expect(fa.matches(`/v2${PATH}`)).toBe(false);
  });
});

describe('allowed', () => {
  it('answers 200 with the identity and rate-limit headers and the path to forward (nginx style)', async () => {
    const t = await mint({ room_id: '42', client_type: 'room' });
    const r = await fa.handle(nginx('GET', `/v2/room/42?auth_token=${t}&expand=x`, { 'x-auth-subject': 'mallory' }));
    expect(r.status).toBe(200);
    expect(r.body).toBe('');
    expect(r.headers['content-length']).toBe('0');
    expect(r.headers['x-auth-subject']).toBe('alice');
    expect(r.headers['x-auth-client-type']).toBe('room');
    expect(r.headers['x-auth-scopes']).toBe('view_room');
    expect(r.headers['x-auth-room']).toBe('42');
    expect(r.headers['x-auth-token-id']).toMatch(/^fa-/);
    expect(r.headers['x-auth-issuer']).toBe('scopegate-test');
    expect(r.headers['x-ratelimit-limit']).toBe('5');
    expect(r.headers['x-ratelimit-remaining']).toBe('4');
    expect(r.headers['x-scopegate-uri']).toBe('/v2/room/42?expand=x');
    expect(r.headers['x-request-id']).toBe('req-1');
    expect(r.headers['x-scopegate-status']).toBeUndefined();
    expect(r.decision?.kind).toBe('forward');
    expect(r.reason).toBeUndefined();
    expect(r.original).toEqual({ style: 'nginx', method: 'GET', target: `/v2/room/42?auth_token=${t}&expand=x` });
    // Nothing in the answer carries the token.
    expect(JSON.stringify(r.headers)).not.toContain(t);
  });

  it('decides the method the front proxy names, not the sub-request\'s own', async () => {
    const t = await mint({ scope: 'send_notification' });
    const post = await fa.handle(nginx('POST', '/v2/room/42/notification', bearer(t)));
    expect(post.status).toBe(200);
    expect(calls.at(-1)?.method).toBe('POST');
    const get = await fa.handle(traefik('GET', '/v2/room/42/notification', bearer(t)));
    expect(get.status).toBe(405);
    expect(get.headers['allow']).toBe('POST');
  });

  it('uses the configured identity prefix', async () => {
    const { fa: custom } = await buildForwardAuth('', undefined, 'X-User-');
    const r = await custom.handle(traefik('GET', '/v2/room/42', bearer(await mint())));
    expect(r.status).toBe(200);
    expect(r.headers['x-user-subject']).toBe('alice');
    expect(r.headers['x-auth-subject']).toBeUndefined();
  });

  it('answers a public route 200 with no identity, whatever the client sent', async () => {
    const r = await fa.handle(traefik('GET', '/v2/capabilities', { 'x-auth-subject': 'mallory', ...bearer('garbage') }));
    expect(r.status).toBe(200);
    expect(Object.keys(r.headers).filter((k) => k.startsWith('x-auth-'))).toEqual([]);
    expect(r.headers['x-scopegate-uri']).toBe('/v2/capabilities');
  });

  it('reads Traefik-style headers in any case; X-Forwarded-Host and -Proto do not change the decision', async () => {
    const t = await mint();
    const a = await fa.handle(traefik('GET', '/v2/room/42', bearer(t)));
    const b = await fa.handle(traefik('GET', '/v2/room/42', { ...bearer(t), 'X-Forwarded-Host': 'evil.example', 'X-Forwarded-Proto': 'gopher' }));
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    expect(calls.at(-1)).toEqual(calls.at(-2));
  });
});

describe('Envoy ext_authz: the original path after forward_auth.path', () => {
  it('decides /v2/room/42?x=1 with the sub-request\'s own method', async () => {
    const t = await mint();
    const r = await fa.handle(envoy('GET', '/v2/room/42?x=1', bearer(t)));
    expect(r.status).toBe(200);
    expect(calls.at(-1)).toMatchObject({ method: 'GET', target: '/v2/room/42?x=1' });
    expect(r.headers['x-scopegate-uri']).toBe('/v2/room/42?x=1');
    expect(r.original?.style).toBe('envoy');
  });

  it('passes the real statuses through, auth_test\'s 202 included (Envoy allows only on 200)', async () => {
    const t = await mint({ scope: 'send_notification', client_type: 'room', room_id: '42' });
    const probe = await fa.handle(envoy('POST', '/v2/room/42/notification?auth_test=true', bearer(t)));
    expect(probe.status).toBe(202);
    expect(probe.body).toBe(AUTH_TEST_BODY);
    expect(probe.headers['x-scopegate-status']).toBe('202');
    expect(probe.headers['x-scopegate-body']).toBe(AUTH_TEST_BODY);
    const missing = await fa.handle(envoy('GET', '/v2/room/42'));
    expect(missing.status).toBe(401);
    expect(reason(missing)).toBe('token_missing');
    const unknown = await fa.handle(envoy('GET', '/v2/nothing', bearer(t)));
    expect(unknown.status).toBe(404);
  });

  it('checks the suffix like any target: dot segments and encoded slashes are 400', async () => {
    for (const bad of ['/v2/room/../admin/x', '/v2/room/a%2Fb', '//v2/room/42']) {
      const r = await fa.handle(envoy('GET', bad, bearer(await mint())));
      expect(r.status, bad).toBe(400);
      expect(reason(r)).toBe('bad_request');
    }
  });
});

describe('never a 2xx unless allowed', () => {
  it('answers auth_test to nginx-style callers with 403, X-Scopegate-Status 202 and the exact 202 body', async () => {
    const t = await mint({ scope: 'send_notification', client_type: 'room', room_id: '42' });
    const r = await fa.handle(nginx('POST', '/v2/room/42/notification?auth_test=true', bearer(t)));
    expect(r.status).toBe(403);
    expect(r.headers['x-scopegate-status']).toBe('202');
    expect(r.headers['x-scopegate-body']).toBe('{"success":{"code":202,"message":"This auth_token has access to use this method.","type":"Accepted"}}');
    expect(r.body).toBe(AUTH_TEST_BODY);
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.headers['x-ratelimit-limit']).toBe('5');
    // auth_test only reads the window.
    expect(r.headers['x-ratelimit-remaining']).toBe('5');
    expect(r.decision?.kind).toBe('answer');
    expect(r.reason).toBeUndefined();
  });

  it('answers auth_test to Traefik/Caddy-style callers with 403 too (they forward on any 2xx)', async () => {
    const t = await mint({ scope: 'send_notification', client_type: 'room', room_id: '42' });
    const r = await fa.handle(traefik('POST', '/v2/room/42/notification?auth_test=true', bearer(t)));
    expect(r.status).toBe(403);
    expect(r.headers['x-scopegate-status']).toBe('202');
    expect(r.body).toBe(AUTH_TEST_BODY);
  });

  it.each([
    ['no token', 'GET', '/v2/room/42', {}, 401, 'token_missing'],
    ['a garbage token', 'GET', '/v2/room/42', { authorization: 'Bearer not.a.jwt' }, 401, 'token_malformed'],
    ['an unknown path', 'GET', '/v2/nothing', {}, 404, 'route_not_found'],
    ['a wrong method', 'DELETE', '/v2/room/42', {}, 405, 'method_not_allowed'],
    ['an encoded slash', 'GET', '/v2/room/a%2Fb', {}, 400, 'bad_request'],
    ['a public route', 'GET', '/v2/capabilities', {}, 200, undefined],
  ] as const)('%s: the real status for Traefik, 401-or-403 for nginx, the same body and headers for both', async (_n, method, uri, headers, status, code) => {
    const t = await fa.handle(traefik(method, uri, headers));
    const n = await fa.handle(nginx(method, uri, headers));
    expect(t.status).toBe(status);
    if (status === 200) {
      expect(n.status).toBe(200);
      return;
    }
    expect(n.status).toBe(status === 401 ? 401 : 403);
    expect(reason(t)).toBe(code);
    expect(n.body).toBe(t.body);
    expect(t.headers['x-scopegate-status']).toBe(String(status));
    expect(n.headers['x-scopegate-status']).toBe(String(status));
    expect(t.headers['x-scopegate-body']).toBe(t.body);
    expect(n.headers).toEqual(t.headers);
    expect(t.reason).toBe(code);
  });

  it('carries WWW-Authenticate, Allow and Retry-After with the 429 and the rate-limit headers', async () => {
    const t = await mint();
    const seen: ForwardAuthResult[] = [];
    for (let i = 0; i < 6; i++) seen.push(await fa.handle(nginx('GET', '/v2/room/42', bearer(t))));
    expect(seen.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 403]);
    const last = seen.at(-1)!;
    expect(last.headers['x-scopegate-status']).toBe('429');
    expect(reason(last)).toBe('rate_limited');
    expect(Number(last.headers['retry-after'])).toBeGreaterThan(0);
    expect(last.headers['x-ratelimit-remaining']).toBe('0');
    expect(last.reason).toBe('rate_limited');

    const anyOne = await fa.handle(nginx('GET', '/v2/room/42', bearer(await mint({ scope: 'view_group other' }))));
    expect(anyOne.status).toBe(200); // view_group is one of the route's scopes
    const scope = await fa.handle(nginx('GET', '/v2/room/42', bearer(await mint({ scope: 'send_message' }))));
    expect(scope.headers['x-scopegate-status']).toBe('403');
    expect(scope.headers['www-authenticate']).toBe('Bearer realm="api", error="insufficient_scope", scope="view_group view_room"');
    const missing = await fa.handle(nginx('GET', '/v2/room/42'));
    expect(missing.headers['www-authenticate']).toBe('Bearer realm="api"');
  });
});

describe('refused before anything is decided', () => {
  it('answers an untrusted peer 403 untrusted_proxy without asking the decider', async () => {
    const t = await mint();
    for (const req of [nginx('GET', '/v2/room/42', bearer(t)), traefik('GET', '/v2/room/42', bearer(t)), envoy('GET', '/v2/room/42', bearer(t))]) {
      const r = await fa.handle({ ...req, clientIp: '192.0.2.10' });
      expect(r.status).toBe(403);
      expect(reason(r)).toBe('untrusted_proxy');
      expect(r.headers['x-scopegate-status']).toBe('403');
      expect(r.decision).toBeNull();
      expect(r.reason).toBe('untrusted_proxy');
      expect(Object.keys(r.headers).filter((k) => k.startsWith('x-auth-') || k.startsWith('x-ratelimit'))).toEqual([]);
    }
    expect(calls).toEqual([]);
  });

  it('trusts the peers of trusted_proxies, IPv4-mapped IPv6 included', async () => {
    const { fa: wide, calls: c } = await buildForwardAuth('trusted_proxies: [10.0.0.0/8]\n');
    expect((await wide.handle({ ...traefik('GET', '/v2/capabilities'), clientIp: '::ffff:10.1.2.3' })).status).toBe(200);
    expect((await wide.handle({ ...traefik('GET', '/v2/capabilities'), clientIp: '127.0.0.1' })).status).toBe(403);
    expect(c).toHaveLength(1);
  });

  it('refuses nginx-style and Traefik-style headers together with 400 (403 + X-Scopegate-Status 400 for nginx)', async () => {
    const t = await mint();
    const both = await fa.handle(nginx('GET', '/v2/capabilities', { ...bearer(t), 'x-forwarded-uri': '/v2/room/42', 'x-forwarded-method': 'GET' }));
    expect(both.status).toBe(403);
    expect(both.headers['x-scopegate-status']).toBe('400');
    expect(reason(both)).toBe('bad_request');
    expect(both.decision).toBeNull();
    // Without X-Original-URI the caller is not nginx: the real 400.
    const partial = await fa.handle(traefik('GET', '/v2/room/42', { ...bearer(t), 'x-original-method': 'POST' }));
    expect(partial.status).toBe(400);
    // A header description and an Envoy path suffix together.
    const suffix = await fa.handle({ ...traefik('GET', '/v2/capabilities'), target: `${PATH}/v2/room/42` });
    expect(suffix.status).toBe(400);
    expect(calls).toEqual([]);
  });

  it.each([
    ['no description at all', { method: 'GET', target: PATH, headers: {} }],
    ['only X-Original-URI', { method: 'POST', target: PATH, headers: { 'x-original-uri': '/v2/room/42' } }],
    ['only X-Forwarded-Uri', { method: 'POST', target: PATH, headers: { 'x-forwarded-uri': '/v2/room/42' } }],
    ['two X-Original-URI', { method: 'GET', target: PATH, headers: { 'x-original-method': 'GET', 'x-original-uri': ['/v2/capabilities', '/v2/room/42'] } }],
    ['X-Original-URI in two spellings', { method: 'GET', target: PATH, headers: { 'x-original-method': 'GET', 'x-original-uri': '/v2/capabilities', 'X-Original-URI': '/v2/room/42' } }],
    ['a method with a space', { method: 'GET', target: PATH, headers: { 'x-forwarded-method': 'GET X', 'x-forwarded-uri': '/v2/capabilities' } }],
    ['an empty method', { method: 'GET', target: PATH, headers: { 'x-forwarded-method': '', 'x-forwarded-uri': '/v2/capabilities' } }],
    ['a target with a space', { method: 'GET', target: PATH, headers: { 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/v2/capabilities x' } }],
    ['a target with CR LF', { method: 'GET', target: PATH, headers: { 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/v2/capabilities\r\nx-auth-subject: root' } }],
    ['an empty target', { method: 'GET', target: PATH, headers: { 'x-forwarded-method': 'GET', 'x-forwarded-uri': '' } }],
  ] as const)('refuses %s with 400 and decides nothing', async (_n, req) => {
    const r = await fa.handle({ ...req, clientIp: '127.0.0.1', requestId: 'r' } as ForwardAuthRequest);
    expect(r.status === 400 || (r.status === 403 && r.headers['x-scopegate-status'] === '400')).toBe(true);
    expect(reason(r)).toBe('bad_request');
    expect(r.decision).toBeNull();
    expect(calls).toEqual([]);
  });

  it('refuses an absolute-form original target like the proxy door does', async () => {
    const r = await fa.handle(traefik('GET', 'http://api.example.com/v2/capabilities'));
    expect(r.status).toBe(400);
    expect(r.decision?.kind).toBe('deny');
  });

  it('keeps two Authorization values apart: token_conflict', async () => {
    const r = await fa.handle(traefik('GET', '/v2/room/42', { authorization: [`Bearer ${await mint()}`, `Bearer ${await mint()}`] }));
    expect(r.status).toBe(400);
    expect(reason(r)).toBe('token_conflict');
  });
});

describe('construction', () => {
  it('refuses a config without forward_auth and a decider of another config', async () => {
    const { loaded } = await buildForwardAuth();
    const other = loadConfigText(baseConfig({ upstream: 'http://127.0.0.1:9' }), { env: {} });
    const decider = { loaded, decide: () => { throw new Error('unused'); }, render: () => ({ status: 0, headers: {}, body: '' }) } as unknown as Decider;
    expect(() => createForwardAuth(other, decider, compileCidrs([]))).toThrow(/no forward_auth/);
    expect(() => createForwardAuth({ ...loaded }, decider, compileCidrs([]))).toThrow(/another config/);
  });
});

describe('readOriginal and bodyHeaderValue', () => {
  it('reads each style', () => {
    expect(readOriginal({ method: 'GET', target: PATH, headers: { 'X-Original-Method': 'PUT', 'X-Original-URI': '/a?b' } }, PATH)).toEqual({ style: 'nginx', method: 'PUT', target: '/a?b' });
    expect(readOriginal({ method: 'GET', target: `${PATH}?ignored=1`, headers: { 'x-forwarded-method': 'PATCH', 'x-forwarded-uri': '/a' } }, PATH)).toEqual({ style: 'traefik', method: 'PATCH', target: '/a' });
    expect(readOriginal({ method: 'DELETE', target: `${PATH}/`, headers: {} }, PATH)).toEqual({ style: 'envoy', method: 'DELETE', target: '/' });
  });

  it('writes a body as a header value that carries its exact UTF-8 bytes', () => {
    const body = JSON.stringify({ m: 'room \u00fc\u{1F600} \u007f' });
    const v = bodyHeaderValue(body);
    expect(/^[\x20-\x7e\x80-\xff]*$/.test(v)).toBe(true);
    expect(new TextDecoder().decode(Uint8Array.from(v, (c) => c.charCodeAt(0)))).toBe(body.replace('\u007f', '\\u007f'));
    expect(JSON.parse(new TextDecoder().decode(Uint8Array.from(v, (c) => c.charCodeAt(0))))).toEqual(JSON.parse(body));
    expect(bodyHeaderValue(AUTH_TEST_BODY)).toBe(AUTH_TEST_BODY);
  });
});

const DESCRIPTION = ['x-original-uri', 'x-original-method', 'x-forwarded-uri', 'x-forwarded-method'];

// ── Properties: arbitrary sub-requests ──────────────────────────────────────────────────────
// Whatever a sub-request carries — any header names and values in any case, repeated, any
// targets and methods, any peer — the handler never throws, answers 2xx only for a decision to
// forward, never lets a header the client chose become an identity, and never decides for an
// untrusted peer or an ambiguous description.
let pfa: ForwardAuth;
let pcalls: RequestFacts[];
let token: string;

const caseOf = (name: string) => fc.constantFrom(name, name.toUpperCase(), name.replace(/(^|-)([a-z])/g, (m) => m.toUpperCase()));
const targets = fc.oneof(
  fc.constantFrom('/v2/room/42', '/v2/capabilities', '/v2/room/42?auth_test=true', '/v2/room', '/v2/admin/x', '/v2/room/42/notification', '/'),
  fc.string({ maxLength: 40 }).map((s) => `/${s}`),
  fc.string({ maxLength: 40 }),
);
const values = fc.oneof(targets, fc.constantFrom('GET', 'POST', 'get', 'DELETE', '', ' ', 'GET\r\n'), fc.string({ maxLength: 20 }));
const headerName = fc.oneof(
  fc.constantFrom(...DESCRIPTION, 'authorization', 'x-auth-subject', 'x-auth-scopes', 'x_auth_subject', 'x-scopegate-status', 'x-forwarded-host', 'x-forwarded-proto').chain(caseOf),
  fc.string({ minLength: 1, maxLength: 12 }),
);
const headerValue = fc.oneof(values, fc.array(values, { minLength: 1, maxLength: 3 }), fc.constant(`Bearer ${'T'}`));
const headers = fc.dictionary(headerName, headerValue, { maxKeys: 8 });
const peers = fc.constantFrom('127.0.0.1', '::1', '::ffff:127.0.0.1', '10.0.0.1', '192.0.2.1', '', 'garbage');
const subTargets = fc.oneof(fc.constant(PATH), fc.constant(`${PATH}?x=1`), targets.map((t) => `${PATH}${t.startsWith('/') ? t : `/${t}`}`));
const methods = fc.constantFrom('GET', 'POST', 'DELETE', 'OPTIONS', 'PROPFIND');

const good = fc.constantFrom('/v2/room/42', '/v2/room/42?x=1&auth_token=', '/v2/room?auth_test=true', '/v2/capabilities');
/** A well-formed description in one of the three styles, plus arbitrary other headers. */
const described = fc
  .record({ style: fc.constantFrom('nginx', 'traefik', 'envoy'), target: good, noise: headers, clientIp: peers, withToken: fc.boolean(), method: methods })
  .map(({ style, target, noise, clientIp, withToken, method }) => {
    const h: Record<string, unknown> = { ...noise };
    for (const k of Object.keys(h)) if (DESCRIPTION.includes(k.toLowerCase())) delete h[k];
    if (style === 'nginx') Object.assign(h, { 'X-Original-Method': 'GET', 'X-Original-URI': target });
    if (style === 'traefik') Object.assign(h, { 'x-forwarded-method': 'GET', 'x-forwarded-uri': target });
    return { method: style === 'envoy' ? 'GET' : method, target: style === 'envoy' ? `${PATH}${target}` : PATH, headers: h, clientIp, withToken };
  });
const request = fc.oneof(
  fc.record({ method: methods, target: subTargets, headers, clientIp: peers, withToken: fc.boolean() }),
  described,
);

function build(r: { method: string; target: string; headers: Record<string, unknown>; clientIp: string; withToken: boolean }): ForwardAuthRequest {
  const h = { ...r.headers } as Record<string, string | string[]>;
  for (const k of Object.keys(h)) {
    const v = h[k];
    if (Array.isArray(v)) h[k] = v.map((x) => (x === 'Bearer T' ? `Bearer ${token}` : x));
    else if (v === 'Bearer T') h[k] = `Bearer ${token}`;
  }
  if (r.withToken) h['authorization'] = `Bearer ${token}`;
  return { method: r.method, target: r.target, headers: h, clientIp: r.clientIp, requestId: 'prop' };
}

const TRUSTED = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1']);

describe('forward auth on arbitrary sub-requests (property)', () => {
  beforeAll(async () => {
    ({ fa: pfa, calls: pcalls } = await buildForwardAuth('', 'rate_limit:\n  store: memory\n  default: { limit: 1000000, window_s: 300 }\n'));
    token = await mint({ sub: 'alice', scope: 'view_room view_group' });
  });

  it('never throws; 2xx only for a forward decision; identity only from the verified token', async () => {
    let identified = 0;
    await fc.assert(
      fc.asyncProperty(request, async (raw) => {
        const req = build(raw);
        const before = pcalls.length;
        const r = await pfa.handle(req);
        expect(typeof r.status).toBe('number');
        const ok = r.status >= 200 && r.status < 300;
        // 2xx exactly when the decision is to forward (Envoy's auth_test 202 is the one non-200 2xx, and Envoy allows only on 200).
        if (r.status === 200) expect(r.decision?.kind).toBe('forward');
        if (ok && r.status !== 200) {
          expect(r.status).toBe(202);
          expect(r.original?.style).toBe('envoy');
        }
        if (r.decision?.kind !== 'forward') expect(r.status === 200).toBe(false);
        // Identity headers only ever describe the one verified token.
        const identity = Object.keys(r.headers).filter((k) => k.startsWith('x-auth-'));
        if (identity.length > 0) {
          identified++;
          expect(r.status).toBe(200);
          expect(r.headers['x-auth-subject']).toBe('alice');
          expect(r.headers['x-auth-scopes']).toBe('view_room view_group');
        }
        // An untrusted peer is never decided for.
        if (!TRUSTED.has(req.clientIp)) {
          expect(r.status).toBe(403);
          expect(r.decision).toBeNull();
          expect(pcalls.length).toBe(before);
        }
        // Every refusal carries its real status and body.
        if (!ok) {
          expect(r.headers['x-scopegate-status']).toMatch(/^\d{3}$/);
          expect(r.body).not.toBe('');
          // nginx auth_request turns anything but 401/403 into a 500.
          if (Object.keys(req.headers).some((k) => k.toLowerCase() === 'x-original-uri')) expect([401, 403]).toContain(r.status);
        }
        // The decided request is exactly one description.
        if (pcalls.length > before) {
          const o = readOriginal(req, PATH);
          expect(o).not.toBeInstanceOf(Error);
          expect(pcalls.at(-1)).toMatchObject({ method: (o as { method: string }).method, target: (o as { target: string }).target });
        }
        // The token never appears in what is sent back, except where the client put it in the target.
        const target = r.original?.target ?? '';
        if (!target.includes(token)) expect(JSON.stringify(r.headers) + r.body).not.toContain(token);
      }),
      { numRuns: 400 },
    );
    // The generator does reach allowed requests (else the identity checks above prove nothing).
    expect(identified).toBeGreaterThan(0);
  });

  it('never decides when two descriptions are present', async () => {
    const two = fc.record({
      nginx: fc.tuple(caseOf('x-original-uri'), targets),
      traefik: fc.tuple(fc.constantFrom('x-forwarded-uri', 'x-forwarded-method').chain(caseOf), values),
      suffix: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(two, async ({ nginx, traefik, suffix }) => {
        const before = pcalls.length;
        const r = await pfa.handle({
          method: 'GET',
          target: suffix ? `${PATH}/v2/capabilities` : PATH,
          headers: { [nginx[0]]: nginx[1], 'x-original-method': 'GET', [traefik[0]]: traefik[1] },
          clientIp: '127.0.0.1',
          requestId: 'p',
        });
        expect(r.status).toBe(403);
        expect(r.headers['x-scopegate-status']).toBe('400');
        expect(r.decision).toBeNull();
        expect(pcalls.length).toBe(before);
      }),
      { numRuns: 200 },
    );
  });
});
