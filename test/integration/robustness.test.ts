/**
 * SPEC §1.8 robustness through real sockets: the gateway process never dies of a socket error and
 * nothing is lost silently. Clients and upstreams hang up mid-body, hundreds of requests arrive at
 * once, headers are oversized or trickle in, requests are pipelined or wait for `100 Continue`;
 * after each, the gateway still answers, and the access log accounts for every request.
 * (vitest fails the run on any uncaught exception or unhandled rejection, so a crash cannot hide.)
 */
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startTestGateway, TEST_ISSUER, TEST_SECRET, type TestGateway } from '../helpers/gateway.js';
import { hsToken } from '../helpers/tokens.js';
import { startUpstream, type RecordedRequest, type Upstream } from '../helpers/upstream.js';

const nowS = () => Math.floor(Date.now() / 1000);
let seq = 0;
function mint(over: Record<string, unknown> = {}, secret = TEST_SECRET): Promise<string> {
  return hsToken(secret, {
    iss: 'scopegate-test',
    aud: 'api',
    sub: 'alice',
    client_type: 'user',
    scope: 'view_room',
    iat: nowS(),
    exp: nowS() + 600,
    jti: `rb-${++seq}`,
    ...over,
  });
}

function config(upstream: string): string {
  return `
realm: api
shutdown_timeout_ms: 1000
upstreams:
  default: { url: ${upstream}, timeout_ms: 5000, connect_timeout_ms: 500 }
tokens:
  issuers:
${TEST_ISSUER}
rate_limit:
  default: { limit: 100000, window_s: 300 }
routes:
  - id: room
    path: /v2/room/{room}
    methods: [GET]
    scopes: [view_room]
  - id: admin
    path: /v2/admin/{what}
    methods: [GET]
    scopes: [admin_group]
  - id: anything
    path: /v2/*
    scopes: [view_room]
`;
}

interface Result {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** false when the response was cut off before its end. */
  complete: boolean;
}

/** One request over a fresh connection; resolves even when the response is cut off mid-body. */
function send(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: Buffer | string): Promise<Result> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', () => {});
      res.on('close', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Writes `bytes` on a raw connection and returns everything read until the peer closes. */
function rawExchange(base: string, bytes: string | Buffer): Promise<string> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(u.port), u.hostname, () => socket.write(bytes));
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
  });
}

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The access-log line of the request with this X-Request-Id. */
function accessLog(gw: TestGateway, requestId: string): Record<string, unknown> | undefined {
  return gw.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l['msg'] === 'request' && l['request_id'] === requestId);
}

let up: Upstream;
let gw: TestGateway;
let token: string;

/** The gateway still forwards a normal request. */
async function expectAlive(): Promise<void> {
  const res = await send(gw.url, 'GET', '/v2/room/1', { authorization: `Bearer ${token}` });
  expect(res.status).toBe(200);
  expect(JSON.parse(res.body.toString()).url).toBe('/v2/room/1');
}

beforeAll(async () => {
  up = await startUpstream({
    routes: {
      '/v2/echo-body': {
        kind: 'handler',
        fn: (req, res) => {
          res.writeHead(200, { 'content-type': 'application/octet-stream' });
          req.pipe(res);
        },
      },
      '/v2/download': { kind: 'stream', chunks: Array.from({ length: 500 }, () => 'x'.repeat(4096)), intervalMs: 20 },
      '/v2/reset-mid-body': { kind: 'stream', chunks: ['first part;', 'second part;'], intervalMs: 30, thenReset: true },
      '/v2/reset-before-headers': { kind: 'reset' },
      '/v2/refuse-early': {
        kind: 'handler',
        fn: (_req, res) => {
          res.writeHead(413, { 'content-type': 'text/plain', connection: 'close' });
          res.end('too big');
        },
      },
    },
  });
  gw = await startTestGateway(config(up.url));
  token = await mint();
});
afterAll(async () => {
  await gw.close();
  await up.close();
});
beforeEach(() => {
  up.requests.length = 0;
});

