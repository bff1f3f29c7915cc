import { afterEach, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, request } from 'node:http';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket } from 'undici';
import { renderError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import type { UpstreamConfig } from '../config/schema.js';
import type { Principal } from '../types.js';
import { closedPortUrl, startUpstream } from '../../test/helpers/upstream.js';
import type { Upstream } from '../../test/helpers/upstream.js';
import { CLIENT_CLOSED_REQUEST, createForwarder, DEFAULT_BODY_IDLE_TIMEOUT_MS } from './forward.js';
import type { ForwardResult } from './forward.js';
import { stripParams } from '../http/raw-query.js';
import { buildUpstreamHeaders } from './upstream-headers.js';

const principal: Principal = { issuerName: 'local', iss: 'scopegate-local', subject: 'user-42', clientType: 'user', scopes: ['view_group'] };
const DROP = new Set(['auth_token', 'auth_test']);

interface Gateway {
  url: string;
  results: ForwardResult[];
  nextResult(): Promise<ForwardResult>;
  upstreamErrors: ErrorCode[];
  close(): Promise<void>;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function upstream(...args: Parameters<typeof startUpstream>): Promise<Upstream> {
  const up = await startUpstream(...args);
  cleanups.push(() => up.close());
  return up;
}

/** A plain node:http server standing where the real app will: builds headers, calls forward/upgrade. */
async function gateway(upstreamUrl: string, cfg: Partial<UpstreamConfig> = {}): Promise<Gateway> {
  const config: UpstreamConfig = { url: upstreamUrl, timeout_ms: 5_000, connect_timeout_ms: 1_000, max_sockets: 8, ...cfg };
  const upstreamErrors: ErrorCode[] = [];
  const fwd = createForwarder({ default: config }, {
    render: (e) => renderError(e, { realm: 'test' }),
    onUpstreamError: (_err, code) => upstreamErrors.push(code),
  });
  const results: ForwardResult[] = [];
  const waiting: Array<(r: ForwardResult) => void> = [];
  const optsFor = (req: IncomingMessage) => {
    const raw = req.url ?? '/';
    const q = raw.indexOf('?');
    const query = q === -1 ? '' : stripParams(raw.slice(q + 1), DROP);
    return {
      upstream: 'default',
      pathAndQuery: (q === -1 ? raw : raw.slice(0, q)) + (query ? `?${query}` : ''),
      headers: buildUpstreamHeaders(req.headers, {
        identityPrefix: 'X-Auth-',
        principal,
        token: 'tok.en.sig',
        forwardToken: true,
        requestId: 'gw-request-id',
        clientIp: req.socket.remoteAddress ?? '',
        proto: 'http',
        // The test client connects from loopback, which the default trusted_proxies trusts.
        trustedPeer: true,
      }),
      responseHeaders: { 'X-Request-Id': 'gw-request-id', 'X-Ratelimit-Remaining': '499' },
    };
  };
  const server: Server = createServer((req, res) => {
    void fwd.forward(req, res, optsFor(req)).then((r) => {
      results.push(r);
      waiting.shift()?.(r);
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket, head: Buffer) => fwd.upgrade(req, socket, head, optsFor(req)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const gw: Gateway = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    results,
    upstreamErrors,
    nextResult: () => new Promise((resolve) => waiting.push(resolve)),
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await fwd.close();
    },
  };
  cleanups.push(() => gw.close());
  return gw;
}

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

function send(url: string, opts: { method?: string; headers?: OutgoingHttpHeaders; body?: Buffer | string | Buffer[] } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    const body = opts.body;
    if (Array.isArray(body)) {
      // Written piece by piece, without a content-length: chunked transfer encoding.
      let i = 0;
      const pump = (): void => {
        while (i < body.length) {
          if (!req.write(body[i++]!)) {
            req.once('drain', pump);
            return;
          }
        }
        req.end();
      };
      pump();
    } else {
      req.end(body);
    }
  });
}

const json = (r: Reply): unknown => JSON.parse(r.body.toString('utf8'));

describe('forward: what reaches the upstream', () => {
  it.each(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])('forwards %s with path and query byte for byte', async (method) => {
    const up = await upstream();
    const gw = await gateway(up.url);
    const body = method === 'GET' || method === 'OPTIONS' ? undefined : '{"message":"hi ü"}';
    const reply = await send(`${gw.url}/v2/room/%7Bops%7D/x?expand=items.user&a=1&a=2&x=%2F&auth_token=secret&auth_test=true&e=`, {
      method,
      headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {},
      body,
    });
    expect(reply.status).toBe(200);
    const seen = up.requests[0]!;
    expect(seen.method).toBe(method);
    expect(seen.url).toBe('/v2/room/%7Bops%7D/x?expand=items.user&a=1&a=2&x=%2F&e=');
    expect(seen.body.toString('utf8')).toBe(body ?? '');
  });

  it('streams a 5 MB chunked request body intact', async () => {
    const up = await upstream();
    const gw = await gateway(up.url);
    const pieces = Array.from({ length: 80 }, () => randomBytes(64 * 1024));
    const total = Buffer.concat(pieces);
    const reply = await send(`${gw.url}/upload`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: pieces });
    expect(reply.status).toBe(200);
    const seen = up.requests[0]!;
    expect(seen.bodyComplete).toBe(true);
    expect(seen.body.length).toBe(total.length);
    expect(createHash('sha256').update(seen.body).digest('hex')).toBe(createHash('sha256').update(total).digest('hex'));
  });

  it('streams a 5 MB body with content-length intact', async () => {
    const up = await upstream();
    const gw = await gateway(up.url);
    const total = randomBytes(5 * 1024 * 1024);
    const reply = await send(`${gw.url}/upload`, { method: 'PUT', headers: { 'content-length': total.length }, body: total });
    expect(reply.status).toBe(200);
    expect(up.requests[0]!.headers['content-length']).toBe(String(total.length));
    expect(up.requests[0]!.body.equals(total)).toBe(true);
  });

  it('strips hop-by-hop request headers and sets identity and forwarding headers', async () => {
    const up = await upstream();
    const gw = await gateway(up.url);
    await send(`${gw.url}/v2/x`, {
      headers: {
        connection: 'keep-alive, X-Hop',
        'x-hop': 'secret',
        'keep-alive': 'timeout=5',
        'proxy-authorization': 'Basic eDp5',
        'x-auth-subject': 'admin',
        'X-Auth-Scopes': 'admin_group',
        'x-forwarded-for': '1.2.3.4',
        'x-custom': 'kept',
        expect: '100-continue',
      },
    });
    const h = up.requests[0]!.headers;
    expect(h['x-hop']).toBeUndefined();
    expect(h['keep-alive']).toBeUndefined();
    expect(h['proxy-authorization']).toBeUndefined();
    expect(h['expect']).toBeUndefined();
    expect(h['x-custom']).toBe('kept');
    expect(h['x-auth-subject']).toBe('user-42');
    expect(h['x-auth-scopes']).toBe('view_group');
    expect(h['authorization']).toBe('Bearer tok.en.sig');
    expect(h['x-forwarded-for']).toBe('1.2.3.4, 127.0.0.1');
    expect(h['x-request-id']).toBe('gw-request-id');
    expect(h['host']).toBe(new URL(up.url).host);
  });

  it('prefixes the upstream URL path', async () => {
    const up = await upstream();
    const gw = await gateway(`${up.url}/base/`);
    await send(`${gw.url}/v2/x?y=1`);
    expect(up.requests[0]!.url).toBe('/base/v2/x?y=1');
  });

  it('forwards the body of an Expect: 100-continue request without the Expect header', async () => {
    const up = await upstream();
    const gw = await gateway(up.url);
    const reply = await new Promise<Reply>((resolve, reject) => {
      const req = request(`${gw.url}/upload`, { method: 'POST', headers: { expect: '100-continue', 'content-length': 5 } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      });
      req.on('continue', () => req.end('hello'));
      req.on('error', reject);
    });
    expect(reply.status).toBe(200);
    expect(up.requests[0]!.body.toString()).toBe('hello');
    expect(up.requests[0]!.headers['expect']).toBeUndefined();
  });
});

