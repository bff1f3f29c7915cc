/**
 * SPEC §8 forward auth, against the real thing: nginx (Debian's nginx-light, auth_request) runs
 * the shipped deploy/forward-auth/nginx.conf in front of the echo upstream, asking a real
 * scopegate process (`node dist/cli.js serve`, `forward_auth:` in its config). The same scopegate
 * is also the proxy door in front of the same upstream, so every case is sent both ways and must
 * come back alike — status, body byte for byte, the gateway's headers — with the upstream
 * receiving the same thing, or nothing at all.
 *
 * Missing nginx fails under CI and is a visible skip elsewhere (test/helpers/nginx.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { TEST_ISSUER, TEST_SECRET } from '../helpers/gateway.js';
import { rawRequest, type RawResponse } from '../helpers/http.js';
import { describeNginx, forwardAuthSnippet, startNginx, type NginxServer } from '../helpers/nginx.js';
import { spawnGateway, type GatewayProcess } from '../helpers/process.js';
import { generateKeys, hsToken, nowS, signToken, tempDir, type TempDir, type TestKeyPair } from '../helpers/tokens.js';
import { closedPortUrl, startUpstream, type RecordedRequest, type Upstream } from '../helpers/upstream.js';

const AUTH_PATH = '/_scopegate/auth';
const AUTH_TEST_BODY = '{"success":{"code":202,"message":"This auth_token has access to use this method.","type":"Accepted"}}';

let up: Upstream;
let dir: TempDir;
let gw: GatewayProcess;
let ngx: NginxServer;
let rsa: TestKeyPair;

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
    jti: `ngx-${++seq}-${randomBytes(3).toString('hex')}`,
    ...claims,
  });
}

function config(upstream: string, jwksUrl: string): string {
  return `
realm: api
shutdown_timeout_ms: 1000
listen: { host: 127.0.0.1, port: 0 }
admin: { enabled: false }
trusted_proxies: [127.0.0.1/32]
forward_auth: { path: ${AUTH_PATH} }
upstreams:
  default: { url: ${upstream}, timeout_ms: 2000, connect_timeout_ms: 500 }
tokens:
  issuers:
${TEST_ISSUER}
      claims: { client_type: client_type, scopes: scope, room: room_id, room_name: room_name }
    - name: idp
      issuer: https://idp.test/
      audience: api
      algorithms: [RS256]
      jwks_url: ${jwksUrl}
      jwks: { timeout_ms: 300, cooldown_ms: 0 }
rate_limit:
  store: memory
  default: { limit: 100, window_s: 300 }
routes:
  - path: /v2/capabilities
    public: true
  - id: notify
    path: /v2/room/{room}/notification
    methods: [POST]
    scopes: [send_notification]
    client_types: [group, room, user]
    room_param: room
  - id: events
    path: /v2/room/{room}/events
    methods: [GET]
    scopes: [view_room]
    room_param: room
  - id: send-message
    path: /v2/room/{room}/message
    methods: [POST]
    scopes: [send_message]
    client_types: [user]
  - id: get-room
    path: /v2/room/{room}
    methods: [GET]
    scopes: [view_group, view_room]
    client_types: [group, room, user]
    room_param: room
  - id: tight
    path: /v2/tight
    methods: [GET]
    rate_limit: { limit: 2, window_s: 3600 }
`;
}

const hostPort = (url: string) => new URL(url).host;

describeNginx('forward auth through real nginx (deploy/forward-auth/nginx.conf)', () => {
  beforeAll(async () => {
    rsa = await generateKeys('RS256');
    up = await startUpstream();
    dir = await tempDir();
    const file = await dir.write('gateway.yaml', config(up.url, `${await closedPortUrl()}/jwks.json`));
    gw = await spawnGateway(file);
    ngx = await startNginx((port) => forwardAuthSnippet({ listenPort: port, scopegate: hostPort(gw.url), app: hostPort(up.url) }));
  }, 30_000);

  afterAll(async () => {
    await ngx?.stop();
    await gw?.kill();
    await up?.close();
    await dir?.cleanup();
  });

  interface Seen {
    status: number;
    body: string;
    headers: Record<string, string>;
    requestId: string | undefined;
    /** What the upstream received for this request, or null. */
    upstream: RecordedRequest | null;
  }

  /** The gateway's own headers, compared between the doors (never transport details like Date). */
  const COMPARED = /^(content-type|www-authenticate|allow|retry-after|x-ratelimit-|ratelimit|x-floodcontrol-)/;

  async function send(base: string, method: string, path: string, headers: Record<string, string | string[]> = {}, body?: string): Promise<Seen> {
    const before = up.requests.length;
    const res: RawResponse = await rawRequest(base, method, path, headers, body);
    const rec = up.requests[before] ?? null;
    const h: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers)) if (COMPARED.test(k) && v !== undefined) h[k] = Array.isArray(v) ? v.join('\n') : String(v);
    // Seconds-based: may tick between the two requests.
    for (const k of ['x-ratelimit-reset', 'ratelimit', 'x-floodcontrol-reset']) delete h[k];
    const rid = res.headers['x-request-id'];
    return { status: res.status, body: res.body, headers: h, requestId: Array.isArray(rid) ? rid.join(',') : rid, upstream: rec };
  }

  /** The same request through nginx and to the proxy door (the token per door, so windows stay apart). */
  async function both(method: string, path: (t: string) => string, headers: (t: string) => Record<string, string> , claims: Record<string, unknown> | null, body?: string) {
    const tn = claims ? await mint(claims) : '';
    const td = claims ? await mint(claims) : '';
    const viaNginx = await send(ngx.url, method, path(tn), headers(tn), body);
    const direct = await send(gw.url, method, path(td), headers(td), body);
    return { viaNginx, direct };
  }

  function expectSame(s: { viaNginx: Seen; direct: Seen }): Seen {
    expect(s.viaNginx.status).toBe(s.direct.status);
    expect(s.viaNginx.headers).toEqual(s.direct.headers);
    if (s.direct.upstream === null) expect(s.viaNginx.body).toBe(s.direct.body);
    expect(s.viaNginx.requestId).toMatch(/^[0-9a-f-]{36}$/);
    return s.viaNginx;
  }

  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
  const reasonOf = (s: Seen) => (JSON.parse(s.body) as { error: { reason: string } }).error.reason;

  it('forwards an allowed request with scopegate\'s identity headers; the client\'s copies never arrive', async () => {
    const spoof = { 'x-auth-subject': 'mallory', 'X-AUTH-SCOPES': 'admin_group', 'x-auth-room': '1', x_auth_subject: 'root', 'x-auth-token-id': 'forged' };
    const s = await both('GET', () => '/v2/room/42?expand=items', (t) => ({ ...bearer(t), ...spoof }), { sub: 'alice' });
    const n = expectSame(s);
    expect(n.status).toBe(200);
    for (const seen of [s.viaNginx, s.direct]) {
      const u = seen.upstream!;
      expect(u.method).toBe('GET');
      expect(u.url).toBe('/v2/room/42?expand=items');
      expect(u.headers['x-auth-subject']).toBe('alice');
      expect(u.headers['x-auth-scopes']).toBe('view_room');
      expect(u.headers['x-auth-client-type']).toBe('user');
      expect(u.headers['x-auth-issuer']).toBe('scopegate-test');
      expect(u.headers['x-auth-token-id']).toMatch(/^ngx-/);
      expect(u.headers['x-auth-room']).toBeUndefined();
      expect(u.headers['x_auth_subject']).toBeUndefined();
      // One subject header arrived, in any spelling: scopegate's.
      expect(u.rawHeaders.filter((h, i) => i % 2 === 0 && /^x[-_]auth[-_]subject$/i.test(h))).toHaveLength(1);
      // The request id the client sees is the one the upstream got.
      expect(u.headers['x-request-id']).toBe(seen.requestId);
      expect(u.headers['x-forwarded-for']).toMatch(/127\.0\.0\.1$/);
    }
    expect(n.headers['x-ratelimit-limit']).toBe('100');
    expect(n.headers['x-ratelimit-remaining']).toBe('99');
    expect(n.headers['ratelimit-policy']).toBe(s.direct.headers['ratelimit-policy']);
  });

  it('forwards the query without auth_token, and the body of a POST', async () => {
    const t = await mint({ scope: 'send_notification', client_type: 'room', room_id: '42', room_name: 'ops' });
    const before = up.requests.length;
    const res = await rawRequest(ngx.url, 'POST', `/v2/room/42/notification?auth_token=${t}&color=red`, { 'content-type': 'application/json' }, '{"message":"hi"}');
    expect(res.status).toBe(200);
    const u = up.requests[before]!;
    await u.done;
    expect(u.url).toBe('/v2/room/42/notification?color=red');
    expect(u.body.toString('utf8')).toBe('{"message":"hi"}');
    expect(u.headers['x-auth-room']).toBe('42');
    expect(u.headers['x-auth-room-name']).toBe('ops');
    expect(u.headers['x-auth-client-type']).toBe('room');
  });

  it('keeps a valid X-Request-Id from the client, on both legs', async () => {
    const s = await send(ngx.url, 'GET', '/v2/room/42', { ...bearer(await mint()), 'x-request-id': 'client-chosen-42' });
    expect(s.status).toBe(200);
    expect(s.requestId).toBe('client-chosen-42');
    expect(s.upstream?.headers['x-request-id']).toBe('client-chosen-42');
  });

  it('forwards a public route without identity, spoofed copies stripped', async () => {
    const s = await both('GET', () => '/v2/capabilities', () => ({ 'x-auth-subject': 'mallory' }), null);
    expect(s.viaNginx.status).toBe(200);
    expect(s.viaNginx.upstream?.headers['x-auth-subject']).toBeUndefined();
    expect(s.direct.upstream?.headers['x-auth-subject']).toBeUndefined();
  });

  it.each([
    ['no token', 'GET', '/v2/room/42', null, {}, 401, 'token_missing'],
    ['a garbage token', 'GET', '/v2/room/42', null, { authorization: 'Bearer not.a.jwt' }, 401, 'token_malformed'],
    ['an unknown path', 'GET', '/v2/nothing', null, {}, 404, 'route_not_found'],
    ['a wrong method', 'DELETE', '/v2/room/42', null, {}, 405, 'method_not_allowed'],
    ['an encoded slash', 'GET', '/v2/room/a%2Fb', null, {}, 400, 'bad_request'],
    ['a bad auth_test spelling', 'GET', '/v2/room/42?auth_test=1', {}, {}, 400, 'bad_request'],
    ['a token in the header and another in the query', 'GET', '/v2/room/42?auth_token=x.y.z', {}, {}, 400, 'token_conflict'],
    ['a missing scope', 'GET', '/v2/room/42', { scope: 'send_message' }, {}, 403, 'scope_insufficient'],
    ['a client type the route does not allow', 'POST', '/v2/room/42/message', { client_type: 'group', scope: 'send_message' }, {}, 403, 'client_type_forbidden'],
    ['another room', 'GET', '/v2/room/43', { client_type: 'room', room_id: '42' }, {}, 403, 'room_forbidden'],
  ] as const)('answers %s exactly as the proxy door does, the upstream never contacted', async (_n, method, path, claims, headers, status, reason) => {
    const s = await both(method, () => path, (t) => ({ ...(claims ? bearer(t) : {}), ...headers }), claims);
    const n = expectSame(s);
    expect(n.status).toBe(status);
    expect(reasonOf(n)).toBe(reason);
    expect(s.viaNginx.upstream).toBeNull();
    expect(s.direct.upstream).toBeNull();
    // nginx's own X-Scopegate-* plumbing stays between nginx and scopegate.
    const raw = await rawRequest(ngx.url, method, path, {});
    expect(raw.headers['x-scopegate-status']).toBeUndefined();
    expect(raw.headers['x-scopegate-body']).toBeUndefined();
  });

  it('sends 401\'s WWW-Authenticate once, and 403\'s insufficient_scope challenge', async () => {
    const r401 = await rawRequest(ngx.url, 'GET', '/v2/room/42', { authorization: 'Bearer not.a.jwt' });
    const r403 = await rawRequest(ngx.url, 'GET', '/v2/room/42', bearer(await mint({ scope: 'send_message' })));
    expect(r401.headers['www-authenticate']).toBe('Bearer realm="api", error="invalid_token"');
    expect(r403.headers['www-authenticate']).toBe('Bearer realm="api", error="insufficient_scope", scope="view_group view_room"');
  });

  it('answers auth_test with the exact 202 and the rate-limit headers; the upstream is never contacted', async () => {
    const s = await both('POST', () => '/v2/room/42/notification?auth_test=true', bearer, { scope: 'send_notification', client_type: 'room', room_id: '42' });
    const n = expectSame(s);
    expect(n.status).toBe(202);
    expect(n.body).toBe(AUTH_TEST_BODY);
    expect(n.headers['content-type']).toBe('application/json');
    expect(n.headers['x-ratelimit-remaining']).toBe('100');
    expect(s.viaNginx.upstream).toBeNull();
    expect(s.direct.upstream).toBeNull();
  });

  it('answers 429 with Retry-After once the window is spent, exactly as the proxy door does', async () => {
    const seen: Record<'viaNginx' | 'direct', Seen[]> = { viaNginx: [], direct: [] };
    const tokens = { viaNginx: await mint(), direct: await mint() };
    for (let i = 0; i < 3; i++) {
      seen.viaNginx.push(await send(ngx.url, 'GET', '/v2/tight', bearer(tokens.viaNginx)));
      seen.direct.push(await send(gw.url, 'GET', '/v2/tight', bearer(tokens.direct)));
    }
    expect(seen.viaNginx.map((s) => s.status)).toEqual([200, 200, 429]);
    const n = expectSame({ viaNginx: seen.viaNginx[2]!, direct: seen.direct[2]! });
    expect(reasonOf(n)).toBe('rate_limited');
    expect(Number(n.headers['retry-after'])).toBeGreaterThan(0);
    expect(n.headers['x-ratelimit-limit']).toBe('2');
    expect(n.headers['x-ratelimit-remaining']).toBe('0');
    expect(seen.viaNginx[2]!.upstream).toBeNull();
    expect(seen.viaNginx[1]!.headers['x-ratelimit-remaining']).toBe('0');
  });

  it('answers 503 keys_unavailable exactly as the proxy door does while the JWKS was never obtained', async () => {
    const t = await signToken(rsa, { iss: 'https://idp.test/', aud: 'api', sub: 'carol', iat: nowS(), exp: nowS() + 600 });
    const s = { viaNginx: await send(ngx.url, 'GET', '/v2/room/42', bearer(t)), direct: await send(gw.url, 'GET', '/v2/room/42', bearer(t)) };
    const n = expectSame(s);
    expect(n.status).toBe(503);
    expect(reasonOf(n)).toBe('keys_unavailable');
    expect(s.viaNginx.upstream).toBeNull();
  });

  it('lets an allowed WebSocket upgrade through nginx, with the identity headers, and refuses one without a token', async () => {
    const t = await mint();
    const before = up.requests.length;
    const ok = await rawHandshake(ngx.url, '/v2/room/42/events', { ...bearer(t), 'x-auth-subject': 'mallory' });
    try {
      expect(ok.status).toBe(101);
      expect(ok.headers['sec-websocket-accept']).toBe(createHash('sha1').update(`${ok.key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64'));
      ok.socket.write(clientFrame('hello'));
      expect(await readFrame(ok.socket, ok.rest)).toEqual({ opcode: 1, payload: 'hello' });
      const u = up.requests[before]!;
      expect(u.upgrade).toBe(true);
      expect(u.headers['x-auth-subject']).toBe('alice');
    } finally {
      ok.socket.destroy();
    }

    const n = up.requests.length;
    const refused = await rawHandshake(ngx.url, '/v2/room/42/events', {});
    refused.socket.destroy();
    const direct = await rawRequest(gw.url, 'GET', '/v2/room/42/events', {});
    expect(refused.status).toBe(401);
    expect(refused.body).toBe(direct.body);
    expect(reasonOf({ body: refused.body } as Seen)).toBe('token_missing');
    expect(up.requests.length).toBe(n);
  });

  it('answers only trusted proxies: a peer outside trusted_proxies gets 403 untrusted_proxy', async () => {
    const t = await mint();
    const headers = { 'x-original-method': 'GET', 'x-original-uri': '/v2/room/42', ...bearer(t) };
    const from = (localAddress: string) =>
      new Promise<RawResponse>((resolve, reject) => {
        const u = new URL(gw.url);
        const req = request({ host: u.hostname, port: u.port, path: AUTH_PATH, headers, localAddress, agent: false }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString('utf8')));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        });
        req.on('error', reject);
        req.end();
      });
    const untrusted = await from('127.0.0.2');
    expect(untrusted.status).toBe(403);
    expect(reasonOf({ body: untrusted.body } as Seen)).toBe('untrusted_proxy');
    expect(untrusted.headers['x-auth-subject']).toBeUndefined();
    const trusted = await from('127.0.0.1');
    expect(trusted.status).toBe(200);
    expect(trusted.headers['x-auth-subject']).toBe('alice');
  });

  it('reuses its connections to scopegate for allowed and refused sub-requests (keepalive + HEAD)', async () => {
    // A counting TCP relay between a second nginx and scopegate: real bytes, counted connections.
    let accepted = 0;
    const relay = createNetServer((client) => {
      accepted++;
      const upstream = connect(Number(new URL(gw.url).port), '127.0.0.1');
      client.pipe(upstream).pipe(client);
      const close = () => (client.destroy(), upstream.destroy());
      client.on('error', close);
      upstream.on('error', close);
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    const relayPort = (relay.address() as AddressInfo).port;
    const counted = await startNginx((port) => forwardAuthSnippet({ listenPort: port, scopegate: `127.0.0.1:${relayPort}`, app: hostPort(up.url) }));
    try {
      const t = await mint();
      const statuses: number[] = [];
      for (let i = 0; i < 10; i++) {
        statuses.push((await rawRequest(counted.url, 'GET', '/v2/room/42', bearer(t))).status);
        statuses.push((await rawRequest(counted.url, 'GET', '/v2/room/42', {})).status);
      }
      expect(statuses).toEqual(Array.from({ length: 10 }, () => [200, 401]).flat());
      expect(accepted).toBe(1);
    } finally {
      await counted.stop();
      await new Promise<void>((r) => relay.close(() => r()));
    }
  });

  it('the exact ingress-nginx variant\'s snippets work where ingress-nginx puts them', async () => {
    // A model of the location blocks ingress-nginx's template generates for auth-url, auth-method,
    // auth-response-headers, configuration-snippet and server-snippet — not ingress-nginx itself.
    const exact = parseAllDocuments(readFileSync(fileURLToPath(new URL('../../deploy/forward-auth/ingress-nginx.yaml', import.meta.url)), 'utf8'))[1]!.toJS() as {
      metadata: { annotations: Record<string, string> };
    };
    const a = (k: string) => exact.metadata.annotations[`nginx.ingress.kubernetes.io/${k}`]!;
    const copied = a('auth-response-headers').split(',').map((h) => h.trim());
    const model = (port: number) => `
upstream ingress_auth { server ${hostPort(gw.url)}; keepalive ${a('auth-keepalive')}; }
server {
    listen 127.0.0.1:${port};
${a('server-snippet')}
    location = /_external-auth {
        internal;
        proxy_method ${a('auth-method')};
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header X-Forwarded-Proto "";
        proxy_set_header X-Original-URI $request_uri;
        proxy_set_header X-Scheme $scheme;
        proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
        proxy_set_header X-Original-Method $request_method;
        proxy_set_header X-Sent-From "nginx-ingress-controller";
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-Auth-Request-Redirect $request_uri;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass http://ingress_auth${new URL(a('auth-url')).pathname};
    }
    location / {
        auth_request /_external-auth;
${copied.map((h, i) => `        auth_request_set $authHeader${i} $upstream_http_${h.toLowerCase().replaceAll('-', '_')};\n        proxy_set_header '${h}' $authHeader${i};`).join('\n')}
${a('configuration-snippet')}
        proxy_pass http://${hostPort(up.url)};
    }
}
`;
    const ing = await startNginx(model);
    try {
      const t = await mint({ scope: 'send_notification', client_type: 'room', room_id: '42' });
      const probe = await send(ing.url, 'POST', '/v2/room/42/notification?auth_test=true', bearer(t));
      expect(probe.status).toBe(202);
      expect(probe.body).toBe(AUTH_TEST_BODY);
      expect(probe.upstream).toBeNull();
      const room42 = async () => bearer(await mint({ client_type: 'room', room_id: '42' }));
      const none = async () => ({});
      for (const [method, path, headers] of [['GET', '/v2/nothing', none], ['DELETE', '/v2/room/42', none], ['GET', '/v2/room/42', none], ['GET', '/v2/room/a%2Fb', none], ['GET', '/v2/room/43', room42]] as const) {
        const s = { viaNginx: await send(ing.url, method, path, await headers()), direct: await send(gw.url, method, path, await headers()) };
        expectSame(s);
        expect(s.viaNginx.upstream).toBeNull();
      }
      const tight = await mint();
      const codes = [];
      for (let i = 0; i < 3; i++) codes.push(await send(ing.url, 'GET', '/v2/tight', bearer(tight)));
      expect(codes.map((c) => c.status)).toEqual([200, 200, 429]);
      expect(Number(codes[2]!.headers['retry-after'])).toBeGreaterThan(0);
      expect(reasonOf(codes[2]!)).toBe('rate_limited');
      const ok = await send(ing.url, 'GET', '/v2/room/42', { ...(await room42()), 'x-auth-subject': 'mallory', 'x-auth-group': 'g' });
      expect(ok.status).toBe(200);
      expect(ok.upstream?.headers['x-auth-subject']).toBe('alice');
      expect(ok.upstream?.headers['x-auth-room']).toBe('42');
      expect(ok.upstream?.headers['x-auth-group']).toBeUndefined();
      expect(ok.headers['x-ratelimit-limit']).toBe('100');
      expect(await ing.errorLog()).not.toMatch(/\[(error|crit|alert|emerg)\]/);
    } finally {
      await ing.stop();
    }
  });

  it('left nothing alarming in nginx\'s error log', async () => {
    const log = await ngx.errorLog();
    expect(log).not.toMatch(/auth request unexpected status|\[(error|crit|alert|emerg)\]/);
  });
});

// ---------------------------------------------------------------------------------------------
// A raw RFC 6455 client: reads refusals byte for byte and echoes one frame.

interface Handshake {
  status: number;
  headers: Record<string, string>;
  body: string;
  socket: Socket;
  rest: Buffer;
  key: string;
}

function rawHandshake(base: string, path: string, headers: Record<string, string>): Promise<Handshake> {
  const u = new URL(base);
  const key = randomBytes(16).toString('base64');
  return new Promise((resolve, reject) => {
    const socket = connect(Number(u.port), u.hostname);
    let buf = Buffer.alloc(0);
    let head: { status: number; headers: Record<string, string>; rest: Buffer; length: number } | undefined;
    socket.on('error', reject);
    socket.on('connect', () => {
      const lines = [`GET ${path} HTTP/1.1`, `Host: ${u.host}`, 'Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13', `Sec-WebSocket-Key: ${key}`];
      for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    });
    const finish = () => {
      if (!head) return;
      socket.removeAllListeners('data');
      resolve({ status: head.status, headers: head.headers, body: head.status === 101 ? '' : head.rest.toString('utf8'), socket, rest: head.rest, key });
    };
    socket.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (!head) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const [statusLine, ...lines] = buf.subarray(0, end).toString('latin1').split('\r\n');
        const h: Record<string, string> = {};
        for (const l of lines) {
          const i = l.indexOf(':');
          h[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
        }
        head = { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0), headers: h, rest: buf.subarray(end + 4), length: Number(h['content-length'] ?? -1) };
      } else {
        head.rest = Buffer.concat([head.rest, c]);
      }
      // nginx keeps the connection open after a refusal: the body is complete at Content-Length.
      if (head.status === 101 || (head.length >= 0 && head.rest.length >= head.length)) finish();
    });
    socket.on('close', () => (head ? finish() : reject(new Error('connection closed before a response head'))));
  });
}

function clientFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!))]);
}

function readFrame(socket: Socket, pending: Buffer): Promise<{ opcode: number; payload: string }> {
  return new Promise((resolve, reject) => {
    let buf = pending;
    const tryParse = () => {
      if (buf.length < 2) return;
      const len = buf[1]! & 0x7f;
      if (buf.length < 2 + len) return;
      socket.off('data', onData);
      resolve({ opcode: buf[0]! & 0x0f, payload: buf.subarray(2, 2 + len).toString('utf8') });
    };
    const onData = (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      tryParse();
    };
    socket.on('data', onData);
    socket.once('error', reject);
    tryParse();
  });
}