describe('hang-ups in the middle of a body', () => {
  it('aborts the upstream request when the client hangs up mid-upload', async () => {
    const u = new URL(gw.url);
    const client = connect(Number(u.port), u.hostname);
    client.on('error', () => {});
    await new Promise<void>((r) => client.once('connect', () => r()));
    client.write(
      `POST /v2/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nX-Request-Id: abort-upload\r\n` +
        `Content-Type: application/octet-stream\r\nContent-Length: ${10 * 1024 * 1024}\r\n\r\n`,
    );
    client.write(randomBytes(256 * 1024));
    const seen = await up.waitForRequest(1);
    await until(() => seen.body.length > 0, 'the first body bytes upstream');
    client.destroy();
    await seen.done;
    expect(seen.bodyComplete).toBe(false);
    expect(seen.clientClosed).toBe(true);
    await until(() => accessLog(gw, 'abort-upload') !== undefined, 'the access log line');
    expect(accessLog(gw, 'abort-upload')).toMatchObject({ route: 'anything', status: 499 });
    await expectAlive();
  });

  it('aborts the upstream response when the client hangs up mid-download', async () => {
    const u = new URL(gw.url);
    const firstChunk = new Promise<void>((resolve, reject) => {
      const req = httpRequest(
        { host: u.hostname, port: u.port, path: '/v2/download', headers: { authorization: `Bearer ${token}`, 'x-request-id': 'abort-download' }, agent: false },
        (res) => {
          expect(res.statusCode).toBe(200);
          res.once('data', () => {
            req.destroy();
            resolve();
          });
          res.on('error', () => {});
        },
      );
      req.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
      req.end();
    });
    await firstChunk;
    const seen = await up.waitForRequest(1);
    await seen.done;
    expect(seen.clientClosed).toBe(true);
    await until(() => accessLog(gw, 'abort-download') !== undefined, 'the access log line');
    await expectAlive();
  });

  it('cuts the client response off (never a clean end) when the upstream resets mid-body, and logs it', async () => {
    const res = await send(gw.url, 'GET', '/v2/reset-mid-body', { authorization: `Bearer ${token}`, 'x-request-id': 'reset-mid-body' });
    expect(res.status).toBe(200);
    expect(res.complete).toBe(false);
    expect(res.body.toString()).toContain('first part;');
    await until(() => accessLog(gw, 'reset-mid-body') !== undefined, 'the access log line');
    expect(accessLog(gw, 'reset-mid-body')).toMatchObject({ decision: 'upstream_error', reason: 'upstream_unavailable' });
    await expectAlive();
  });

  it('answers, and stays up, when the upstream refuses a 5 MB upload early without reading it', async () => {
    // undici may see the upstream's early 413 or only the broken pipe of the unread body (then
    // 502): either is an honest answer; a hang, a crash or a silent 200 is not.
    const res = await send(gw.url, 'POST', '/v2/refuse-early', { authorization: `Bearer ${token}`, 'content-length': String(5 * 1024 * 1024) }, randomBytes(5 * 1024 * 1024));
    expect([413, 502]).toContain(res.status);
    if (res.status === 502) expect(JSON.parse(res.body.toString()).error.reason).toBe('upstream_unavailable');
    else expect(res.body.toString()).toBe('too big');
    await expectAlive();
  });

  it('answers 502 upstream_unavailable when the upstream resets before any header', async () => {
    const res = await send(gw.url, 'GET', '/v2/reset-before-headers', { authorization: `Bearer ${token}` });
    expect(res.status).toBe(502);
    expect(JSON.parse(res.body.toString()).error.reason).toBe('upstream_unavailable');
    await expectAlive();
  });
});

