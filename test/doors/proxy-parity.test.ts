/**
 * SPEC §8: every door gives a client the same status, body and headers for the same request and
 * config. The Node door (`node dist/cli.js serve`) and the Bun door (`bun dist/cli.js serve`) run
 * as real processes on one config, in front of one real upstream; each case is sent to both and
 * must come back the same — and as the SPEC says — with the upstream receiving the same thing (or
 * nothing). The differences that cannot be helped (Bun.serve normalises the URL before anyone sees
 * it) are tested as such at the end and written down in docs/doors.md.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { WebSocket } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, TEST_SECRET } from '../helpers/gateway.js';
import { rawExchange, rawRequest } from '../helpers/http.js';
import { spawnGateway, type GatewayProcess, type Runtime } from '../helpers/process.js';
import { hsToken, nowS, tempDir, type TempDir } from '../helpers/tokens.js';
import { closedPortUrl, startUpstream, type Upstream } from '../helpers/upstream.js';

const RUNTIMES: Runtime[] = ['node', 'bun'];

let up: Upstream;
let dir: TempDir;
/** The doors' config as written, for tests that start another pair with one setting changed. */
let configText = '';
const doors = new Map<Runtime, GatewayProcess>();
let rawUp: Server;
/** What the raw upstream writes for /v2/raw/<name>, byte for byte, before it closes. */
const RAW_ANSWERS: Record<string, string> = {
  status999: 'HTTP/1.1 999 Weird\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok',
  'cl-and-te': 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
  'bare-cr-header': 'HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok',
  garbage: 'not http at all\r\n\r\n',
  'early-hints': 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok',
  'close-delimited': 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nno length, ends at close',
};
/** Bytes /v2/firehose has handed to its socket so far (the last request's). */
let firehoseSent = 0;

function mint(claims: Record<string, unknown>): Promise<string> {
  return hsToken(TEST_SECRET, { iss: 'scopegate-test', aud: 'api', iat: nowS(), exp: nowS() + 3600, ...claims });
}

