/**
 * SPEC §8 forward auth, for the front proxies that cannot run here (Traefik, Caddy, Envoy,
 * ingress-nginx): a real scopegate process gets the sub-requests each of them sends — the headers
 * their documentation and source say they write — through real sockets, and must answer what
 * that proxy needs: 200 with the identity and rate-limit headers when allowed, otherwise never a
 * 2xx (Envoy: the real status, auth_test's 202 included) with the proxy door's exact body and
 * headers. Then the shipped snippets in deploy/forward-auth/ are checked by structure: they copy
 * every identity and rate-limit header, strip the client's copies, never cache, never fail open.
 * nginx itself is tested for real in forward-auth-nginx.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { ERRORS } from '../../src/errors.js';
import { RATE_LIMIT_HEADERS } from '../../src/ratelimit/policy.js';
import { identityHeaders } from '../../src/proxy/upstream-headers.js';
import { TEST_ISSUER, TEST_SECRET } from '../helpers/gateway.js';
import { rawRequest, type RawResponse } from '../helpers/http.js';
import { spawnGateway, type GatewayProcess } from '../helpers/process.js';
import { hsToken, nowS, tempDir, type TempDir } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const AUTH_PATH = '/_scopegate/auth';
const AUTH_TEST_BODY = '{"success":{"code":202,"message":"This auth_token has access to use this method.","type":"Accepted"}}';
const deploy = (name: string) => readFileSync(fileURLToPath(new URL(`../../deploy/forward-auth/${name}`, import.meta.url)), 'utf8');

/** SPEC §5's identity headers (default prefix), as the snippets must list them. */
const IDENTITY = ['X-Auth-Subject', 'X-Auth-Client-Type', 'X-Auth-Scopes', 'X-Auth-Room', 'X-Auth-Room-Name', 'X-Auth-Group', 'X-Auth-Token-Id', 'X-Auth-Issuer'];
const RATE = Object.values(RATE_LIMIT_HEADERS);
const lower = (xs: readonly string[]) => xs.map((x) => x.toLowerCase()).sort();

let seq = 0;
function mint(claims: Record<string, unknown> = {}): Promise<string> {
  return hsToken(TEST_SECRET, {
    iss: 'scopegate-test',
    aud: 'api',
    iat: nowS(),
    exp: nowS() + 3600,
    sub: 'alice',
    client_type: 'user',
    scope: 'view_room',
    jti: `fa-${++seq}-${randomBytes(3).toString('hex')}`,
    ...claims,
  });
}

describe('the identity and rate-limit header names the snippets copy', () => {
  it('are every name the gateway sends', () => {
    const full = identityHeaders(
      { issuerName: 'local', iss: 'i', subject: 's', clientType: 'room', scopes: ['a'], room: '1', roomName: 'r', group: 'g', tokenId: 't' },
      'x-auth-',
    );
    for (const name of Object.keys(full)) expect(lower(IDENTITY)).toContain(name);
    expect(RATE).toHaveLength(8);
  });
});