describe('forward: what reaches the client', () => {
  it('relays status, headers and body, strips hop-by-hop, and lets the gateway headers win', async () => {
    const up = await upstream({
      routes: {
        '/v2/x': {
          kind: 'respond',
          status: 201,
          headers: {
            'content-type': 'text/plain',
            'set-cookie': ['a=1', 'b=2'],
            'x-request-id': 'upstream-id',
            'x-resp-hop': 'drop me',
            connection: 'x-resp-hop',
            'proxy-authenticate': 'Basic',
          },
          body: 'created',
        },
      },
    });
    const gw = await gateway(up.url);
    const done = gw.nextResult();
    const reply = await send(`${gw.url}/v2/x`);
    expect(reply.status).toBe(201);
    expect(reply.body.toString()).toBe('created');
    expect(reply.headers['content-type']).toBe('text/plain');
    expect(reply.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect(reply.headers['x-request-id']).toBe('gw-request-id');
    expect(reply.headers['x-ratelimit-remaining']).toBe('499');
    expect(reply.headers['x-resp-hop']).toBeUndefined();
    expect(reply.headers['proxy-authenticate']).toBeUndefined();
    expect(await done).toMatchObject({ status: 201 });
  });

  it('reports the status sent and the upstream time', async () => {
    const up = await upstream({ routes: { '/teapot': { kind: 'respond', status: 418, body: 'short and stout' } } });
    const gw = await gateway(up.url);
    const done = gw.nextResult();
    await send(`${gw.url}/teapot`);
    const r = await done;
    expect(r.status).toBe(418);
    expect(r.error).toBeUndefined();
    expect(r.aborted).toBeUndefined();
    expect(r.upstreamMs).toBeGreaterThanOrEqual(0);
  });

  it('streams response chunks to the client before the upstream finishes', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const up = await upstream({
      routes: {
        '/events': {
          kind: 'handler',
          fn: (_req, res) => {
            res.writeHead(200, { 'content-type': 'text/event-stream' });
            res.write('first\n');
            // The second chunk is written only once the client has received the first.
            void released.then(() => res.end('second\n'));
          },
        },
      },
    });
    const gw = await gateway(up.url);
    const received = await new Promise<string>((resolve, reject) => {
      request(`${gw.url}/events`, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString();
          if (text === 'first\n') release();
        });
        res.on('end', () => resolve(text));
      })
        .on('error', reject)
        .end();
    });
    expect(received).toBe('first\nsecond\n');
  });

  it('holds the upstream back while the client is not reading, then delivers every byte', async () => {
    const CHUNK = 64 * 1024;
    const TOTAL = 64 * 1024 * 1024;
    const chunk = randomBytes(CHUNK);
    let written = 0;
    const up = await upstream({
      routes: {
        '/big': {
          kind: 'handler',
          fn: (_req, res) => {
            res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(TOTAL) });
            // Writes as fast as the gateway takes it, honouring backpressure like a real server.
            const pump = (): void => {
              while (written < TOTAL) {
                written += CHUNK;
                if (!res.write(chunk)) {
                  res.once('drain', pump);
                  return;
                }
              }
              res.end();
            };
            pump();
          },
        },
      },
    });
    const gw = await gateway(up.url);
    const { received, writtenWhilePaused, intact } = await new Promise<{ received: number; writtenWhilePaused: number; intact: boolean }>(
      (resolve, reject) => {
        request(`${gw.url}/big`, (res) => {
          res.pause();
          // Long enough for the upstream to push everything if the gateway buffered without limit.
          setTimeout(() => {
            const writtenWhilePaused = written;
            let received = 0;
            let intact = true;
            res.on('data', (c: Buffer) => {
              // Every chunk the upstream sent is the same 64 KiB; check the bytes, whatever the framing.
              for (let i = 0; i < c.length; i += 4096) if (c[i] !== chunk[(received + i) % CHUNK]) intact = false;
              received += c.length;
            });
            res.on('end', () => resolve({ received, writtenWhilePaused, intact }));
            res.resume();
          }, 500);
        })
          .on('error', reject)
          .end();
      },
    );
    // Socket buffers on loopback hold a few MiB; without backpressure all 64 MiB would be gone.
    expect(writtenWhilePaused).toBeLessThan(TOTAL / 2);
    expect(received).toBe(TOTAL);
    expect(intact).toBe(true);
    expect(gw.results.map((r) => r.status)).toEqual([200]);
  });

  it('sends no body for HEAD and keeps content-length', async () => {
    const up = await upstream({ routes: { '/doc': { kind: 'respond', headers: { 'content-length': '11', 'content-type': 'text/plain' }, body: '' } } });
    const gw = await gateway(up.url);
    const reply = await send(`${gw.url}/doc`, { method: 'HEAD' });
    expect(reply.status).toBe(200);
    expect(reply.headers['content-length']).toBe('11');
    expect(reply.body.length).toBe(0);
    expect(up.requests[0]!.method).toBe('HEAD');
  });
});