beforeAll(async () => {
  up = await startUpstream({
    routes: {
      '/v2/slow': { kind: 'slow', delayMs: 3_000 },
      // Takes the request head, then never reads the body and never answers.
      '/v2/stuck': { kind: 'handler', fn: (req) => void req.pause() },
      '/v2/reset-mid-body': { kind: 'stream', chunks: ['first part;', 'second part;'], intervalMs: 30, thenReset: true },
      // Announces 100 bytes, sends 11, then resets / goes silent: a short body with a length.
      '/v2/short/reset': { kind: 'handler', fn: (req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
        res.write('first part;', () => setTimeout(() => req.socket.destroy(), 30));
      } },
      '/v2/short/silent': { kind: 'handler', fn: (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
        res.write('first part;');
      } },
      // Bodies without a Content-Type, one with a length and one chunked.
      '/v2/untyped': { kind: 'handler', fn: (req, res) => {
        if (req.url?.includes('empty')) {
          res.writeHead(200, { 'content-length': '0' });
          res.end();
        } else if (req.url?.includes('chunked')) {
          res.writeHead(200);
          res.write('part one;');
          setTimeout(() => res.end('part two'), 20);
        } else {
          res.writeHead(200, { 'content-length': '5' });
          res.end('plain');
        }
      } },
      // Up to 512 MiB, written only as fast as the gateway takes it; firehoseSent counts it.
      '/v2/firehose': { kind: 'handler', fn: (_req, res) => {
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        let sent = 0;
        const pump = (): void => {
          while (sent < 512 * 1024 * 1024 && !res.destroyed) {
            sent += chunk.length;
            firehoseSent = sent;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        pump();
      } },
      // Sends the head and one chunk, then nothing: neither more body nor the end of it.
      '/v2/silent-mid-body': { kind: 'handler', fn: (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('first part;');
      } },
      '/v2/cookies': { kind: 'respond', status: 201, headers: { 'set-cookie': ['a=1', 'b=2'], connection: 'x-internal', 'x-internal': 'secret', 'keep-alive': 'timeout=5' }, body: 'made' },
    },
  });
  // An upstream that writes whatever bytes a test names (framing no HTTP library would send).
  rawUp = createServer((sock) => {
    sock.on('error', () => undefined);
    sock.once('data', (d: Buffer) => {
      const path = d.toString('latin1').split(' ')[1] ?? '';
      sock.end(RAW_ANSWERS[path.slice('/v2/raw/'.length)] ?? 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    });
  }).listen(0, '127.0.0.1');
  await once(rawUp, 'listening');
  dir = await tempDir();
  const dead = await closedPortUrl();
  const text = baseConfig({
    upstream: up.url,
    extra: `listen: { host: 127.0.0.1, port: 0, body_idle_timeout_ms: 500 }\nadmin: { enabled: false }\n`,
    rateLimit: `rate_limit:\n  store: memory\n  default: { limit: 100, window_s: 300 }\n`,
    routes: `  - path: /v2/capabilities
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
    rate_limit: { limit: 2, window_s: 3600 }
  - id: slow
    path: /v2/slow
    methods: [GET]
  - id: cookies
    path: /v2/cookies
    methods: [POST]
  - id: echo
    path: /v2/echo
    methods: [POST, PUT]
  - id: stuck
    path: /v2/stuck
    methods: [PUT]
  - id: dead
    path: /v2/dead
    methods: [GET]
    upstream: dead
  - id: events
    path: /v2/events
    methods: [GET]
  - id: reset-mid-body
    path: /v2/reset-mid-body
    methods: [GET]
  - id: silent-mid-body
    path: /v2/silent-mid-body
    methods: [GET]
  - id: short
    path: /v2/short/{how}
    methods: [GET]
  - id: untyped
    path: /v2/untyped
    methods: [GET]
  - id: firehose
    path: /v2/firehose
    methods: [GET]
  - id: get-body
    path: /v2/get-body
    methods: [GET]
  - id: raw
    path: /v2/raw/{answer}
    methods: [GET]
    upstream: raw`,
  }).replace(/upstreams:\n/, `upstreams:\n  dead: { url: "${dead}" }\n  raw: { url: "http://127.0.0.1:${(rawUp.address() as AddressInfo).port}" }\n`).replace(/timeout_ms: \d+/, 'timeout_ms: 1000');
  configText = text;
  const file = await dir.write('gateway.yaml', text);
  await Promise.all(RUNTIMES.map(async (r) => doors.set(r, await spawnGateway(file, { runtime: r }))));
}, 30_000);

afterAll(async () => {
  await Promise.all([...doors.values()].map((d) => d.kill()));
  rawUp?.close();
  await up?.close();
  await dir?.cleanup();
});

interface Seen {
  status: number;
  body: string;
  headers: Record<string, string>;
  /** What the upstream received for this request, or null. */
  upstream: { method: string; url: string; headers: Record<string, string | string[] | undefined>; body: string } | null;
}

/** Headers compared between doors: the gateway's own, never transport details like Date. */
const COMPARED = /^(content-type|www-authenticate|allow|retry-after|x-ratelimit-|ratelimit|x-floodcontrol-|set-cookie|x-internal|keep-alive)/;

async function send(r: Runtime, method: string, path: string, headers: Record<string, string> = {}, body?: string | Buffer): Promise<Seen> {
  const before = up.requests.length;
  const res = await rawRequest(doors.get(r)!.url, method, path, headers, body);
  // Give a forwarded request a moment to be recorded (it always is before the response ends).
  const rec = up.requests.slice(before).find((q) => q.headers['x-test-door'] === r || q.headers['x-test-door'] === undefined) ?? up.requests[before];
  const h: Record<string, string> = {};
  for (const [k, v] of Object.entries(res.headers)) if (COMPARED.test(k) && v !== undefined) h[k] = Array.isArray(v) ? v.join('\n') : String(v);
  for (const k of ['x-ratelimit-reset', 'ratelimit']) delete h[k]; // seconds-based, may tick between the two
  return {
    status: res.status,
    body: res.body,
    headers: h,
    upstream: rec ? { method: rec.method, url: rec.url, headers: rec.headers, body: rec.body.toString('utf8') } : null,
  };
}

/** Sends the same request to both doors (one after the other: the upstream log stays attributable). */
async function both(method: string, path: string, headers: Record<string, string> = {}, body?: string | Buffer): Promise<Record<Runtime, Seen>> {
  const out = {} as Record<Runtime, Seen>;
  for (const r of RUNTIMES) out[r] = await send(r, method, path, { ...headers, 'x-test-door': r }, body);
  return out;
}

function expectSame(s: Record<Runtime, Seen>): Seen {
  expect(s.bun.status).toBe(s.node.status);
  expect(s.bun.headers).toEqual(s.node.headers);
  if ((s.node.headers['content-type'] ?? '').includes('json') && s.node.upstream === null) expect(JSON.parse(s.bun.body)).toEqual(JSON.parse(s.node.body));
  return s.node;
}

describe('the Node and Bun doors answer alike (SPEC §8)', () => {
  it('forwards an allowed request with the identity headers, the token stripped from the query', async () => {
    const t = await mint({ sub: 'alice', client_type: 'user', scope: 'view_room', jti: `j-${randomBytes(4).toString('hex')}` });
    const s = await both('GET', `/v2/room/42?auth_token=${t}&expand=items`, { 'x-auth-subject': 'mallory', x_auth_scopes: 'admin_group' });
    const n = expectSame(s);
    expect(n.status).toBe(200);
    for (const r of RUNTIMES) {
      const u = s[r].upstream!;
      expect(u.url).toBe('/v2/room/42?expand=items');
      expect(u.headers['x-auth-subject']).toBe('alice');
      expect(u.headers['x-auth-scopes']).toBe('view_room');
      expect(u.headers['x_auth_scopes']).toBeUndefined();
      expect(u.headers['authorization']).toBe(`Bearer ${t}`);
      expect(u.headers['x-forwarded-for']).toMatch(/127\.0\.0\.1$/);
    }
    expect(Number(n.headers['x-ratelimit-limit'])).toBe(100);
  });

  it.each([
    ['no token', 'GET', '/v2/room/42', {}, 401, 'token_missing'],
    ['a garbage token', 'GET', '/v2/room/42', { authorization: 'Bearer not.a.jwt' }, 401, 'token_malformed'],
    ['an unknown path', 'GET', '/v2/nothing', {}, 404, 'route_not_found'],
    ['a wrong method', 'DELETE', '/v2/room/42', {}, 405, 'method_not_allowed'],
    ['an encoded slash', 'GET', '/v2/room/a%2Fb', {}, 400, 'bad_request'],
    ['a fragment in the target', 'GET', '/v2/room/42#x', {}, 400, 'bad_request'],
    ['an empty segment', 'GET', '/v2//room/42', {}, 400, 'bad_request'],
  ] as const)('refuses %s with the same envelope, never reaching the upstream', async (_n, method, path, headers, status, reason) => {
    const s = await both(method, path, headers as Record<string, string>);
    const n = expectSame(s);
    expect(n.status).toBe(status);
    expect((JSON.parse(n.body) as { error: { reason: string } }).error.reason).toBe(reason);
    expect(s.node.upstream).toBeNull();
    expect(s.bun.upstream).toBeNull();
  });

  it('refuses a missing scope and a foreign room with 403 and the rate-limit headers', async () => {
    const noScope = await mint({ sub: 'u', client_type: 'user', scope: 'view_group' });
    const room = await mint({ sub: 'r', client_type: 'room', scope: 'view_room', room_id: '42' });
    for (const [t, path, reason] of [[noScope, '/v2/room/42', 'scope_insufficient'], [room, '/v2/room/43', 'room_forbidden']] as const) {
      const s = await both('GET', path, { authorization: `Bearer ${t}` });
      const n = expectSame(s);
      expect(n.status).toBe(403);
      expect((JSON.parse(n.body) as { error: { reason: string } }).error.reason).toBe(reason);
      expect(n.headers['x-ratelimit-limit']).toBe('100');
      expect(s.node.upstream).toBeNull();
      expect(s.bun.upstream).toBeNull();
    }
  });

  it('answers auth_test with the 202 body itself', async () => {
    const t = await mint({ sub: 'r', client_type: 'room', scope: 'send_notification', room_id: '42' });
    const s = await both('POST', '/v2/room/42/notification?auth_test=true', { authorization: `Bearer ${t}` });
    const n = expectSame(s);
    expect(n.status).toBe(202);
    expect(n.body).toBe('{"success":{"code":202,"message":"This auth_token has access to use this method.","type":"Accepted"}}');
    expect(s.bun.body).toBe(n.body);
    expect(s.node.upstream).toBeNull();
    expect(s.bun.upstream).toBeNull();
  });

  it('answers 429 with Retry-After once a window is spent, on each door independently', async () => {
    for (const r of RUNTIMES) {
      const t = await mint({ sub: `tight-${r}`, client_type: 'user', jti: `tight-${r}-${randomBytes(4).toString('hex')}` });
      const codes: number[] = [];
      let last: Seen | undefined;
      for (let i = 0; i < 3; i++) {
        last = await send(r, 'GET', '/v2/tight', { authorization: `Bearer ${t}` });
        codes.push(last.status);
      }
      expect(codes).toEqual([200, 200, 429]);
      expect(Number(last!.headers['retry-after'])).toBeGreaterThan(0);
      expect(last!.headers['x-ratelimit-remaining']).toBe('0');
    }
  });

  it('streams a 2 MB request body to the upstream and back intact', async () => {
    const t = await mint({ sub: 'u', client_type: 'user' });
    const body = randomBytes(2 * 1024 * 1024);
    const digest = createHash('sha256').update(body).digest('hex');
    for (const r of RUNTIMES) {
      const before = up.requests.length;
      const res = await rawRequest(doors.get(r)!.url, 'PUT', '/v2/echo', { authorization: `Bearer ${t}`, 'content-type': 'application/octet-stream' }, body);
      expect(res.status).toBe(200);
      const rec = up.requests[before]!;
      await rec.done;
      expect(createHash('sha256').update(rec.body).digest('hex')).toBe(digest);
    }
  });

  it('a slow upload is not an upstream timeout: timeout_ms (1 s) does not count while the body is still arriving', async () => {
    const t = await mint({ sub: 'u', client_type: 'user' });
    const chunks = 10; // one every 200 ms: 2 s in all, twice timeout_ms, no pause near body_idle_timeout_ms
    for (const r of RUNTIMES) {
      const before = up.requests.length;
      const u = new URL(doors.get(r)!.url);
      const answer = new Promise<string>((resolve) => {
        let out = '';
        const sock = connect(Number(u.port), u.hostname, async () => {
          sock.write(`PUT /v2/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nContent-Length: ${chunks * 1024}\r\nConnection: close\r\n\r\n`);
          for (let i = 0; i < chunks; i++) {
            await new Promise((res) => setTimeout(res, 200));
            sock.write(Buffer.alloc(1024, 48 + i));
          }
        });
        sock.on('data', (c: Buffer) => (out += c.toString('latin1')));
        sock.on('close', () => resolve(out));
      });
      const out = await answer;
      expect(out.startsWith('HTTP/1.1 200 '), `${r}: ${out.slice(0, 120)}`).toBe(true);
      const rec = up.requests[before]!;
      await rec.done;
      expect(rec.body.length).toBe(chunks * 1024);
      expect(rec.body.subarray(-1).toString()).toBe(String.fromCharCode(48 + chunks - 1));
    }
  });

  it('an upstream that stops reading the body is still bounded by timeout_ms: 504, not a held connection', async () => {
    const t = await mint({ sub: 'u', client_type: 'user' });
    const size = 64 * 1024 * 1024; // far more than the socket buffers between the door and the upstream
    for (const r of RUNTIMES) {
      const u = new URL(doors.get(r)!.url);
      const out = await new Promise<string>((resolve) => {
        let got = '';
        const sock = connect(Number(u.port), u.hostname, async () => {
          sock.write(`PUT /v2/stuck HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nContent-Length: ${size}\r\n\r\n`);
          const chunk = Buffer.alloc(256 * 1024, 120);
          for (let sent = 0; sent < size && !sock.destroyed && got === ''; sent += chunk.length) {
            if (!sock.write(chunk)) await new Promise((res) => { sock.once('drain', res); sock.once('close', res); });
          }
        });
        const timer = setTimeout(() => sock.destroy(), 15_000);
        sock.on('data', (c: Buffer) => {
          got += c.toString('latin1');
          if (got.includes('\r\n\r\n')) {
            clearTimeout(timer);
            sock.destroy();
          }
        });
        sock.on('error', () => undefined);
        sock.on('close', () => resolve(got));
      });
      // Without a bound the exchange would hang until the 15 s guard above cut it, with no answer.
      expect(out.startsWith('HTTP/1.1 504 '), `${r}: ${out.slice(0, 120)}`).toBe(true);
    }
  });

  it('a body that stalls longer than body_idle_timeout_ms is 408 request_timeout and the upstream request is aborted, even one declared larger than Bun.serve would take', async () => {
    const t = await mint({ sub: 'u', client_type: 'user' });
    for (const r of RUNTIMES) {
      for (const declared of [4096, 200 * 1024 * 1024]) {
        const before = up.requests.length;
        const out = await rawExchange(doors.get(r)!.url, `PUT /v2/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nContent-Length: ${declared}\r\n\r\nabc`);
        expect(out.startsWith('HTTP/1.1 408 '), `${r} ${declared}: ${out.slice(0, 120)}`).toBe(true);
        expect(out).toContain('"reason":"request_timeout"');
        const rec = up.requests[before]!;
        await rec.done;
        expect(rec.clientClosed, `${r} ${declared}`).toBe(true);
        expect(rec.body.toString()).toBe('abc');
      }
    }
  });

  it('drops hop-by-hop response headers and keeps repeated Set-Cookie', async () => {
    const t = await mint({ sub: 'u', client_type: 'user' });
    const s = await both('POST', '/v2/cookies', { authorization: `Bearer ${t}` }, 'x');
    const n = expectSame(s);
    expect(n.status).toBe(201);
    expect(n.headers['set-cookie']).toBe('a=1\nb=2');
    expect(n.headers['x-internal']).toBeUndefined();
    expect(n.headers['keep-alive']).toBeUndefined();
    expect(s.bun.body).toBe('made');
  });

  it('answers 502 for a dead upstream and 504 for a silent one, in the envelope', async () => {
    const t = await mint({ sub: 'u', client_type: 'user' });
    const dead = expectSame(await both('GET', '/v2/dead', { authorization: `Bearer ${t}` }));
    expect(dead.status).toBe(502);
    expect((JSON.parse(dead.body) as { error: { reason: string } }).error.reason).toBe('upstream_unavailable');
    const slow = await both('GET', '/v2/slow', { authorization: `Bearer ${t}` });
    expect(slow.node.status).toBe(504);
    expect(slow.bun.status).toBe(504);
    expect(JSON.parse(slow.bun.body)).toEqual(JSON.parse(slow.node.body));
  });

  it('cuts the client off (never a clean end) when the upstream resets mid-body or goes silent for timeout_ms, and the access line says so', async () => {
    const t = await mint({ sub: 'u', client_type: 'user' });
    for (const [path, reason] of [['/v2/reset-mid-body', 'upstream_unavailable'], ['/v2/silent-mid-body', 'upstream_timeout']] as const) {
      for (const r of RUNTIMES) {
        const id = `${path.slice(4)}-${r}`;
        const started = Date.now();
        // Read until the door closes the connection (the upstream never ends the silent body).
        const wire = await rawExchange(doors.get(r)!.url, `GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nX-Request-Id: ${id}\r\n\r\n`, 8_000);
        const elapsed = Date.now() - started;
        // The door's own account first, so that a failure below says whether and when it cut.
        const logged = await doors.get(r)!.waitForLine(new RegExp(`"request_id":"${id}"`), 5_000).catch((e: Error) => `no access line: ${e.message}`);
        const what = `${r} ${path} after ${elapsed} ms: ${JSON.stringify(wire)}; door logged ${logged}`;
        expect(wire.startsWith('HTTP/1.1 200 '), what).toBe(true);
        expect(wire, what).toContain('first part;');
        // Chunked, and never the last chunk: the client cannot take the cut body for the whole one.
        expect(wire.toLowerCase(), what).toContain('transfer-encoding: chunked');
        expect(wire.endsWith('0\r\n\r\n'), what).toBe(false);
        // The silent one is cut by timeout_ms (1 s here), not by the 8 s this test would wait.
        expect(elapsed, what).toBeLessThan(6_000);
        expect(logged.startsWith('{'), what).toBe(true); // else the waitForLine error, not a JSON.parse one
        const line = JSON.parse(logged) as Record<string, unknown>;
        expect(line, what).toMatchObject({ status: 200, decision: 'upstream_error', reason });
      }
    }
  });

  it('leaves a body without a Content-Type unlabelled: with a length, chunked or empty', async () => {
    const t = await mint({ sub: 'u', client_type: 'user' });
    for (const path of ['/v2/untyped', '/v2/untyped?chunked=1', '/v2/untyped?empty=1']) {
      const s = await both('GET', path, { authorization: `Bearer ${t}` });
      const n = expectSame(s);
      expect(n.status, path).toBe(200);
      expect(n.headers['content-type'], path).toBeUndefined();
      expect(s.bun.body, path).toBe(s.node.body);
    }
  });

  it('holds the upstream back while the client does not read (backpressure), and drops it when the client leaves mid-body', async () => {
    const t = await mint({ sub: 'u', client_type: 'user' });
    for (const r of RUNTIMES) {
      const before = up.requests.length;
      const u = new URL(doors.get(r)!.url);
      const sock = connect(Number(u.port), u.hostname);
      let head = '';
      sock.once('data', (c: Buffer) => {
        head = c.toString('latin1', 0, 12);
        sock.pause(); // read nothing more
      });
      sock.write(`GET /v2/firehose HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\n\r\n`);
      const rec = await up.waitForRequest(before + 1);
      await new Promise((res) => setTimeout(res, 2_000));
      expect(head, r).toBe('HTTP/1.1 200');
      // Socket buffers on both legs and the door's own hold some MiB; not the 512 MiB on offer.
      expect(firehoseSent, r).toBeLessThan(64 * 1024 * 1024);
      sock.destroy();
      await rec.done;
      expect(rec.clientClosed, r).toBe(true);
    }
    await bothAlive();
  });

  it('aborts the upstream request when the client hangs up', async () => {
    const t = await mint({ sub: 'u', client_type: 'user' });
    for (const r of RUNTIMES) {
      const before = up.requests.length;
      const u = new URL(doors.get(r)!.url);
      const sock = connect(Number(u.port), u.hostname);
      sock.write(`GET /v2/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\n\r\n`);
      const rec = await up.waitForRequest(before + 1);
      sock.destroy();
      await rec.done;
      expect(rec.clientClosed).toBe(true);
    }
  });

  it('tunnels a WebSocket after the same decision, and refuses one without a token', async () => {
    const t = await mint({ sub: 'u', client_type: 'user' });
    for (const r of RUNTIMES) {
      const base = doors.get(r)!.url.replace(/^http/, 'ws');
      const ws = new WebSocket(`${base}/v2/events?auth_token=${t}`);
      const echoed = await new Promise<string>((resolve, reject) => {
        ws.addEventListener('open', () => ws.send(`hello ${r}`));
        ws.addEventListener('message', (e) => resolve(String(e.data)));
        ws.addEventListener('error', () => reject(new Error(`websocket failed on ${r}`)));
      });
      expect(echoed).toBe(`hello ${r}`);
      ws.close();
      const refused = await rawRequest(doors.get(r)!.url, 'GET', '/v2/events', {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': randomBytes(16).toString('base64'),
      });
      expect(refused.status).toBe(401);
    }
  });

  it('treats an Upgrade that is not a WebSocket handshake as the plain request it also is', async () => {
    const t = await mint({ sub: 'u', client_type: 'user' });
    for (const r of RUNTIMES) {
      const s = await send(r, 'GET', '/v2/room/42', { authorization: `Bearer ${t}`, connection: 'Upgrade', upgrade: 'h2c' });
      expect(s.status).toBe(403); // a user token without view_room: decided, answered, never 101
      const trace = await send(r, 'TRACE', '/v2/room/42', { connection: 'Upgrade', upgrade: 'websocket' });
      expect(trace.status).toBe(405);
    }
    // Both processes are still serving.
    for (const r of RUNTIMES) expect((await send(r, 'GET', '/v2/capabilities')).status).toBe(200);
  });
});

/** Both doors still answer a plain public request: nothing above took either process down. */
async function bothAlive(): Promise<void> {
  for (const r of RUNTIMES) expect((await send(r, 'GET', '/v2/capabilities')).status).toBe(200);
}

describe('hostile requests get the same answer from both doors (SPEC §3, §5)', () => {
  it('a verified token whose claims carry CR, LF or NUL is 401 token_malformed on both, never forwarded', async () => {
    for (const claims of [
      { sub: 'eve\r\nx-auth-scopes: admin_group', client_type: 'user', scope: 'view_room' },
      { sub: 'eve', client_type: 'user', scope: 'view_room', jti: 'j\u0000x' },
      { sub: 'eve', client_type: 'room', scope: 'view_room', room_id: '42\n' },
    ]) {
      const s = await both('GET', '/v2/room/42', { authorization: `Bearer ${await mint(claims)}` });
      const n = expectSame(s);
      expect(n.status, JSON.stringify(claims)).toBe(401);
      expect((JSON.parse(n.body) as { error: { reason: string } }).error.reason).toBe('token_malformed');
      expect(s.node.upstream).toBeNull();
      expect(s.bun.upstream).toBeNull();
    }
    await bothAlive();
  });

  it('a non-ASCII subject reaches the upstream as the same UTF-8 bytes from both doors', async () => {
    const sub = 'yuki \u96ea caf\u00e9 \u{1F600}';
    const t = await mint({ sub, client_type: 'user', scope: 'view_room' });
    const s = await both('GET', '/v2/room/42', { authorization: `Bearer ${t}` });
    expect(expectSame(s).status).toBe(200);
    for (const r of RUNTIMES) {
      const got = s[r].upstream!.headers['x-auth-subject'] as string;
      expect(Buffer.from(got, 'latin1').toString('utf8'), r).toBe(sub);
    }
  });

  it('claims of the wrong type (a fractional or boolean subject, non-string members, objects) are refused alike, never forwarded', async () => {
    for (const claims of [
      { sub: 4.5, client_type: 'user', scope: 'view_room' },
      { sub: true, client_type: 'user', scope: 'view_room' },
      { sub: 'u', client_type: ['user', 7], scope: 'view_room' },
      { sub: 'u', client_type: { type: 'user' }, scope: 'view_room' },
      { sub: 'u', client_type: 'room', scope: 'view_room', room_id: { id: 42 } },
      { sub: 'u', client_type: 'user', scope: ['view_room', { x: 1 }] },
    ]) {
      const s = await both('GET', '/v2/room/42', { authorization: `Bearer ${await mint(claims)}` });
      const n = expectSame(s);
      expect(n.status, JSON.stringify(claims)).toBeGreaterThanOrEqual(400);
      expect(n.status).toBeLessThan(500);
      expect(s.node.upstream).toBeNull();
      expect(s.bun.upstream).toBeNull();
    }
    await bothAlive();
  });

  it('a request without a usable Host is decided and forwarded on the path it sent (Bun hands such a target over unparsed)', async () => {
    const t = await mint({ sub: 'u', client_type: 'user', scope: 'view_room' });
    for (const [name, head, status, forwarded] of [
      ['HTTP/1.0 without Host', `GET /v2/room/42?x=1 HTTP/1.0\r\nAuthorization: Bearer ${t}\r\n\r\n`, 200, '/v2/room/42?x=1'],
      // Dropping the first segment would turn this unrouted path into the public /v2/capabilities.
      ['an unrouted path, HTTP/1.0 without Host', `GET /x/v2/capabilities HTTP/1.0\r\n\r\n`, 404, null],
      ['CONNECT (authority form)', `CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nAuthorization: Bearer ${t}\r\n\r\n`, 400, null],
    ] as const) {
      for (const r of RUNTIMES) {
        const before = up.requests.length;
        const out = await rawExchange(doors.get(r)!.url, head);
        expect(out.startsWith(`HTTP/1.1 ${status} `) || out.startsWith(`HTTP/1.0 ${status} `), `${name} (${r}): ${out.slice(0, 100)}`).toBe(true);
        const got = up.requests.slice(before).map((q) => q.url);
        expect(got, `${name} (${r})`).toEqual(forwarded === null ? [] : [forwarded]);
      }
    }
    await bothAlive();
  });

  it('a forged X-Forwarded-For, Forwarded and X-Real-IP from an untrusted peer never reach the upstream as sent', async () => {
    // The doors above trust loopback (the default trusted_proxies); this pair trusts no one.
    const file = await dir.write('untrusting.yaml', `${configText}\ntrusted_proxies: []\n`);
    const pair = await Promise.all(RUNTIMES.map((r) => spawnGateway(file, { runtime: r })));
    try {
      const t = await mint({ sub: 'u', client_type: 'user', scope: 'view_room' });
      for (const g of pair) {
        const before = up.requests.length;
        const res = await rawRequest(g.url, 'GET', '/v2/room/42', { authorization: `Bearer ${t}`, 'x-forwarded-for': '10.9.9.9', forwarded: 'for=10.9.9.9', 'x-real-ip': '10.9.9.9', 'x-forwarded-host': 'evil.example' });
        expect(res.status).toBe(200);
        const u = up.requests[before]!;
        expect(u.headers['x-forwarded-for']).toBe('127.0.0.1');
        expect(u.headers['forwarded']).toBeUndefined();
        expect(u.headers['x-real-ip']).toBeUndefined();
        expect(u.headers['x-forwarded-host']).not.toBe('evil.example');
      }
    } finally {
      await Promise.all(pair.map((g) => g.kill()));
    }
  });

  it('two Authorization headers, or a header token and a query token together, are never forwarded', async () => {
    const a = await mint({ sub: 'a', client_type: 'user', scope: 'view_room' });
    const b = await mint({ sub: 'b', client_type: 'user', scope: 'view_room' });
    for (const r of RUNTIMES) {
      const two = await send(r, 'GET', '/v2/room/42', { authorization: [`Bearer ${a}`, `Bearer ${b}`] as unknown as string });
      expect(two.status, r).toBeGreaterThanOrEqual(400);
      expect(two.upstream, r).toBeNull();
    }
    const mixed = await both('GET', `/v2/room/42?auth_token=${b}`, { authorization: `Bearer ${a}` });
    const n = expectSame(mixed);
    expect(n.status).toBe(400);
    expect(mixed.node.upstream).toBeNull();
    expect(mixed.bun.upstream).toBeNull();
    await bothAlive();
  });

  it('an upstream answer no HTTP library should take is 502 on both; odd but valid framing is relayed alike', async () => {
    const t = await mint({ sub: 'u', client_type: 'user' });
    for (const name of ['status999', 'cl-and-te', 'bare-cr-header', 'garbage']) {
      const s = await both('GET', `/v2/raw/${name}`, { authorization: `Bearer ${t}` });
      const n = expectSame(s);
      expect(n.status, name).toBe(502);
      expect(JSON.parse(s.bun.body), name).toMatchObject({ error: { reason: 'upstream_unavailable' } });
    }
    for (const [name, body] of [['early-hints', 'ok'], ['close-delimited', 'no length, ends at close']]) {
      const s = await both('GET', `/v2/raw/${name}`, { authorization: `Bearer ${t}` });
      expect(expectSame(s).status, name).toBe(200);
      expect(s.node.body, name).toBe(body);
      expect(s.bun.body, name).toBe(body);
    }
    await bothAlive();
  });

  it('CONNECT is refused in the same words on both doors, never forwarded (OPTIONS * is a parser refusal on Bun: below)', async () => {
    for (const head of ['CONNECT upstream.internal:443 HTTP/1.1\r\nHost: upstream.internal:443']) {
      const out: Record<string, string> = {};
      for (const r of RUNTIMES) {
        const before = up.requests.length;
        out[r] = await rawExchange(doors.get(r)!.url, `${head}\r\nConnection: close\r\n\r\n`);
        expect(up.requests.length, r).toBe(before);
      }
      const body = (w: string) => JSON.parse(w.slice(w.indexOf('\r\n\r\n') + 4)) as unknown;
      expect(out['node']!.startsWith('HTTP/1.1 400 '), out['node']).toBe(true);
      expect(out['bun']!.startsWith('HTTP/1.1 400 '), out['bun']).toBe(true);
      expect(body(out['bun']!)).toEqual(body(out['node']!));
      expect(JSON.stringify(body(out['node']!))).toContain('origin-form');
    }
  });

  it('a repeated Content-Length is refused alike (Bun.serve merges it; Node refuses it), never forwarded', async () => {
    const t = await mint({ sub: 'u', client_type: 'user' });
    const out: Record<string, string> = {};
    for (const r of RUNTIMES) {
      const before = up.requests.length;
      out[r] = await rawExchange(doors.get(r)!.url, `PUT /v2/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc`);
      expect(up.requests.length, r).toBe(before);
      expect(out[r]!.startsWith('HTTP/1.1 400 '), `${r}: ${out[r]}`).toBe(true);
    }
    const body = (w: string) => JSON.parse(w.slice(w.indexOf('\r\n\r\n') + 4)) as unknown;
    expect(body(out['bun']!)).toEqual(body(out['node']!));
  });

  it('an oversized token, an encoded NUL and an encoded CRLF in the path are refused alike, never forwarded', async () => {
    const big = `Bearer ${'a'.repeat(3_000)}.${'b'.repeat(3_000)}.c`; // over tokens.max_token_bytes, under the header limit
    for (const [path, headers] of [
      ['/v2/room/42', { authorization: big }],
      ['/v2/room/4%002', {}],
      ['/v2/room/42%0d%0aX-Injected:%201', {}],
    ] as const) {
      const s = await both('GET', path, headers as Record<string, string>);
      const n = expectSame(s);
      expect(n.status, path).toBeGreaterThanOrEqual(400);
      expect(n.status).toBeLessThan(500);
      expect(s.node.upstream).toBeNull();
      expect(s.bun.upstream).toBeNull();
    }
    await bothAlive();
  });
});

describe('where the doors differ, and why (docs/doors.md)', () => {
  it("requests the HTTP parser refuses: the Node door answers in the envelope, Bun.serve with its own bare status; neither forwards", async () => {
    const cases: Array<[string, string, number, number]> = [
      ['headers over the limit', `GET /v2/room/42 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${'a'.repeat(40_000)}\r\n\r\n`, 431, 431],
      ['a malformed request line', 'GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n', 400, 505],
      ['a space in a header name', 'GET /v2/room/42 HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n', 400, 400],
      ['a control byte in a header value', 'GET /v2/room/42 HTTP/1.1\r\nHost: x\r\nX-A: a\u0001b\r\n\r\n', 400, 400],
      ['Content-Length with Transfer-Encoding', 'POST /v2/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, 400],
      ['the asterisk form (OPTIONS *)', 'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n', 400, 400],
    ];
    for (const [name, bytes, nodeStatus, bunStatus] of cases) {
      const before = up.requests.length;
      const node = await rawExchange(doors.get('node')!.url, bytes);
      const bun = await rawExchange(doors.get('bun')!.url, bytes);
      expect(node.startsWith(`HTTP/1.1 ${nodeStatus} `), `${name} (node): ${node.slice(0, 80)}`).toBe(true);
      expect(node).toContain('content-type: application/json');
      expect(node).toMatch(/"reason":"(bad_request|headers_too_large)"/);
      expect(bun.startsWith(`HTTP/1.1 ${bunStatus} `), `${name} (bun): ${bun.slice(0, 80)}`).toBe(true);
      expect(up.requests.length, name).toBe(before);
    }
    await bothAlive();
  });

  it('Bun.serve resolves dot segments before the gateway sees the URL: Node refuses them, Bun routes the resolved path', async () => {
    const t = await mint({ sub: 'u', client_type: 'user', scope: 'view_room' });
    const s = await both('GET', '/v2/room/x/../42', { authorization: `Bearer ${t}` });
    expect(s.node.status).toBe(400);
    expect(s.node.upstream).toBeNull();
    // Bun: the matched path is the forwarded path, so the route table still decides what is served.
    expect(s.bun.status).toBe(200);
    expect(s.bun.upstream!.url).toBe('/v2/room/42');
  });

  it('a body with a Content-Length up to 64 KiB that fails mid-way: the Node door has sent 200 and cuts it, the Bun door (which reads it whole first) answers 502 / 504', async () => {
    const t = await mint({ sub: 'u', client_type: 'user' });
    for (const [path, reason, status] of [['/v2/short/reset', 'upstream_unavailable', 502], ['/v2/short/silent', 'upstream_timeout', 504]] as const) {
      const id = (r: Runtime) => `${path.slice(4).replace("/", "-")}-${r}`;
      const request = (r: Runtime) =>
        rawExchange(doors.get(r)!.url, `GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nX-Request-Id: ${id(r)}\r\n\r\n`, 6_000);
      const node = await request('node');
      expect(node.startsWith('HTTP/1.1 200 '), node).toBe(true);
      expect(node.endsWith('first part;'), node).toBe(true); // 11 of the 100 bytes announced, then closed
      const bun = await request('bun');
      expect(bun.startsWith(`HTTP/1.1 ${status} `), bun).toBe(true);
      expect(JSON.parse(bun.slice(bun.indexOf('\r\n\r\n') + 4))).toMatchObject({ error: { reason } });
      for (const r of RUNTIMES) {
        const line = JSON.parse(await doors.get(r)!.waitForLine(new RegExp(`"request_id":"${id(r)}"`), 5_000)) as Record<string, unknown>;
        expect(line, r).toMatchObject({ status: r === 'node' ? 200 : status, decision: 'upstream_error', reason });
      }
    }
  });

  it('a GET with a body: the Node door forwards it with its body, the Bun door refuses it (Bun\'s fetch takes no GET body), neither drops the body silently', async () => {
    const t = await mint({ sub: 'u', client_type: 'user' });
    const bytes = (r: Runtime) => `GET /v2/get-body HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nX-Test-Door: ${r}\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello`;
    let before = up.requests.length;
    const node = await rawExchange(doors.get('node')!.url, bytes('node'));
    expect(node.startsWith('HTTP/1.1 200 '), node).toBe(true);
    expect(up.requests[before]?.body.toString()).toBe('hello');
    before = up.requests.length;
    const bun = await rawExchange(doors.get('bun')!.url, bytes('bun'));
    expect(bun.startsWith('HTTP/1.1 400 '), bun).toBe(true);
    expect(bun).toContain('cannot be forwarded by the Bun door');
    expect(up.requests.length).toBe(before);
    // No body (or an empty one) is the ordinary GET on both.
    for (const r of RUNTIMES) {
      const plain = await rawExchange(doors.get(r)!.url, `GET /v2/get-body HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
      expect(plain.startsWith('HTTP/1.1 200 '), `${r}: ${plain}`).toBe(true);
    }
  });

  it('what Bun.serve refuses and the Node door forwards: trailers after a chunked body (400), more than ~200 header fields (431)', async () => {
    const t = await mint({ sub: 'u', client_type: 'user' });
    const many = Array.from({ length: 250 }, (_, i) => `X-H${i}: v`).join('\r\n');
    for (const [name, bytes, bunStatus] of [
      ['trailers', `PUT /v2/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n`, 400],
      ['250 header fields', `PUT /v2/echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\n${many}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`, 431],
    ] as const) {
      let before = up.requests.length;
      const node = await rawExchange(doors.get('node')!.url, bytes);
      expect(node.startsWith('HTTP/1.1 200 '), `${name} (node): ${node.slice(0, 80)}`).toBe(true);
      expect(up.requests.length, name).toBe(before + 1);
      before = up.requests.length;
      const bun = await rawExchange(doors.get('bun')!.url, bytes);
      expect(bun.startsWith(`HTTP/1.1 ${bunStatus} `), `${name} (bun): ${bun.slice(0, 80)}`).toBe(true);
      // Bun may have started the upstream request before its parser met the trailer: then the
      // upstream saw that upload aborted, never a complete request.
      const got = up.requests[before];
      if (got) {
        await got.done;
        expect(got.bodyComplete, name).toBe(false);
        expect(got.clientClosed, name).toBe(true);
      }
    }
  });
});