describe('a real scopegate answers the sub-requests of Traefik, Caddy and Envoy', () => {
  let up: Upstream;
  let dir: TempDir;
  let gw: GatewayProcess;

  beforeAll(async () => {
    up = await startUpstream();
    dir = await tempDir();
    const file = await dir.write(
      'gateway.yaml',
      `
realm: api
listen: { host: 127.0.0.1, port: 0 }
admin: { enabled: false }
trusted_proxies: [127.0.0.1/32]
forward_auth: { path: ${AUTH_PATH} }
upstreams:
  default: { url: ${up.url}, timeout_ms: 2000 }
tokens:
  issuers:
${TEST_ISSUER}
      claims: { client_type: client_type, scopes: scope, room: room_id }
rate_limit:
  store: memory
  default: { limit: 50, window_s: 300 }
routes:
  - path: /v2/capabilities
    public: true
  - id: notify
    path: /v2/room/{room}/notification
    methods: [POST]
    scopes: [send_notification]
    room_param: room
  - id: get-room
    path: /v2/room/{room}
    methods: [GET]
    scopes: [view_room]
    room_param: room
  - id: tight
    path: /v2/tight
    methods: [GET]
    rate_limit: { limit: 1, window_s: 3600 }
`,
    );
    gw = await spawnGateway(file);
  }, 30_000);

  afterAll(async () => {
    await gw?.kill();
    await up?.close();
    await dir?.cleanup();
  });

  /** What Traefik's ForwardAuth (trustForwardHeader: false) and Caddy's forward_auth send. */
  const traefik = (method: string, uri: string, extra: Record<string, string | string[]> = {}) =>
    rawRequest(gw.url, 'GET', AUTH_PATH, {
      'x-forwarded-method': method,
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'api.example.com',
      'x-forwarded-uri': uri,
      'x-forwarded-for': '198.51.100.7',
      ...extra,
    });
  /** What Envoy's ext_authz HTTP service sends: the original method, path_prefix + the original path. */
  const envoy = (method: string, uri: string, extra: Record<string, string> = {}) => rawRequest(gw.url, method, `${AUTH_PATH}${uri}`, { 'x-forwarded-proto': 'https', ...extra });
  const direct = (method: string, uri: string, extra: Record<string, string> = {}) => rawRequest(gw.url, method, uri, extra);
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
  const reason = (r: RawResponse) => (JSON.parse(r.body) as { error: { reason: string } }).error.reason;
  const GATEWAY = /^(content-type|www-authenticate|allow|retry-after|x-ratelimit-limit|x-ratelimit-remaining)$/;
  const own = (r: RawResponse) => Object.fromEntries(Object.entries(r.headers).filter(([k]) => GATEWAY.test(k)));

  it('allows with 200, the identity and rate-limit headers and the path to forward; never contacts the upstream', async () => {
    const n = up.requests.length;
    const t = await mint({ client_type: 'room', room_id: '42' });
    for (const r of [await traefik('GET', `/v2/room/42?auth_token=${t}&x=1`), await envoy('GET', '/v2/room/42?x=1', bearer(t))]) {
      expect(r.status).toBe(200);
      expect(r.headers['x-auth-subject']).toBe('alice');
      expect(r.headers['x-auth-room']).toBe('42');
      expect(r.headers['x-auth-scopes']).toBe('view_room');
      expect(r.headers['x-ratelimit-limit']).toBe('50');
      expect(r.headers['x-scopegate-uri']).toBe('/v2/room/42?x=1');
      expect(r.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      expect(r.body).toBe('');
    }
    expect(up.requests.length).toBe(n);
  });

  it.each([
    ['WebSocket handshake', { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' }],
    ['h2c upgrade', { connection: 'Upgrade, HTTP2-Settings', upgrade: 'h2c', 'http2-settings': 'AAMAAABkAAQCAAAAAAIAAAAA' }],
  ])('answers a sub-request that carries the client\'s %s (front proxies pass Upgrade on) as the question it is, never a tunnel', async (_n, upgrade) => {
    // The Node door used to hand such a sub-request to its WebSocket path (404, no route), and
    // to read no headers at all from an h2c one on Node 20.
    const n = up.requests.length;
    const t = await mint({ client_type: 'room', room_id: '42' });
    for (const r of [await traefik('GET', '/v2/room/42', { ...bearer(t), ...upgrade }), await envoy('GET', '/v2/room/42', { ...bearer(t), ...upgrade })]) {
      expect(r.status).toBe(200);
      expect(r.headers['x-auth-subject']).toBe('alice');
      expect(r.headers['x-scopegate-uri']).toBe('/v2/room/42');
    }
    const refused = await traefik('GET', '/v2/room/43', { ...bearer(t), ...upgrade });
    expect(refused.status).toBe(403);
    expect(reason(refused)).toBe('room_forbidden');
    expect(up.requests.length).toBe(n);
  });

  it.each([
    ['no token', 'GET', '/v2/room/42', false, 401, 'token_missing'],
    ['an unknown path', 'GET', '/v2/nothing', true, 404, 'route_not_found'],
    ['a wrong method', 'DELETE', '/v2/room/42', true, 405, 'method_not_allowed'],
    ['an encoded slash', 'GET', '/v2/room/a%2Fb', true, 400, 'bad_request'],
    ['another room', 'GET', '/v2/room/43', true, 403, 'room_forbidden'],
  ] as const)('refuses %s with the proxy door\'s status, body and headers, plus X-Scopegate-*', async (_n, method, uri, withToken, status, code) => {
    const claims = { client_type: 'room', room_id: '42' };
    const h = async () => (withToken ? bearer(await mint(claims)) : {});
    const d = await direct(method, uri, await h());
    for (const r of [await traefik(method, uri, await h()), await envoy(method, uri, await h())]) {
      expect(r.status).toBe(status);
      expect(reason(r)).toBe(code);
      expect(r.body).toBe(d.body);
      expect(own(r)).toEqual(own(d));
      expect(r.headers['x-scopegate-status']).toBe(String(status));
      expect(r.headers['x-scopegate-body']).toBe(d.body);
    }
  });

  it('answers auth_test: 202 to Envoy (allows only on 200), 403 with the 202 body to Traefik/Caddy (forward on any 2xx)', async () => {
    const claims = { client_type: 'room', room_id: '42', scope: 'send_notification' };
    const viaEnvoy = await envoy('POST', '/v2/room/42/notification?auth_test=true', bearer(await mint(claims)));
    expect(viaEnvoy.status).toBe(202);
    expect(viaEnvoy.body).toBe(AUTH_TEST_BODY);
    const viaTraefik = await traefik('POST', '/v2/room/42/notification?auth_test=true', bearer(await mint(claims)));
    expect(viaTraefik.status).toBe(403);
    expect(viaTraefik.body).toBe(AUTH_TEST_BODY);
    expect(viaTraefik.headers['x-scopegate-status']).toBe('202');
    expect(viaTraefik.headers['x-scopegate-body']).toBe(AUTH_TEST_BODY);
    expect(viaTraefik.headers['x-ratelimit-remaining']).toBe('50');
  });

  it('answers 429 with Retry-After once the window is spent', async () => {
    const t = await mint();
    expect((await traefik('GET', '/v2/tight', bearer(t))).status).toBe(200);
    const r = await traefik('GET', '/v2/tight', bearer(t));
    expect(r.status).toBe(429);
    expect(reason(r)).toBe('rate_limited');
    expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
    expect(r.headers['x-ratelimit-remaining']).toBe('0');
  });

  it('refuses two descriptions at once, or a repeated one, with 400 — a client cannot slip its own in', async () => {
    const t = await mint();
    const both = await traefik('GET', '/v2/capabilities', { ...bearer(t), 'x-original-uri': '/v2/room/42', 'x-original-method': 'GET' });
    expect(both.status).toBe(403); // an nginx-style caller: 403, the real status in X-Scopegate-Status
    expect(both.headers['x-scopegate-status']).toBe('400');
    const suffix = await envoy('GET', '/v2/capabilities', { 'x-forwarded-uri': '/v2/room/42', 'x-forwarded-method': 'GET' });
    expect(suffix.status).toBe(400);
    expect(reason(suffix)).toBe('bad_request');
    const repeated = await rawRequest(gw.url, 'GET', AUTH_PATH, { 'x-forwarded-method': 'GET', 'x-forwarded-uri': ['/v2/capabilities', '/v2/room/42'] });
    expect(repeated.status).toBe(400);
  });

  it('keeps two Authorization headers on one sub-request apart: 400 token_conflict', async () => {
    const r = await traefik('GET', '/v2/room/42', { authorization: [`Bearer ${await mint()}`, `Bearer ${await mint()}`] });
    expect(r.status).toBe(400);
    expect(reason(r)).toBe('token_conflict');
  });

  it('answers only trusted proxies: 403 untrusted_proxy for anyone else', async () => {
    const t = await mint();
    const u = new URL(gw.url);
    const r = await new Promise<RawResponse>((resolve, reject) => {
      const req = request(
        { host: u.hostname, port: u.port, path: AUTH_PATH, localAddress: '127.0.0.2', agent: false, headers: { 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/v2/room/42', ...bearer(t) } },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString('utf8')));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(r.status).toBe(403);
    expect(reason(r)).toBe('untrusted_proxy');
    expect(r.headers['x-auth-subject']).toBeUndefined();
  });

  it('answers any method on the endpoint, and keeps the connection for the next sub-request', async () => {
    const t = await mint();
    const u = new URL(gw.url);
    const s = connect(Number(u.port), u.hostname);
    let buf = '';
    let waiter: (() => void) | undefined;
    s.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      waiter?.();
    });
    /** Sends one sub-request on the socket and resolves with its whole response (head + Content-Length body). */
    const exchange = (m: string) =>
      new Promise<string>((resolve, reject) => {
        buf = '';
        const t0 = setTimeout(() => reject(new Error(`no complete answer to ${m}: ${JSON.stringify(buf)}`)), 5_000);
        waiter = () => {
          const end = buf.indexOf('\r\n\r\n');
          if (end === -1) return;
          const len = Number(/\r\ncontent-length: *(\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
          if (buf.length < end + 4 + len) return;
          clearTimeout(t0);
          resolve(buf);
        };
        s.write(`${m} ${AUTH_PATH}/v2/room/42 HTTP/1.1\r\nHost: scopegate\r\nAuthorization: Bearer ${t}\r\n\r\n`);
      });
    try {
      const first = await exchange('GET');
      const second = await exchange('PROPFIND');
      expect(Number(/^HTTP\/1\.1 (\d{3})/.exec(first)?.[1])).toBe(200);
      expect(first).toMatch(/\r\ncontent-length: 0\r\n/i);
      expect(Number(/^HTTP\/1\.1 (\d{3})/.exec(second)?.[1])).toBe(405);
      expect(second).toMatch(/\r\nallow: GET\b/i);
    } finally {
      s.destroy();
    }
  });

  it('never writes the token into its access line', async () => {
    const t = await mint();
    await traefik('GET', `/v2/room/42?auth_token=${t}`);
    await new Promise((r) => setTimeout(r, 100));
    expect(gw.stdout.join('\n')).not.toContain(t);
    expect(gw.stdout.join('\n')).not.toContain(t.split('.')[2]!);
  });
});

// ---------------------------------------------------------------------------------------------
// The shipped snippets, by structure.

/** Every status scopegate writes itself, and auth_test's 202: what nginx must be able to return. */
const STATUSES = [...new Set([202, ...Object.values(ERRORS).map((e) => e.status)])].sort();

/** The statuses an nginx named location rebuilds with `return <status> $scopegate_body`. */
function returnedStatuses(text: string): number[] {
  return [...text.matchAll(/if \(\$scopegate_status = (\d{3})\) \{ return (\d{3}) \$scopegate_body; \}/g)].map((m) => {
    expect(m[1]).toBe(m[2]);
    return Number(m[1]);
  }).sort();
}

describe('deploy/forward-auth/nginx.conf (structure; behaviour: forward-auth-nginx.test.ts)', () => {
  const text = deploy('nginx.conf');
  const code = text.replace(/#.*$/gm, '');

  it('rebuilds every status scopegate can send', () => {
    expect(returnedStatuses(code)).toEqual(STATUSES);
    expect(code).toMatch(/error_page 401 403 = @scopegate_denied;/);
  });

  it('sets every identity header from scopegate (an empty value removes the client\'s copy)', () => {
    for (const h of IDENTITY) expect(code).toMatch(new RegExp(`proxy_set_header ${h}\\s+\\$scopegate_`));
    for (const h of RATE) {
      expect(code).toMatch(new RegExp(`proxy_hide_header ${h};`));
      expect(code.match(new RegExp(`add_header ${h}\\s+\\$scopegate_\\w+ always;`, 'g'))).toHaveLength(2);
    }
  });

  it('keeps connections to scopegate alive and never caches a decision', () => {
    expect(code).toMatch(/upstream scopegate \{[^}]*keepalive \d+;/);
    const auth = /location = \/_scopegate\/auth \{([^}]*)\}/.exec(code)![1]!;
    expect(auth).toMatch(/proxy_http_version 1\.1;/);
    expect(auth).toMatch(/proxy_set_header Connection\s+"";/);
    expect(auth).toMatch(/proxy_set_header X-Original-URI\s+\$request_uri;/);
    expect(auth).toMatch(/proxy_set_header X-Original-Method\s+\$request_method;/);
    expect(auth).toMatch(/proxy_pass_request_body off;/);
    // HEAD: an answer without a body to read, so the connection stays alive after refusals too.
    expect(auth).toMatch(/proxy_method HEAD;/);
    expect(auth).toMatch(/internal;/);
    expect(code).not.toMatch(/proxy_cache\b|auth_request_cache|proxy_store/);
  });
});

describe('deploy/forward-auth/ingress-nginx.yaml (structure)', () => {
  const docs = parseAllDocuments(deploy('ingress-nginx.yaml')).map((d) => d.toJS() as { metadata: { annotations: Record<string, string> } });
  const A = 'nginx.ingress.kubernetes.io/';

  it('has a plain and an exact variant, both asking scopegate\'s path, copying the identity, keeping alive, never caching', () => {
    expect(docs).toHaveLength(2);
    for (const d of docs) {
      const a = d.metadata.annotations;
      expect(new URL(a[`${A}auth-url`]!).pathname).toBe(AUTH_PATH);
      expect(lower(a[`${A}auth-response-headers`]!.split(',').map((s) => s.trim()))).toEqual(lower([...IDENTITY, 'X-Request-Id']));
      expect(Number(a[`${A}auth-keepalive`])).toBeGreaterThan(0);
      // ingress-nginx sends X-Original-URI only when auth-method is set; HEAD keeps its connections alive.
      expect(a[`${A}auth-method`]).toBe('HEAD');
      for (const k of Object.keys(a)) expect(k).not.toMatch(/auth-cache/);
    }
  });

  it('the exact variant rebuilds every status as nginx.conf does', () => {
    const a = docs[1]!.metadata.annotations;
    expect(a[`${A}configuration-snippet`]).toMatch(/error_page 401 403 = @scopegate_denied;/);
    expect(returnedStatuses(a[`${A}server-snippet`]!)).toEqual(STATUSES);
    for (const h of RATE) expect(a[`${A}configuration-snippet`]).toMatch(new RegExp(`add_header ${h}\\s+\\$scopegate_\\w+ always;`));
  });
});

describe('deploy/forward-auth/traefik.yaml (structure)', () => {
  const cfg = parse(deploy('traefik.yaml')) as {
    http: {
      middlewares: Record<string, { forwardAuth?: Record<string, unknown>; headers?: { customRequestHeaders: Record<string, string> } }>;
      routers: Record<string, { middlewares: string[] }>;
    };
  };
  const fa = cfg.http.middlewares['scopegate-auth']!.forwardAuth!;

  it('asks scopegate\'s path with only what it needs, never trusting the client\'s X-Forwarded-*', () => {
    expect(new URL(fa['address'] as string).pathname).toBe(AUTH_PATH);
    expect(fa['trustForwardHeader']).toBe(false);
    expect(lower(fa['authRequestHeaders'] as string[])).toEqual(['authorization', 'x-request-id']);
    expect(fa['forwardBody']).toBe(false);
  });

  it('copies every identity and rate-limit header onto the upstream request', () => {
    expect(lower(fa['authResponseHeaders'] as string[])).toEqual(lower([...IDENTITY, ...RATE, 'X-Request-Id']));
  });

  it('strips the client\'s identity headers in both spellings before asking', () => {
    const strip = cfg.http.middlewares['scopegate-strip-identity']!.headers!.customRequestHeaders;
    for (const h of IDENTITY) {
      expect(strip[h]).toBe('');
      expect(strip[h.replaceAll('-', '_')]).toBe('');
    }
    for (const r of Object.values(cfg.http.routers)) expect(r.middlewares).toEqual(['scopegate-strip-identity', 'scopegate-auth']);
  });
});

describe('deploy/forward-auth/envoy.yaml (structure)', () => {
  type Filter = { name: string; typed_config: Record<string, unknown> };
  type Pattern = { exact?: string; prefix?: string; ignore_case?: boolean };
  const cfg = parse(deploy('envoy.yaml')) as {
    static_resources: { listeners: Array<{ filter_chains: Array<{ filters: Array<{ typed_config: { http_filters: Filter[]; common_http_protocol_options: Record<string, string>; upgrade_configs: Array<{ upgrade_type: string }> } }> }> }>; clusters: Array<{ name: string }> };
  };
  const hcm = cfg.static_resources.listeners[0]!.filter_chains[0]!.filters[0]!.typed_config;
  const names = hcm.http_filters.map((f) => f.name);
  const authz = hcm.http_filters.find((f) => f.name === 'envoy.filters.http.ext_authz')!.typed_config as {
    failure_mode_allow: boolean;
    with_request_body?: unknown;
    http_service: {
      server_uri: { cluster: string };
      path_prefix: string;
      authorization_request: { allowed_headers: { patterns: Pattern[] } };
      authorization_response: Record<'allowed_upstream_headers' | 'allowed_client_headers' | 'allowed_client_headers_on_success', { patterns: Pattern[] }>;
    };
  };
  const exacts = (ps: Pattern[]) => ps.filter((p) => p.exact).map((p) => p.exact!.toLowerCase()).sort();
  const covers = (ps: Pattern[], header: string) => ps.some((p) => (p.exact ? p.exact.toLowerCase() === header.toLowerCase() : header.toLowerCase().startsWith(p.prefix!.toLowerCase())));

  it('never fails open and never sends the body; asks <path_prefix><original path>', () => {
    expect(authz.failure_mode_allow).toBe(false);
    expect(authz.with_request_body).toBeUndefined();
    expect(authz.http_service.path_prefix).toBe(AUTH_PATH);
    expect(cfg.static_resources.clusters.map((c) => c.name)).toContain(authz.http_service.server_uri.cluster);
  });

  it('sends scopegate only Authorization and X-Request-Id', () => {
    expect(exacts(authz.http_service.authorization_request.allowed_headers.patterns)).toEqual(['authorization', 'x-request-id']);
  });

  it('copies the identity upstream, the rate-limit headers to the client, and the refusal headers to the client', () => {
    const r = authz.http_service.authorization_response;
    expect(exacts(r.allowed_upstream_headers.patterns)).toEqual(lower([...IDENTITY, 'X-Request-Id']));
    for (const h of RATE) expect(covers(r.allowed_client_headers_on_success.patterns, h), h).toBe(true);
    for (const h of [...RATE, 'Content-Type', 'WWW-Authenticate', 'Allow', 'Retry-After', 'X-Request-Id']) expect(covers(r.allowed_client_headers.patterns, h), h).toBe(true);
    for (const h of ['X-Scopegate-Status', 'X-Scopegate-Body']) expect(covers(r.allowed_client_headers.patterns, h)).toBe(false);
  });

  it('removes the client\'s identity headers before ext_authz, drops underscore names, upgrades WebSockets', () => {
    const mutation = hcm.http_filters.find((f) => f.name === 'envoy.filters.http.header_mutation')!.typed_config as { mutations: { request_mutations: Array<{ remove: string }> } };
    const removed = mutation.mutations.request_mutations.map((m) => m.remove);
    for (const h of [...IDENTITY, 'X-Original-URI', 'X-Original-Method', 'X-Forwarded-Uri', 'X-Forwarded-Method']) expect(removed).toContain(h.toLowerCase());
    expect(names.indexOf('envoy.filters.http.header_mutation')).toBeLessThan(names.indexOf('envoy.filters.http.ext_authz'));
    expect(names.at(-1)).toBe('envoy.filters.http.router');
    expect(['DROP_HEADER', 'REJECT_REQUEST']).toContain(hcm.common_http_protocol_options['headers_with_underscores_action']);
    expect(hcm.upgrade_configs.map((u) => u.upgrade_type)).toContain('websocket');
  });
});

describe('deploy/forward-auth/Caddyfile (structure)', () => {
  const code = deploy('Caddyfile').replace(/#.*$/gm, '');
  const route = /route \{([\s\S]*)\n\t\}/.exec(code)![1]!;
  const fa = /forward_auth (\S+) \{([^}]*)\}/.exec(route)!;

  it('asks scopegate\'s path and copies every identity and rate-limit header', () => {
    expect(/uri (\S+)/.exec(fa[2]!)![1]).toBe(AUTH_PATH);
    const copied = /copy_headers (.+)/.exec(fa[2]!)![1]!.trim().split(/\s+/);
    expect(lower(copied)).toEqual(lower([...IDENTITY, ...RATE, 'X-Request-Id']));
  });

  it('strips the client\'s identity and description headers first, then proxies, in written order', () => {
    const at = (s: string) => route.indexOf(s);
    for (const h of [...IDENTITY, ...IDENTITY.map((x) => x.replaceAll('-', '_')), 'X-Original-Uri', 'X-Original-Method']) {
      expect(at(`request_header -${h}\n`), h).toBeGreaterThan(-1);
      expect(at(`request_header -${h}\n`)).toBeLessThan(at('forward_auth'));
    }
    expect(at('reverse_proxy')).toBeGreaterThan(at('forward_auth'));
  });
});
