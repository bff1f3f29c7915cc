import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { createServer, request } from 'node:http';
import type { IncomingMessage, OutgoingHttpHeaders, Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { renderError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { closedPortUrl, startUpstream } from '../../test/helpers/upstream.js';
import type { Upstream } from '../../test/helpers/upstream.js';
import { buildUpstreamHeaders } from './upstream-headers.js';
import { createWsProxy } from './websocket.js';
import type { WsProxy } from './websocket.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function upstream(...args: Parameters<typeof startUpstream>): Promise<Upstream> {
  const up = await startUpstream(...args);
  cleanups.push(() => up.close());
  return up;
}

interface Front {
  url: string;
  errors: ErrorCode[];
  ws: WsProxy;
  /** Plain requests still work on the same listener (the process survived). */
  server: Server;
}

/** The gateway's role, reduced to the upgrade path: build headers, hand the socket to the proxy. */
async function front(target: string, timeoutMs = 5_000): Promise<Front> {
  const errors: ErrorCode[] = [];
  const ws = createWsProxy({ render: (e) => renderError(e, { realm: 'test' }), onError: (_e, code) => errors.push(code) });
  const server = createServer((_req, res) => res.end('alive'));
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    ws.proxy(req, socket, head, {
      target,
      pathAndQuery: (req.url ?? '/').replace('auth_token=secret&', ''),
      headers: buildUpstreamHeaders(req.headers, {
        identityPrefix: 'X-Auth-',
        principal: { issuerName: 'local', subject: 'room-bot', clientType: 'room', scopes: ['send_notification'], room: '42' },
        forwardToken: false,
        token: 'secret',
        requestId: 'ws-request-id',
        clientIp: '127.0.0.1',
        proto: 'http',
      }),
      responseHeaders: { 'X-Request-Id': 'ws-request-id' },
      timeoutMs,
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    ws.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, errors, ws, server };
}

type Handshake =
  | { kind: 'upgraded'; headers: IncomingMessage['headers']; socket: Socket }
  | { kind: 'response'; status: number; headers: IncomingMessage['headers']; body: string }
  | { kind: 'closed' };

/** `url` is split by hand so the request target goes out exactly as written (WHATWG URL would escape it). */
function handshake(url: string, headers: OutgoingHttpHeaders = {}): Promise<Handshake> {
  const m = /^http:\/\/([^/:]+):(\d+)(\/.*)$/.exec(url)!;
  return new Promise((resolve) => {
    const req = request({
      host: m[1],
      port: Number(m[2]),
      path: m[3],
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': randomBytes(16).toString('base64'),
        ...headers,
      },
    });
    req.on('upgrade', (res, socket) => {
      socket.on('error', () => {});
      resolve({ kind: 'upgraded', headers: res.headers, socket });
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ kind: 'response', status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', () => resolve({ kind: 'closed' }));
    req.end();
  });
}

/** A masked client text frame (payload < 126 bytes). */
function textFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]);
}

function readTextFrame(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= 2 && buf.length >= 2 + (buf[1]! & 0x7f)) {
        socket.off('data', onData);
        resolve(buf.subarray(2, 2 + (buf[1]! & 0x7f)).toString());
      }
    };
    socket.on('data', onData);
  });
}

const alive = async (url: string): Promise<string> =>
  new Promise((resolve, reject) => {
    request(url, (res) => {
      let t = '';
      res.on('data', (c: Buffer) => (t += c.toString()));
      res.on('end', () => resolve(t));
    })
      .on('error', reject)
      .end();
  });

