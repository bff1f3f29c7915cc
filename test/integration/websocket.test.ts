/**
 * SPEC §1.8 for WebSocket upgrades, through real sockets: the upgrade request passes the same
 * pipeline as any HTTP request (token, scopes, route), then is tunnelled to the echo upstream.
 * The happy path uses undici's WebSocket client (Node 20 has no global one); refusals use a raw
 * socket handshake so the test reads exactly the bytes the gateway wrote.
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { WebSocket } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startTestGateway, TEST_ISSUER, TEST_SECRET, type TestGateway } from '../helpers/gateway.js';
import { hsToken } from '../helpers/tokens.js';
import { closedPortUrl, startUpstream, type Upstream } from '../helpers/upstream.js';

const nowS = () => Math.floor(Date.now() / 1000);
let seq = 0;
function mint(over: Record<string, unknown> = {}): Promise<string> {
  return hsToken(TEST_SECRET, {
    iss: 'scopegate-test',
    aud: 'api',
    sub: 'alice',
    client_type: 'user',
    scope: 'view_room',
    iat: nowS(),
    exp: nowS() + 600,
    jti: `ws-${++seq}`,
    ...over,
  });
}

function config(o: { upstream: string; dead: string; slow: string }): string {
  return `
realm: api
shutdown_timeout_ms: 1000
upstreams:
  default: { url: ${o.upstream}, timeout_ms: 2000, connect_timeout_ms: 500 }
  dead: { url: ${o.dead}, timeout_ms: 2000, connect_timeout_ms: 500 }
  slow: { url: ${o.slow}, timeout_ms: 300, connect_timeout_ms: 500 }
tokens:
  issuers:
${TEST_ISSUER}
routes:
  - id: room-events
    path: /v2/room/{room}/events
    methods: [GET]
    scopes: [view_room]
  - id: dead-events
    path: /v2/dead/events
    methods: [GET]
    scopes: [view_room]
    upstream: dead
  - id: slow-events
    path: /v2/slow/events
    methods: [GET]
    scopes: [view_room]
    upstream: slow
  - id: room
    path: /v2/room/{room}
    methods: [GET]
    scopes: [view_room]
`;
}

// ---------------------------------------------------------------------------------------------
// A raw RFC 6455 client: enough to read the gateway's refusals byte for byte and echo a frame.

interface Handshake {
  status: number;
  headers: Record<string, string>;
  /** Response body (for a refusal, read until the gateway closed the connection). */
  body: string;
  socket: Socket;
  /** Bytes received after the response head (frames, for a 101). */
  rest: Buffer;
  /** The Sec-WebSocket-Key sent. */
  key: string;
}

function rawHandshake(base: string, path: string, headers: Record<string, string> = {}): Promise<Handshake> {
  const u = new URL(base);
  const key = randomBytes(16).toString('base64');
  return new Promise((resolve, reject) => {
    const socket = connect(Number(u.port), u.hostname);
    let buf = Buffer.alloc(0);
    let head: { status: number; headers: Record<string, string>; rest: Buffer } | undefined;
    socket.on('error', reject);
    socket.on('connect', () => {
      const lines = [
        `GET ${path} HTTP/1.1`,
        `Host: ${u.host}`,
        'Connection: Upgrade',
        'Upgrade: websocket',
        'Sec-WebSocket-Version: 13',
        `Sec-WebSocket-Key: ${key}`,
        ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
      ];
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    });
    const finish = (): void => {
      if (!head) return;
      socket.removeAllListeners('data');
      resolve({ ...head, body: head.status === 101 ? '' : head.rest.toString('utf8'), socket, key });
    };
    socket.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (!head) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const [statusLine, ...headerLines] = buf.subarray(0, end).toString('latin1').split('\r\n');
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0);
        const h: Record<string, string> = {};
        for (const l of headerLines) {
          const i = l.indexOf(':');
          h[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
        }
        head = { status, headers: h, rest: buf.subarray(end + 4) };
        if (status === 101) finish();
      } else {
        head.rest = Buffer.concat([head.rest, c]);
      }
    });
    // A refusal is complete when the gateway closes the connection.
    socket.on('end', () => (head ? finish() : reject(new Error('connection closed before a response head'))));
    socket.on('close', () => (head ? finish() : reject(new Error('connection closed before a response head'))));
  });
}