describe('load and sizes', () => {
  it('gives each of 200 concurrent requests with good and bad tokens its own right answer', async () => {
    type Kind = 'good' | 'none' | 'bad-signature' | 'expired' | 'wrong-scope';
    const kinds: Kind[] = ['good', 'none', 'bad-signature', 'expired', 'wrong-scope'];
    const expected: Record<Kind, { status: number; reason?: string }> = {
      good: { status: 200 },
      none: { status: 401, reason: 'token_missing' },
      'bad-signature': { status: 401, reason: 'signature_invalid' },
      expired: { status: 401, reason: 'token_expired' },
      'wrong-scope': { status: 403, reason: 'scope_insufficient' },
    };
    const jobs = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const kind = kinds[i % kinds.length]!;
        const sub = `user-${i}`;
        let t: string | undefined;
        if (kind === 'good') t = await mint({ sub });
        if (kind === 'bad-signature') t = await mint({ sub }, 'another-secret-0123456789abcdef');
        if (kind === 'expired') t = await mint({ sub, exp: nowS() - 3600 });
        if (kind === 'wrong-scope') t = await mint({ sub, scope: 'send_message' });
        return { i, kind, sub, t };
      }),
    );
    const results = await Promise.all(
      jobs.map(async (j) => {
        const res = await send(gw.url, 'GET', `/v2/room/${j.i}`, j.t ? { authorization: `Bearer ${j.t}` } : {});
        return { ...j, res };
      }),
    );
    for (const r of results) {
      const want = expected[r.kind];
      expect({ i: r.i, status: r.res.status }).toEqual({ i: r.i, status: want.status });
      const body = JSON.parse(r.res.body.toString());
      if (want.reason) {
        expect(body.error.reason).toBe(want.reason);
      } else {
        // The echo proves this answer belongs to this request: its own path and its own subject.
        expect(body.url).toBe(`/v2/room/${r.i}`);
        expect(body.headers['x-auth-subject']).toBe(r.sub);
      }
    }
    expect(up.requests).toHaveLength(40);
    await expectAlive();
  });

  it('answers oversized request headers (> 16 KiB) with 431 in the JSON envelope', async () => {
    const reply = await rawExchange(gw.url, `GET /v2/room/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`);
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1]);
    expect(status).toBe(431);
    const body = JSON.parse(reply.slice(reply.indexOf('\r\n\r\n') + 4));
    expect(body.error).toEqual({ code: 431, message: 'Request headers are too large.', type: 'Request Header Fields Too Large', reason: 'headers_too_large' });
    expect(reply).toMatch(/x-request-id: [0-9a-f-]{36}/);
    expect(up.requests).toHaveLength(0);
    await expectAlive();
  });

  it('streams a 5 MB request body to the upstream and back intact', async () => {
    const payload = randomBytes(5 * 1024 * 1024);
    const res = await send(
      gw.url,
      'POST',
      '/v2/echo-body',
      { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream', 'content-length': String(payload.length) },
      payload,
    );
    expect(res.status).toBe(200);
    expect(res.complete).toBe(true);
    const seen = up.requests[0]!;
    expect(seen.bodyComplete).toBe(true);
    expect(seen.body.length).toBe(payload.length);
    expect(sha256(seen.body)).toBe(sha256(payload));
    expect(res.body.length).toBe(payload.length);
    expect(sha256(res.body)).toBe(sha256(payload));
  });

  it('streams a chunked 5 MB request body intact', async () => {
    const payload = randomBytes(5 * 1024 * 1024);
    const u = new URL(gw.url);
    const res = await new Promise<Result>((resolve, reject) => {
      const req = httpRequest(
        { host: u.hostname, port: u.port, method: 'PUT', path: '/v2/echo-body', headers: { authorization: `Bearer ${token}`, 'transfer-encoding': 'chunked' }, agent: false },
        (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('close', () => resolve({ status: r.statusCode ?? 0, headers: r.headers, body: Buffer.concat(chunks), complete: r.complete }));
        },
      );
      req.on('error', reject);
      // Written in pieces, honouring backpressure, as a real uploader would.
      let off = 0;
      const pump = (): void => {
        while (off < payload.length) {
          const piece = payload.subarray(off, off + 64 * 1024);
          off += piece.length;
          if (!req.write(piece)) {
            req.once('drain', pump);
            return;
          }
        }
        req.end();
      };
      pump();
    });
    expect(res.status).toBe(200);
    expect(sha256(up.requests[0]!.body)).toBe(sha256(payload));
    expect(sha256(res.body)).toBe(sha256(payload));
  });
});

