/**
 * Issue 10, rules 1, 3 and 13, through raw sockets against the real Node door: slow request
 * heads, too many connections, Host header games, Expect: 100-continue on a refused route, and
 * Upgrade requests that are not WebSocket handshakes — none may crash, bypass or hang the gateway,
 * and every refusal carries the envelope and an X-Request-Id.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway.js';
import { hsToken, nowS } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

let up: Upstream;
let gw: TestGateway;
let port: number;

beforeAll(async () => {
  up = await startUpstream();
  gw = await startTestGateway(
    baseConfig({
      upstream: up.url,
      extra: 'listen: { header_timeout_ms: 300, idle_timeout_ms: 5000, max_connections: 20 }\n',
    }),
  );
  port = Number(new URL(gw.url).port);
});

afterAll(async () => {
  await gw?.close();
  await up?.close();
});

const mint = (scope = 'send_notification view_room') => hsToken(TEST_SECRET, { iss: 'scopegate-test', aud: 'api', iat: nowS(), exp: nowS() + 600, client_type: 'user', scope });

/** Writes `text`, collects everything until the server closes (or `waitMs`), and reports whether it closed. */
function exchange(text: string | string[], waitMs = 2_000): Promise<{ data: string; closed: boolean; socket: Socket }> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let data = '';
    let closed = false;
    s.on('data', (c: Buffer) => (data += c.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => {
      closed = true;
      clearTimeout(t);
      resolve({ data, closed, socket: s });
    });
    const t = setTimeout(() => resolve({ data, closed, socket: s }), waitMs);
    const parts = Array.isArray(text) ? text : [text];
    s.on('connect', () => {
      let i = 0;
      const next = () => {
        if (i < parts.length) {
          s.write(parts[i++]!);
          setTimeout(next, 30);
        }
      };
      next();
    });
  });
}

const status = (raw: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);
const body = (raw: string) => JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as { error: { reason: string; code: number } };