/** A masked client text frame. */
function clientFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  if (payload.length >= 126) throw new Error('short frames only');
  const mask = randomBytes(4);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]);
}

/** Reads one unmasked server frame (short payloads) from `socket`, starting with `pending` bytes. */
function readFrame(socket: Socket, pending: Buffer): Promise<{ opcode: number; payload: string }> {
  return new Promise((resolve, reject) => {
    let buf = pending;
    const tryParse = (): boolean => {
      if (buf.length < 2) return false;
      const len = buf[1]! & 0x7f;
      if (len >= 126) {
        reject(new Error('unexpected long frame'));
        return true;
      }
      if (buf.length < 2 + len) return false;
      resolve({ opcode: buf[0]! & 0x0f, payload: buf.subarray(2, 2 + len).toString('utf8') });
      return true;
    };
    if (tryParse()) return;
    const onData = (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (tryParse()) socket.off('data', onData);
    };
    socket.on('data', onData);
    socket.once('close', () => reject(new Error('socket closed before a frame arrived')));
  });
}

/** Opens a WebSocket with undici's client and resolves once it is open (or rejects on error). */
function openWs(url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.addEventListener('open', () => resolve(ws));
    ws.addEventListener('error', () => reject(new Error('websocket error')));
  });
}

function nextMessage(ws: WebSocket): Promise<string> {
  return new Promise((resolve) => {
    ws.addEventListener('message', (e) => resolve(String(e.data)), { once: true });
  });
}

function closeWs(ws: WebSocket): Promise<void> {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) return resolve();
    ws.addEventListener('close', () => resolve(), { once: true });
    ws.close();
  });
}

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// ---------------------------------------------------------------------------------------------

let up: Upstream;
let slow: Upstream;
let gw: TestGateway;
const wsUrl = (path: string) => gw.url.replace(/^http/, 'ws') + path;

beforeAll(async () => {
  up = await startUpstream();
  slow = await startUpstream({ fallback: { kind: 'hang' } });
  gw = await startTestGateway(config({ upstream: up.url, dead: await closedPortUrl(), slow: slow.url }));
});
afterAll(async () => {
  await gw.close();
  await up.close();
  await slow.close();
});
beforeEach(() => {
  up.requests.length = 0;
});

const upgrades = () => up.requests.filter((r) => r.upgrade);