describe('createWsProxy', () => {
  it('completes the handshake and echoes a frame through the proxy', async () => {
    const up = await upstream();
    const gw = await front(up.url);
    const hs = await handshake(`${gw.url}/v2/room/42/events?auth_token=secret&since=1`, {
      'x-auth-subject': 'admin',
      'X-Auth-Room': '1',
      authorization: 'Bearer secret',
    });
    if (hs.kind !== 'upgraded') throw new Error(`expected an upgrade, got ${hs.kind}`);
    expect(hs.headers['x-request-id']).toBe('ws-request-id');
    hs.socket.write(textFrame('ping through proxy'));
    expect(await readTextFrame(hs.socket)).toBe('ping through proxy');
    hs.socket.destroy();

    const seen = up.requests[0]!;
    expect(seen.upgrade).toBe(true);
    expect(seen.url).toBe('/v2/room/42/events?since=1');
    expect(seen.headers['x-auth-subject']).toBe('room-bot');
    expect(seen.headers['x-auth-room']).toBe('42');
    expect(seen.headers['authorization']).toBeUndefined();
    expect(seen.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen.headers['x-request-id']).toBe('ws-request-id');
    expect(seen.headers['sec-websocket-version']).toBe('13');
  });

  it('forwards the request target byte for byte', async () => {
    const up = await upstream();
    const gw = await front(up.url);
    const hs = await handshake(`${gw.url}/ws/it's/{x}//y?next=http://a//b&q='1'`);
    expect(hs.kind).toBe('upgraded');
    if (hs.kind === 'upgraded') hs.socket.destroy();
    expect(up.requests[0]!.url).toBe("/ws/it's/{x}//y?next=http://a//b&q='1'");
  });

  it('answers 502 and closes the socket when the upstream refuses, and keeps running', async () => {
    const gw = await front(await closedPortUrl());
    const hs = await handshake(`${gw.url}/v2/events`);
    expect(hs).toMatchObject({ kind: 'response', status: 502 });
    if (hs.kind !== 'response') return;
    expect(hs.headers['x-request-id']).toBe('ws-request-id');
    expect(JSON.parse(hs.body)).toMatchObject({ error: { code: 502, reason: 'upstream_unavailable' } });
    expect(gw.errors).toEqual(['upstream_unavailable']);
    expect(await alive(gw.url)).toBe('alive');
  });

  it('answers 504 when the upstream does not answer the handshake in time', async () => {
    const up = await upstream({ routes: { '/hang': { kind: 'hang' } } });
    const gw = await front(up.url, 100);
    const hs = await handshake(`${gw.url}/hang`);
    expect(hs).toMatchObject({ kind: 'response', status: 504 });
    if (hs.kind === 'response') expect(JSON.parse(hs.body)).toMatchObject({ error: { reason: 'upstream_timeout' } });
    expect(gw.errors).toEqual(['upstream_timeout']);
  });

  it('relays an upstream refusal of the handshake as is', async () => {
    const up = await upstream({ routes: { '/no': { kind: 'respond', status: 403, body: 'nope' } } });
    const gw = await front(up.url);
    const hs = await handshake(`${gw.url}/no`);
    expect(hs).toMatchObject({ kind: 'response', status: 403, body: 'nope' });
    expect(gw.errors).toEqual([]);
  });

  it('survives a client that resets an open tunnel', async () => {
    const up = await upstream();
    const gw = await front(up.url);
    const hs = await handshake(`${gw.url}/v2/events`);
    if (hs.kind !== 'upgraded') throw new Error('expected an upgrade');
    hs.socket.resetAndDestroy();
    await up.requests[0]!.done;
    expect(await alive(gw.url)).toBe('alive');
  });

  it('closes the upstream handshake when the client leaves first, without reporting an upstream error', async () => {
    const up = await upstream({ routes: { '/hang': { kind: 'hang' } } });
    const gw = await front(up.url);
    const req = request(`${gw.url}/hang`, {
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64') },
    });
    req.on('error', () => {});
    req.end();
    const seen = await up.waitForRequest(1);
    req.destroy();
    await seen.done;
    expect(gw.errors).toEqual([]);
    expect(await alive(gw.url)).toBe('alive');
  });

  it('close() ends open tunnels', async () => {
    const up = await upstream();
    const gw = await front(up.url);
    const hs = await handshake(`${gw.url}/v2/events`);
    if (hs.kind !== 'upgraded') throw new Error('expected an upgrade');
    const closed = new Promise<void>((resolve) => hs.socket.once('close', () => resolve()));
    gw.ws.close();
    await closed;
    await up.requests[0]!.done;
  });
});