describe('slow request heads and connection limits (SPEC §1.8)', () => {
  it('answers a head that trickles in past header_timeout_ms with 408 request_timeout in the envelope, and closes', async () => {
    const before = up.requests.length;
    const r = await exchange(['GET /v2/room/42 HTTP/1.1\r\n', 'Host: x\r\n'], 3_000);
    expect(r.closed).toBe(true);
    expect(status(r.data)).toBe(408);
    expect(body(r.data).error.reason).toBe('request_timeout');
    expect(r.data).toMatch(/x-request-id: [0-9a-f-]{36}/i);
    expect(up.requests.length).toBe(before);
  });

  it('closes connections beyond max_connections at once, and still serves once they are gone', async () => {
    const held: Socket[] = [];
    let closed = 0;
    for (let i = 0; i < 25; i++) held.push(connect(port, '127.0.0.1').on('error', () => {}).on('close', () => void closed++));
    await new Promise((r) => setTimeout(r, 250)); // well inside the 300 ms header timeout
    // 20 are allowed; Node destroys every connection over the limit as it is accepted.
    expect(closed).toBeGreaterThanOrEqual(5);
    expect(closed).toBeLessThan(25);
    for (const s of held) s.destroy();
    await new Promise((r) => setTimeout(r, 300));
    const ok = await exchange('GET /v2/capabilities HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(status(ok.data)).toBe(200);
  });
});

describe('Host header games (RFC 9112 §3.2, SPEC §1.1)', () => {
  it.each([
    ['two Host headers', 'GET /v2/capabilities HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n'],
    ['two Host headers on a protected route', 'GET /v2/room/42 HTTP/1.1\r\nHost: a\r\nHost: evil\r\nAuthorization: Bearer x\r\nConnection: close\r\n\r\n'],
    ['no Host on HTTP/1.1', 'GET /v2/capabilities HTTP/1.1\r\nConnection: close\r\n\r\n'],
  ])('refuses %s with 400 in the envelope and an X-Request-Id, the upstream never contacted', async (_n, raw) => {
    const before = up.requests.length;
    const r = await exchange(raw);
    expect(status(r.data)).toBe(400);
    expect(body(r.data).error.reason).toBe('bad_request');
    expect(r.data).toMatch(/x-request-id: /i);
    expect(up.requests.length).toBe(before);
  });

  it('serves HTTP/1.0 without Host (it may omit it), and forwards no made-up X-Forwarded-Host', async () => {
    const before = up.requests.length;
    const r = await exchange('GET /v2/capabilities HTTP/1.0\r\n\r\n');
    expect(status(r.data)).toBe(200);
    expect(up.requests[before]!.headers['x-forwarded-host']).toBeUndefined();
  });
});

describe('Expect: 100-continue (SPEC §1.8)', () => {
  it('refuses at once without 100 Continue when the route is denied, and never reads the body', async () => {
    const before = up.requests.length;
    const r = await exchange('POST /v2/room/42/notification HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n', 1_500);
    expect(r.data).not.toMatch(/100 Continue/);
    expect(status(r.data)).toBe(401);
    expect(r.closed).toBe(true);
    expect(up.requests.length).toBe(before);
  });

  it('sends 100 Continue once the request is allowed, then forwards the body', async () => {
    const t = await mint();
    const before = up.requests.length;
    const head = `POST /v2/room/42/notification HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`;
    const r = await new Promise<string>((resolve) => {
      const s = connect(port, '127.0.0.1', () => s.write(head));
      let data = '';
      s.on('data', (c: Buffer) => {
        data += c.toString('latin1');
        if (data.startsWith('HTTP/1.1 100') && !data.includes('hello')) s.write('hello');
      });
      s.on('close', () => resolve(data));
    });
    expect(r).toMatch(/^HTTP\/1\.1 100 Continue/);
    expect(r).toMatch(/HTTP\/1\.1 200/);
    const rec = up.requests[before]!;
    await rec.done;
    expect(rec.body.toString()).toBe('hello');
  });
});

describe('Upgrade requests that are not WebSocket handshakes (issue 10 #1, #13)', () => {
  it.each(['TRACE', 'DELETE', 'PROPFIND', 'POST'])('survives %s with Connection: Upgrade and Upgrade: websocket', async (method) => {
    const r = await exchange(`${method} /v2/room/42 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n`);
    expect(status(r.data)).toBeGreaterThanOrEqual(400);
    expect(status(r.data)).toBeLessThan(500);
    // The process is alive and no exception was counted.
    const ok = await exchange('GET /v2/capabilities HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(status(ok.data)).toBe(200);
  });

  it('handles an h2c upgrade as the plain request it also is, and logs the status actually sent', async () => {
    const t = await mint('view_room');
    const r = await exchange(`GET /v2/room/42 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n`);
    expect(status(r.data)).toBe(200);
    await new Promise((res) => setTimeout(res, 50));
    const line = gw.logs.map((l) => JSON.parse(l) as { msg: string; status?: number; route?: string }).filter((l) => l.msg === 'request' && l.route === 'get-room').pop();
    expect(line?.status).toBe(200);
  });

  it('forwards an h2c upgrade that carries a body (curl --http2 -d) with the body, even one that arrives in pieces', async () => {
    // Node 20 hands such a request to 'upgrade' with its message already ended: feeding the body
    // into it destroyed the socket, and the client got no answer at all.
    const t = await mint();
    const before = up.requests.length;
    const head = `POST /v2/room/42/notification HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t}\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n`;
    const r = await exchange([`${head}hello`, ' world']);
    expect(status(r.data), r.data).toBe(200);
    const rec = up.requests[before]!;
    await rec.done;
    expect(rec.method).toBe('POST');
    expect(rec.body.toString()).toBe('hello world');
    expect(up.requests.length).toBe(before + 1);
    await new Promise((res) => setTimeout(res, 50));
    const line = gw.logs.map((l) => JSON.parse(l) as { msg: string; status?: number; route?: string }).filter((l) => l.msg === 'request' && l.route === 'send-room-notification').pop();
    expect(line?.status).toBe(200);
  });

  it('answers CONNECT with a body with its refusal in the envelope, never an empty close', async () => {
    const before = up.requests.length;
    const r = await exchange('CONNECT /v2/room/42 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello');
    expect(status(r.data), r.data).toBe(405);
    expect(r.data).toMatch(/\r\nx-request-id: /i);
    expect(up.requests.length).toBe(before);
  });

  it('answers a version-less PRI request line with 400 and an access line (Node drops the socket after the listener returns)', async () => {
    const before = up.requests.length;
    const r = await exchange('PRI /v2/capabilities\r\n\r\n');
    expect(status(r.data), r.data).toBe(400);
    expect(body(r.data).error.reason).toBe('bad_request');
    expect(up.requests.length).toBe(before);
    const line = gw.logs.map((l) => JSON.parse(l) as { msg: string; method?: string; status?: number }).filter((l) => l.msg === 'request' && l.method === 'PRI').pop();
    expect(line?.status).toBe(400);
  });

  it('counted no internal error through all of the above', async () => {
    const text = await gw.metrics.registry.getSingleMetricAsString('scopegate_internal_errors_total');
    expect(text).toMatch(/scopegate_internal_errors_total 0$/m);
  });
});