describe('allowed WebSocket upgrades', () => {
  it('tunnels an upgrade with a Bearer header: echo round trip, identity headers, spoofed X-Auth-* dropped', async () => {
    const token = await mint();
    const ws = await openWs(wsUrl('/v2/room/7/events?since=3'), {
      authorization: `Bearer ${token}`,
      'x-auth-subject': 'mallory',
      'x-auth-scopes': 'admin_group',
      'X-Auth-Client-Type': 'group',
    });
    try {
      const echoed = nextMessage(ws);
      ws.send('hello through the gateway');
      expect(await echoed).toBe('hello through the gateway');
      const again = nextMessage(ws);
      ws.send('second frame');
      expect(await again).toBe('second frame');
    } finally {
      await closeWs(ws);
    }
    expect(upgrades()).toHaveLength(1);
    const seen = upgrades()[0]!;
    expect(seen.url).toBe('/v2/room/7/events?since=3');
    expect(seen.headers['x-auth-subject']).toBe('alice');
    expect(seen.headers['x-auth-scopes']).toBe('view_room');
    expect(seen.headers['x-auth-client-type']).toBe('user');
    expect(seen.headers['x-auth-issuer']).toBe('scopegate-test');
    expect(seen.headers['x-request-id']).toMatch(/.+/);
    expect(seen.headers['x-forwarded-for']).toBeDefined();
    // Spoofed identity headers sent by the client are gone (only the gateway's values remain).
    const spoofed = seen.rawHeaders.filter((v, i) => i % 2 === 1 && ['mallory', 'admin_group', 'group'].includes(v));
    expect(spoofed).toEqual([]);
  });

  it('tunnels an upgrade with the auth_token query parameter, which never reaches the upstream', async () => {
    const token = await mint();
    const hs = await rawHandshake(gw.url, `/v2/room/7/events?a=1&auth_token=${token}&b=2`, { 'X-Auth-Subject': 'mallory' });
    try {
      expect(hs.status).toBe(101);
      expect(hs.headers['upgrade']?.toLowerCase()).toBe('websocket');
      expect(hs.headers['sec-websocket-accept']).toBe(createHash('sha1').update(`${hs.key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64'));
      expect(hs.headers['x-request-id']).toMatch(/.+/);
      hs.socket.write(clientFrame('ping-pong'));
      expect(await readFrame(hs.socket, hs.rest)).toEqual({ opcode: 1, payload: 'ping-pong' });
    } finally {
      hs.socket.destroy();
    }
    const seen = upgrades()[0]!;
    expect(seen.url).toBe('/v2/room/7/events?a=1&b=2');
    expect(seen.url).not.toContain('auth_token');
    expect(seen.url).not.toContain(token);
    expect(seen.headers['x-auth-subject']).toBe('alice');
  });
});

describe('refused WebSocket upgrades', () => {
  it('answers an upgrade without a token with the 401 JSON envelope, and the upstream sees nothing', async () => {
    const hs = await rawHandshake(gw.url, '/v2/room/7/events');
    expect(hs.status).toBe(401);
    expect(hs.headers['content-type']).toMatch(/^application\/json/);
    expect(hs.headers['www-authenticate']).toBe('Bearer realm="api"');
    expect(hs.headers['x-request-id']).toMatch(/.+/);
    expect(JSON.parse(hs.body)).toEqual({ error: { code: 401, message: 'Authenticated requests only.', type: 'Unauthorized', reason: 'token_missing' } });
    expect(up.requests).toHaveLength(0);
  });

  it('answers an upgrade with an invalid token with 401 invalid_token, without echoing the token', async () => {
    const token = await hsToken('wrong-secret-0123456789abcdef0123', { iss: 'scopegate-test', aud: 'api', exp: nowS() + 60 });
    const hs = await rawHandshake(gw.url, '/v2/room/7/events', { Authorization: `Bearer ${token}` });
    expect(hs.status).toBe(401);
    expect(JSON.parse(hs.body).error.reason).toBe('signature_invalid');
    expect(hs.body).not.toContain(token);
    expect(up.requests).toHaveLength(0);
  });

  it('answers an upgrade whose token lacks the scope with 403 scope_insufficient', async () => {
    const token = await mint({ scope: 'send_notification' });
    const hs = await rawHandshake(gw.url, '/v2/room/7/events', { Authorization: `Bearer ${token}` });
    expect(hs.status).toBe(403);
    expect(hs.headers['www-authenticate']).toBe('Bearer realm="api", error="insufficient_scope", scope="view_room"');
    expect(JSON.parse(hs.body).error).toMatchObject({ code: 403, reason: 'scope_insufficient' });
    expect(up.requests).toHaveLength(0);
  });

  it('answers an upgrade on no route with 404 route_not_found', async () => {
    const hs = await rawHandshake(gw.url, '/v2/nowhere', { Authorization: `Bearer ${await mint()}` });
    expect(hs.status).toBe(404);
    expect(JSON.parse(hs.body).error.reason).toBe('route_not_found');
    expect(up.requests).toHaveLength(0);
  });

  it('answers an upgrade whose upstream refuses connections with 502, and keeps serving', async () => {
    const token = await mint();
    const hs = await rawHandshake(gw.url, '/v2/dead/events', { Authorization: `Bearer ${token}` });
    expect(hs.status).toBe(502);
    expect(hs.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(hs.body)).toEqual({ error: { code: 502, message: 'The upstream service is unavailable.', type: 'Bad Gateway', reason: 'upstream_unavailable' } });
    // Still alive: a plain request and another upgrade both go through.
    const res = await fetch(`${gw.url}/v2/room/7`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const ws = await openWs(wsUrl('/v2/room/7/events'), { authorization: `Bearer ${token}` });
    const echoed = nextMessage(ws);
    ws.send('still here');
    expect(await echoed).toBe('still here');
    await closeWs(ws);
  });

  it('answers 504 upstream_timeout when the upstream never answers the handshake', async () => {
    const hs = await rawHandshake(gw.url, '/v2/slow/events', { Authorization: `Bearer ${await mint()}` });
    expect(hs.status).toBe(504);
    expect(JSON.parse(hs.body).error.reason).toBe('upstream_timeout');
    expect(slow.requests.some((r) => r.upgrade)).toBe(true);
  });

  it("relays the upstream's own refusal of the handshake", async () => {
    up.route('/v2/room/9/events', { kind: 'respond', status: 403, body: 'nope' });
    const hs = await rawHandshake(gw.url, '/v2/room/9/events', { Authorization: `Bearer ${await mint()}` });
    expect(hs.status).toBe(403);
    expect(hs.body).toBe('nope');
    expect(upgrades()).toHaveLength(1);
  });
});

describe('tunnel lifetime', () => {
  it('closes the upstream side when the client drops the connection', async () => {
    const hs = await rawHandshake(gw.url, '/v2/room/7/events', { Authorization: `Bearer ${await mint()}` });
    expect(hs.status).toBe(101);
    const seen = await up.waitForRequest(1);
    hs.socket.destroy();
    await seen.done; // resolves when the upstream's socket closed
    const res = await fetch(`${gw.url}/v2/room/7`, { headers: { authorization: `Bearer ${await mint()}` } });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
  });

  it('closes the pending upstream handshake when the client leaves before the upstream answers', async () => {
    up.route('/v2/room/8/events', { kind: 'hang' });
    const logsBefore = gw.logs.length;
    const u = new URL(gw.url);
    const s = connect(Number(u.port), u.hostname);
    s.on('error', () => {});
    await new Promise<void>((r) => s.once('connect', () => r()));
    s.write(
      'GET /v2/room/8/events HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n' +
        `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nAuthorization: Bearer ${await mint()}\r\nX-Request-Id: ws-left\r\n\r\n`,
    );
    const seen = await up.waitForRequest(1);
    s.destroy();
    await seen.done; // the upstream's connection was closed
    // Closed because the client left, not because the handshake timed out.
    await until(() => gw.logs.slice(logsBefore).some((l) => l.includes('"request_id":"ws-left"')), 'the access log line');
    expect(gw.logs.slice(logsBefore).some((l) => l.includes('"upstream_timeout"'))).toBe(false);
  });

  it('closes the client side when the upstream drops the tunnel', async () => {
    const hs = await rawHandshake(gw.url, '/v2/room/7/events', { Authorization: `Bearer ${await mint()}` });
    expect(hs.status).toBe(101);
    const closed = new Promise<void>((resolve) => hs.socket.once('close', () => resolve()));
    hs.socket.resume();
    await up.waitForRequest(1);
    // A close frame makes the echo upstream answer it and end its socket: the gateway must then
    // close the client's side of the tunnel too.
    const mask = randomBytes(4);
    hs.socket.write(Buffer.concat([Buffer.from([0x88, 0x80]), mask]));
    await closed;
  });
});