describe('forward: upstream failures', () => {
  const envelope = (status: number, reason: string, type: string) => ({
    error: { code: status, message: expect.any(String), type, reason },
  });

  it('answers 502 upstream_unavailable when the upstream refuses connections', async () => {
    const gw = await gateway(await closedPortUrl());
    const done = gw.nextResult();
    const reply = await send(`${gw.url}/v2/x`);
    expect(reply.status).toBe(502);
    expect(reply.headers['content-type']).toBe('application/json');
    expect(reply.headers['x-request-id']).toBe('gw-request-id');
    expect(json(reply)).toEqual(envelope(502, 'upstream_unavailable', 'Bad Gateway'));
    const r = await done;
    expect(r.status).toBe(502);
    expect(r.error?.code).toBe('upstream_unavailable');
    expect(gw.upstreamErrors).toEqual(['upstream_unavailable']);
  });

  it('answers 502 to a POST with a body when the upstream refuses connections', async () => {
    const gw = await gateway(await closedPortUrl());
    const reply = await send(`${gw.url}/upload`, { method: 'POST', headers: { 'content-length': 1024 * 1024 }, body: randomBytes(1024 * 1024) });
    expect(reply.status).toBe(502);
    expect(json(reply)).toEqual(envelope(502, 'upstream_unavailable', 'Bad Gateway'));
  });

  it('answers 502 when the upstream resets the connection before answering', async () => {
    const up = await upstream({ routes: { '/reset': { kind: 'reset' } } });
    const gw = await gateway(up.url);
    const reply = await send(`${gw.url}/reset`);
    expect(reply.status).toBe(502);
    expect(json(reply)).toEqual(envelope(502, 'upstream_unavailable', 'Bad Gateway'));
  });

  it('answers 504 upstream_timeout when no response headers arrive in time', async () => {
    const up = await upstream({ routes: { '/hang': { kind: 'hang' } } });
    const gw = await gateway(up.url, { timeout_ms: 150 });
    const done = gw.nextResult();
    const reply = await send(`${gw.url}/hang`);
    expect(reply.status).toBe(504);
    expect(json(reply)).toEqual(envelope(504, 'upstream_timeout', 'Gateway Timeout'));
    expect((await done).error?.code).toBe('upstream_timeout');
    expect(gw.upstreamErrors).toEqual(['upstream_timeout']);
  });

  it('times out each bodyless request on its own deadline while many others finish in between', async () => {
    // Bodyless exchanges share one timer per upstream: a hanging request started after, between
    // and before hundreds of fast ones must still get its 504 at its own timeout_ms, not at the
    // deadline of whichever request armed the timer, and fast ones must never be timed out.
    const up = await upstream({ routes: { '/hang': { kind: 'hang' }, '/slow': { kind: 'slow', delayMs: 150 } } });
    const gw = await gateway(up.url, { timeout_ms: 400, max_sockets: 16 });
    const fast = async (n: number) => {
      for (let i = 0; i < n; i++) expect((await send(`${gw.url}/ok`)).status).toBe(200);
    };
    const t0 = performance.now();
    const first = send(`${gw.url}/hang`).then((r) => ({ r, at: performance.now() - t0 }));
    await fast(50);
    const t1 = performance.now();
    const second = send(`${gw.url}/hang`).then((r) => ({ r, at: performance.now() - t1 }));
    const slowOnes = Promise.all([1, 2, 3].map(() => send(`${gw.url}/slow`)));
    await fast(50);
    const [a, b, slow] = await Promise.all([first, second, slowOnes]);
    expect(a.r.status).toBe(504);
    expect(b.r.status).toBe(504);
    // Each 504 comes after its own timeout_ms (timers may be late, never early by more than a tick).
    expect(a.at).toBeGreaterThanOrEqual(395);
    expect(b.at).toBeGreaterThanOrEqual(395);
    expect(b.at).toBeLessThan(3_000);
    expect(slow.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(gw.upstreamErrors).toEqual(['upstream_timeout', 'upstream_timeout']);
  });

  it('keeps no finished exchange alive: its request and response can be collected long before timeout_ms', async () => {
    // A bodyless exchange waits in the upstream's shared Deadlines until its headers arrive; once
    // they have, nothing of it may stay referenced there (a regression kept every exchange, with
    // its req and res, until the timer fired: ~30 s of traffic on the heap at 5k req/s).
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const up = await upstream();
    const fwd = createForwarder({ default: { url: up.url, timeout_ms: 60_000, connect_timeout_ms: 1_000, max_sockets: 4 } }, { render: (e) => renderError(e, { realm: 'test' }) });
    const refs: Array<WeakRef<object>> = [];
    const server = createServer((req, res) => {
      refs.push(new WeakRef(res), new WeakRef(req));
      void fwd.forward(req, res, { upstream: 'default', pathAndQuery: req.url ?? '/', headers: {}, responseHeaders: {} });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await fwd.close();
    });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    for (let i = 0; i < 100; i++) expect((await send(`${url}/r${i}`, { headers: { connection: 'close' } })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 50));
    for (let i = 0; i < 3; i++) {
      gc();
      await new Promise((r) => setImmediate(r));
    }
    const alive = refs.filter((r) => r.deref() !== undefined).length;
    // One or two may still be referenced by a socket being torn down; never the hundreds of pairs.
    expect(alive).toBeLessThan(10);
  });

  it('destroys the client connection when the upstream resets mid-body, and keeps serving', async () => {
    const up = await upstream({
      routes: { '/flaky': { kind: 'stream', chunks: ['part-1;', 'part-2;'], intervalMs: 5, thenReset: true } },
    });
    const gw = await gateway(up.url);
    const done = gw.nextResult();
    const outcome = await new Promise<{ status: number; text: string; broken: boolean }>((resolve) => {
      request(`${gw.url}/flaky`, (res) => {
        let text = '';
        let broken = false;
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('aborted', () => (broken = true));
        res.on('error', () => (broken = true));
        res.on('close', () => resolve({ status: res.statusCode ?? 0, text, broken: broken || !res.complete }));
      })
        .on('error', () => resolve({ status: 0, text: '', broken: true }))
        .end();
    });
    expect(outcome.status).toBe(200);
    expect(outcome.broken).toBe(true);
    const r = await done;
    expect(r.status).toBe(200);
    expect(r.error?.code).toBe('upstream_unavailable');
    // The gateway process and listener survived.
    const again = await send(`${gw.url}/v2/ok`);
    expect(again.status).toBe(200);
  });

  it('destroys the client connection when the upstream goes silent mid-body', async () => {
    const up = await upstream({ routes: { '/stall': { kind: 'stream', chunks: ['a', 'b'], intervalMs: 60_000 } } });
    const gw = await gateway(up.url, { timeout_ms: 150 });
    const done = gw.nextResult();
    const broken = await new Promise<boolean>((resolve) => {
      request(`${gw.url}/stall`, (res) => {
        res.resume();
        res.on('close', () => resolve(!res.complete));
      })
        .on('error', () => resolve(true))
        .end();
    });
    expect(broken).toBe(true);
    const r = await done;
    expect(r.status).toBe(200);
    expect(r.error?.code).toBe('upstream_timeout');
  });
});

describe('forward: client hang-up', () => {
  it('aborts the upstream request when the client leaves before the response', async () => {
    const up = await upstream({ routes: { '/hang': { kind: 'hang' } } });
    const gw = await gateway(up.url);
    const done = gw.nextResult();
    const req = request(`${gw.url}/hang`);
    req.on('error', () => {});
    req.end();
    const seen = await up.waitForRequest(1);
    req.destroy();
    await seen.done;
    expect(seen.clientClosed).toBe(true);
    const r = await done;
    expect(r).toMatchObject({ aborted: true, status: CLIENT_CLOSED_REQUEST });
    expect(r.error).toBeUndefined();
    expect(gw.upstreamErrors).toEqual([]);
  });

  it('aborts the upstream request when the client leaves mid-response', async () => {
    const up = await upstream({ routes: { '/slow-stream': { kind: 'stream', chunks: ['a', 'b', 'c', 'd'], intervalMs: 60_000 } } });
    const gw = await gateway(up.url);
    const done = gw.nextResult();
    const req = request(`${gw.url}/slow-stream`, (res) => res.once('data', () => req.destroy()));
    req.on('error', () => {});
    req.end();
    const seen = await up.waitForRequest(1);
    await seen.done;
    expect(seen.clientClosed).toBe(true);
    expect(await done).toMatchObject({ aborted: true, status: 200 });
  });

  it('aborts the upstream request when the client leaves mid-upload', async () => {
    const up = await upstream({ routes: { '/upload': { kind: 'hang' } } });
    const gw = await gateway(up.url);
    const done = gw.nextResult();
    const req = request(`${gw.url}/upload`, { method: 'POST', headers: { 'content-length': 10 * 1024 * 1024 } });
    req.on('error', () => {});
    req.write(randomBytes(64 * 1024));
    const seen = await up.waitForRequest(1);
    req.destroy();
    await seen.done;
    expect(seen.clientClosed).toBe(true);
    expect(seen.bodyComplete).toBe(false);
    expect(await done).toMatchObject({ aborted: true });
  });
});

describe('forward: WebSocket upgrade', () => {
  it('tunnels a WebSocket to the upstream with identity headers and without spoofed ones', async () => {
    const up = await upstream();
    const gw = await gateway(up.url);
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v2/room/1/events?auth_token=secret&x=1`, {
      headers: { 'X-Auth-Subject': 'admin', 'X-Auth-Client-Type': 'group' },
    });
    const echoed = await new Promise<string>((resolve, reject) => {
      ws.addEventListener('open', () => ws.send('hello through the gateway'));
      ws.addEventListener('message', (ev) => resolve(String(ev.data)));
      ws.addEventListener('error', () => reject(new Error('websocket error')));
    });
    ws.close();
    expect(echoed).toBe('hello through the gateway');
    const seen = up.requests[0]!;
    expect(seen.upgrade).toBe(true);
    expect(seen.url).toBe('/v2/room/1/events?x=1');
    expect(seen.headers['x-auth-subject']).toBe('user-42');
    expect(seen.headers['x-auth-client-type']).toBe('user');
    expect(seen.headers['x-request-id']).toBe('gw-request-id');
    expect(seen.headers['upgrade']).toBe('websocket');
  });
});

describe('createForwarder: options', () => {
  const render = (e: Parameters<typeof renderError>[0]) => renderError(e, { realm: 'test' });
  const upstreams = (cfg: Partial<UpstreamConfig> = {}): Record<string, UpstreamConfig> => ({
    default: { url: 'http://127.0.0.1:9', timeout_ms: 1_000, connect_timeout_ms: 500, max_sockets: 4, ...cfg },
  });

  it.each([0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 31])('refuses bodyIdleTimeoutMs %s once, at build time', (ms) => {
    expect(() => createForwarder(upstreams(), { render, bodyIdleTimeoutMs: ms })).toThrow(/^bodyIdleTimeoutMs must be an integer from 1 to 2147483647 \(ms\)/);
  });

  it('refuses a timeout_ms that Node timers cannot hold (it would fire after 1 ms)', () => {
    expect(() => createForwarder(upstreams({ timeout_ms: 2 ** 31 }), { render })).toThrow(/^upstreams\.default\.timeout_ms must be an integer/);
  });

  it('refuses max_sockets below 1', () => {
    expect(() => createForwarder(upstreams({ max_sockets: 0 }), { render })).toThrow(/^upstreams\.default\.max_sockets must be a positive integer/);
  });

  it('defaults the body idle timeout to listen.body_idle_timeout_ms\'s default', async () => {
    expect(DEFAULT_BODY_IDLE_TIMEOUT_MS).toBe(30_000);
    const fwd = createForwarder(upstreams(), { render });
    await fwd.close();
    await fwd.close(); // idempotent
  });
});