describe('connection handling', () => {
  it('keeps answering other clients while slowloris connections trickle partial headers', async () => {
    const u = new URL(gw.url);
    const slow: Socket[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        const s = connect(Number(u.port), u.hostname);
        s.on('error', () => {});
        await new Promise<void>((r) => s.once('connect', () => r()));
        s.write(`GET /v2/room/${i} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nX-Slow: `);
        slow.push(s);
      }
      for (const s of slow) s.write('a');
      const answers = await Promise.all(Array.from({ length: 10 }, () => send(gw.url, 'GET', '/v2/room/1', { authorization: `Bearer ${token}` })));
      expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
      // The half-sent requests never reached the upstream.
      expect(up.requests.every((r) => r.url === '/v2/room/1')).toBe(true);
    } finally {
      for (const s of slow) s.destroy();
    }
    await expectAlive();
  });

  it('answers two pipelined requests on one socket, in order', async () => {
    const auth = `Authorization: Bearer ${token}\r\n`;
    const reply = await rawExchange(
      gw.url,
      `GET /v2/room/1?n=1 HTTP/1.1\r\nHost: x\r\n${auth}X-Request-Id: pipe-1\r\n\r\n` +
        `GET /v2/room/1?n=2 HTTP/1.1\r\nHost: x\r\n${auth}X-Request-Id: pipe-2\r\nConnection: close\r\n\r\n`,
    );
    expect(reply.match(/HTTP\/1\.1 200 /g)).toHaveLength(2);
    const i1 = reply.indexOf('x-request-id: pipe-1');
    const i2 = reply.indexOf('x-request-id: pipe-2');
    expect(i1).toBeGreaterThan(-1);
    expect(i2).toBeGreaterThan(i1);
    expect(reply.indexOf('"url":"/v2/room/1?n=1"')).toBeGreaterThan(i1);
    expect(reply.indexOf('"url":"/v2/room/1?n=2"')).toBeGreaterThan(i2);
    expect(up.requests.map((r: RecordedRequest) => r.url)).toEqual(['/v2/room/1?n=1', '/v2/room/1?n=2']);
  });

  it('does not read a refused request body as the next pipelined request', async () => {
    // The refused POST's body is itself a valid request line: it must be discarded, not forwarded.
    const smuggled = `GET /v2/room/666 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\n\r\n`;
    const reply = await rawExchange(
      gw.url,
      `POST /v2/room/5/message HTTP/1.1\r\nHost: x\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}` +
        `GET /v2/room/1?n=after HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`,
    );
    const statuses = [...reply.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
    expect(statuses).toEqual([401, 200]);
    expect(up.requests.map((r) => r.url)).toEqual(['/v2/room/1?n=after']);
  });

  it('forwards a POST sent with Expect: 100-continue after the client got 100 Continue', async () => {
    const u = new URL(gw.url);
    const payload = Buffer.from('{"message":"hello"}');
    let continued = false;
    const res = await new Promise<Result>((resolve, reject) => {
      const req = httpRequest(
        {
          host: u.hostname,
          port: u.port,
          method: 'POST',
          path: '/v2/room/5/notification',
          headers: { authorization: `Bearer ${token}`, expect: '100-continue', 'content-type': 'application/json', 'content-length': String(payload.length) },
          agent: false,
        },
        (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('close', () => resolve({ status: r.statusCode ?? 0, headers: r.headers, body: Buffer.concat(chunks), complete: r.complete }));
        },
      );
      req.on('error', reject);
      req.on('continue', () => {
        continued = true;
        req.end(payload);
      });
    });
    expect(continued).toBe(true);
    expect(res.status).toBe(200);
    const seen = up.requests[0]!;
    expect(seen.method).toBe('POST');
    expect(seen.body.toString()).toBe(payload.toString());
    expect(JSON.parse(res.body.toString()).method).toBe('POST');
  });

  it('still answers a normal request after all of the above', async () => {
    await expectAlive();
    const health = await fetch(`${gw.adminUrl!}/healthz`);
    expect(health.status).toBe(200);
  });
});
