/**
 * Issue 10, rule 4 (SPEC §1.8): slow clients must not starve an upstream. A pause inside a
 * request body is bounded by `listen.body_idle_timeout_ms` (408, the upstream request aborted and
 * its connection freed); `timeout_ms` runs from the decision to forward, the wait for a free
 * connection included (504, and the waiting request never reaches the upstream); and neither
 * clock mistakes the gateway's own backpressure for a slow client.
 *
 * Real sockets throughout: a recording upstream, createForwarder behind a plain node:http server
 * (as src/proxy/forward.test.ts does), clients that trickle bytes on their own connections.
 */
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, request } from 'node:http';
import type { IncomingMessage, Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { renderError } from '../../src/errors.js';
import type { ErrorCode } from '../../src/errors.js';
import type { UpstreamConfig } from '../../src/config/schema.js';
import { createForwarder } from '../../src/proxy/forward.js';
import type { ForwardResult, Forwarder } from '../../src/proxy/forward.js';
import { buildUpstreamHeaders } from '../../src/proxy/upstream-headers.js';
import { startUpstream } from '../helpers/upstream.js';
import { baseConfig, startTestGateway, TEST_SECRET } from '../helpers/gateway.js';
import { hsToken } from '../helpers/tokens.js';
import type { Upstream, UpstreamOptions } from '../helpers/upstream.js';
import { openSlowUpload } from '../helpers/slow-client.js';
import type { SlowReply, SlowUpload } from '../helpers/slow-client.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function upstream(opts?: UpstreamOptions): Promise<Upstream> {
  const up = await startUpstream(opts);
  cleanups.push(() => up.close());
  return up;
}

interface Gateway {
  url: string;
  fwd: Forwarder;
  results: ForwardResult[];
  /** Resolves with the n-th result (1-based) once that exchange is over. */
  result(n: number): Promise<ForwardResult>;
  /** Resolves once the gateway has received its n-th request (1-based) and called forward(). */
  arrived(n: number): Promise<void>;
  upstreamErrors: ErrorCode[];
}

/** createForwarder behind a plain node:http server, the way the app calls it. */
async function gateway(upstreamUrl: string, cfg: Partial<UpstreamConfig>, bodyIdleTimeoutMs: number): Promise<Gateway> {
  const config: UpstreamConfig = { url: upstreamUrl, timeout_ms: 5_000, connect_timeout_ms: 1_000, max_sockets: 1, ...cfg };
  const upstreamErrors: ErrorCode[] = [];
  const fwd = createForwarder(
    { default: config },
    {
      render: (e) => renderError(e, { realm: 'test' }),
      bodyIdleTimeoutMs,
      onUpstreamError: (_err, code) => upstreamErrors.push(code),
    },
  );
  const results: ForwardResult[] = [];
  const waiters: Array<{ n: number; resolve: (r: ForwardResult) => void }> = [];
  let seq = 0;
  const arrivals: Array<{ n: number; resolve: () => void }> = [];
  const server: Server = createServer((req: IncomingMessage, res) => {
    const id = `req-${++seq}`;
    queueMicrotask(() => {
      for (const a of arrivals.filter((w) => w.n <= seq)) {
        arrivals.splice(arrivals.indexOf(a), 1);
        a.resolve();
      }
    });
    void fwd
      .forward(req, res, {
        upstream: 'default',
        pathAndQuery: req.url ?? '/',
        headers: buildUpstreamHeaders(req.headers, {
          identityPrefix: 'X-Auth-',
          forwardToken: false,
          requestId: id,
          clientIp: req.socket.remoteAddress ?? '',
          proto: 'http',
        }),
        responseHeaders: { 'X-Request-Id': id },
      })
      .then((r) => {
        results.push(r);
        for (const w of [...waiters]) {
          if (results.length >= w.n) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(results[w.n - 1]!);
          }
        }
      });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await fwd.close();
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    fwd,
    results,
    upstreamErrors,
    result: (n) => (results[n - 1] ? Promise.resolve(results[n - 1]!) : new Promise((resolve) => waiters.push({ n, resolve }))),
    arrived: (n) => (seq >= n ? Promise.resolve() : new Promise((resolve) => arrivals.push({ n, resolve }))),
  };
}

function upload(url: string, path: string, contentLength: number): SlowUpload {
  const u = openSlowUpload(url, { path, contentLength });
  cleanups.push(() => u.destroy());
  return u;
}

function get(url: string, path: string, headers: Record<string, string> = {}): Promise<SlowReply> {
  const u = openSlowUpload(url, { method: 'GET', path, contentLength: 0, headers });
  cleanups.push(() => u.destroy());
  u.end();
  return u.response;
}

const json = (r: SlowReply): unknown => JSON.parse(r.body);
const envelope = (status: number, reason: string, type: string) => ({ error: { code: status, message: expect.any(String), type, reason } });
const paths = (up: Upstream): string[] => up.requests.map((r) => r.url);

/** The bytes `trickle` sends, in order: a, b, c, ... */
const trickled = (from: number, count: number): string => Array.from({ length: count }, (_, i) => String.fromCharCode(0x61 + ((from + i) % 26))).join('');

describe('a slow upload holding every upstream connection', () => {
  it('reproduces issue 10: four trickling uploads on max_sockets 4 cannot keep another user waiting past timeout_ms', async () => {
    const up = await upstream();
    const gw = await gateway(up.url, { max_sockets: 4, timeout_ms: 300 }, 5_000);
    const uploads = [1, 2, 3, 4].map((i) => upload(gw.url, `/upload/${i}`, 1_000));
    for (const u of uploads) u.send('a');
    const held = await Promise.all([1, 2, 3, 4].map((n) => up.waitForRequest(n)));
    const trickling = uploads.map((u) => u.trickle(1_000, 50));

    const reply = await get(gw.url, '/v2/other-user');
    expect(reply.status).toBe(504);
    expect(json(reply)).toEqual(envelope(504, 'upstream_timeout', 'Gateway Timeout'));
    // Answered while every connection was still held: it did not wait for one to come free.
    expect(held.map((r) => r.bodyComplete)).toEqual([false, false, false, false]);
    expect(uploads.every((u) => !u.answered)).toBe(true);
    expect(gw.upstreamErrors).toEqual(['upstream_timeout']);

    for (const u of uploads) u.destroy();
    await Promise.all(trickling);
    await Promise.all(held.map((r) => r.done));
    expect(paths(up).sort()).toEqual(['/upload/1', '/upload/2', '/upload/3', '/upload/4']);
  });

  it('(a) answers 504 to a request still waiting for a connection, and the upstream never receives it, even after the connection is free', async () => {
    const up = await upstream();
    const gw = await gateway(up.url, { max_sockets: 1, timeout_ms: 250 }, 5_000);
    const slow = upload(gw.url, '/upload', 6);
    slow.send('a');
    const first = await up.waitForRequest(1);

    const reply = await get(gw.url, '/v2/queued');
    expect(reply.status).toBe(504);
    expect(reply.headers['x-request-id']).toBe('req-2');
    expect(json(reply)).toEqual(envelope(504, 'upstream_timeout', 'Gateway Timeout'));
    expect(first.bodyComplete).toBe(false);
    const queued = await gw.result(1); // the 504 is the first exchange to finish
    expect(queued).toMatchObject({ status: 504, error: { code: 'upstream_timeout' } });

    // The first upload now finishes and frees the one connection.
    slow.end('bcdef');
    const done = await slow.response;
    expect(done.status).toBe(200);
    expect(first.body.toString()).toBe('abcdef');

    // A later request gets the connection; the timed-out one was never sent, before or after.
    const later = await get(gw.url, '/v2/later');
    expect(later.status).toBe(200);
    await sleep(100);
    expect(paths(up)).toEqual(['/upload', '/v2/later']);
  });

  it('takes a waiting request out when its client leaves: it never reaches the upstream', async () => {
    const up = await upstream();
    const gw = await gateway(up.url, { max_sockets: 1, timeout_ms: 5_000 }, 5_000);
    const slow = upload(gw.url, '/upload', 2);
    slow.send('a');
    await up.waitForRequest(1);

    const leaver = openSlowUpload(gw.url, { method: 'GET', path: '/v2/leaver', contentLength: 0 });
    leaver.end();
    await gw.arrived(2); // the gateway has it waiting for the connection
    leaver.destroy();
    expect(await gw.result(1)).toMatchObject({ status: 499, aborted: true });

    slow.end('b');
    expect((await slow.response).status).toBe(200);
    expect((await get(gw.url, '/v2/after')).status).toBe(200);
    expect(paths(up)).toEqual(['/upload', '/v2/after']);
    expect(gw.upstreamErrors).toEqual([]);
  });

  it('takes a waiting upload out when its client leaves mid-body, and keeps serving', async () => {
    const up = await upstream();
    const gw = await gateway(up.url, { max_sockets: 1, timeout_ms: 5_000 }, 5_000);
    const slow = upload(gw.url, '/upload', 2);
    slow.send('a');
    await up.waitForRequest(1);

    const leaver = upload(gw.url, '/v2/leaver', 1_000);
    leaver.send('partial body');
    await gw.arrived(2); // waiting for the connection, its body half sent
    leaver.destroy();
    expect(await gw.result(1)).toMatchObject({ status: 499, aborted: true });

    slow.end('b');
    expect((await slow.response).status).toBe(200);
    expect((await get(gw.url, '/v2/after')).status).toBe(200);
    expect(paths(up)).toEqual(['/upload', '/v2/after']);
  });

  it('answers 504 at timeout_ms while the connection is still being set up, and frees it when undici gives up', async () => {
    // A TCP listener that never answers a TLS handshake: the request is handed to undici but
    // never written, for longer than timeout_ms (connect_timeout_ms is longer still).
    const received: Buffer[] = [];
    const sockets = new Set<Socket>();
    let accepted = 0;
    let firstClosed!: () => void;
    const gaveUp = new Promise<void>((resolve) => (firstClosed = resolve));
    const blackhole = createNetServer((s) => {
      accepted++;
      sockets.add(s);
      s.on('close', () => firstClosed());
      s.on('data', (c: Buffer) => received.push(c));
      s.on('error', () => {});
    });
    await new Promise<void>((resolve) => blackhole.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => blackhole.close(() => resolve()));
    });
    const url = `https://127.0.0.1:${(blackhole.address() as AddressInfo).port}`;
    const gw = await gateway(url, { max_sockets: 1, timeout_ms: 200, connect_timeout_ms: 700 }, 5_000);

    const first = await get(gw.url, '/v2/one');
    expect(first.status).toBe(504);
    expect(json(first)).toEqual(envelope(504, 'upstream_timeout', 'Gateway Timeout'));
    // undici gives up on the handshake later (it closes the socket); the slot comes back.
    await gaveUp;
    const second = await get(gw.url, '/v2/two');
    expect(second.status).toBe(504);
    expect(gw.results.map((r) => r.status)).toEqual([504, 504]);
    expect(accepted).toBe(2); // the second one got the slot back and tried its own connection
    expect(Buffer.concat(received).includes('/v2/')).toBe(false); // no request line was ever sent
  });

  it('lets a request waiting for a connection finish when the forwarder is closed meanwhile', async () => {
    const up = await upstream();
    const gw = await gateway(up.url, { max_sockets: 1, timeout_ms: 5_000 }, 5_000);
    const slow = upload(gw.url, '/upload', 2);
    slow.send('a');
    await up.waitForRequest(1);
    const waiting = get(gw.url, '/v2/waiting');
    await gw.arrived(2);
    const closed = gw.fwd.close();
    slow.end('b');
    expect((await slow.response).status).toBe(200);
    expect((await waiting).status).toBe(200);
    await closed;
    expect(paths(up)).toEqual(['/upload', '/v2/waiting']);
  });
});

describe('a pause inside a request body', () => {
  it('(b) answers 408 with the envelope after body_idle_timeout_ms, aborts the upstream request and frees its connection', async () => {
    const up = await upstream({ routes: { '/upload': { kind: 'hang' } } });
    const gw = await gateway(up.url, { max_sockets: 1, timeout_ms: 10_000 }, 300);
    const slow = upload(gw.url, '/upload', 1_000);
    slow.send('abc');
    const seen = await up.waitForRequest(1);

    const reply = await slow.response; // the client sends nothing more
    expect(reply.status).toBe(408);
    expect(reply.headers['content-type']).toBe('application/json');
    expect(reply.headers['x-request-id']).toBe('req-1');
    expect(reply.headers['connection']).toBe('close');
    expect(json(reply)).toEqual(envelope(408, 'request_timeout', 'Request Timeout'));
    await seen.done;
    expect(seen.clientClosed).toBe(true);
    expect(seen.bodyComplete).toBe(false);
    expect(seen.body.toString()).toBe('abc');
    const r = await gw.result(1);
    expect(r).toMatchObject({ status: 408, error: { code: 'request_timeout' } });
    expect(r.aborted).toBeUndefined();
    expect(gw.upstreamErrors).toEqual([]); // the client was slow, not the upstream

    // The only connection is free again.
    const next = await get(gw.url, '/v2/next');
    expect(next.status).toBe(200);
    expect(paths(up)).toEqual(['/upload', '/v2/next']);
  });

  it('(b) cuts the client connection when the body pauses after the upstream response started', async () => {
    const up = await upstream({
      routes: {
        '/early': {
          kind: 'handler',
          fn: (_req, res) => {
            res.writeHead(200, { 'content-type': 'text/plain' });
            res.write('started;');
          },
        },
      },
    });
    const gw = await gateway(up.url, { max_sockets: 1, timeout_ms: 10_000 }, 300);
    const slow = upload(gw.url, '/early', 1_000);
    slow.send('abc');
    const seen = await up.waitForRequest(1);
    const reply = await slow.response;
    expect(reply.status).toBe(200);
    expect(reply.body).toBe('started;');
    expect(reply.complete).toBe(false);
    await seen.done;
    expect(seen.clientClosed).toBe(true);
    expect(await gw.result(1)).toMatchObject({ status: 200, error: { code: 'request_timeout' } });
    expect((await get(gw.url, '/v2/next')).status).toBe(200);
  });

  it('(c) does not cut a body that keeps trickling: the idle timeout is per pause, and upload time is not the upstream timeout', async () => {
    const up = await upstream();
    // Every pause (60 ms) is well under the idle timeout; the whole upload (~1.8 s) is well over
    // it and over timeout_ms too.
    const gw = await gateway(up.url, { max_sockets: 1, timeout_ms: 400 }, 1_000);
    const slow = upload(gw.url, '/upload', 30);
    const sent = await slow.trickle(30, 60);
    expect(sent).toBe(30);
    const reply = await slow.response;
    expect(reply.status).toBe(200);
    expect(up.requests[0]!.body.toString()).toBe(trickled(0, 30));
    expect(up.requests[0]!.bodyComplete).toBe(true);
    expect(gw.upstreamErrors).toEqual([]);
  });

  it('(c) delivers a body split at arbitrary points with arbitrary short pauses intact', async () => {
    const up = await upstream();
    const gw = await gateway(up.url, { max_sockets: 2, timeout_ms: 2_000 }, 1_000);
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 4_096 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 40 })), { maxLength: 6 }),
        async (bytes, cuts) => {
          const body = Buffer.from(bytes);
          const at = [...new Set(cuts.map(([c]) => c % body.length))].sort((a, b) => a - b);
          const slow = upload(gw.url, `/p/${++n}`, body.length);
          let from = 0;
          for (const [i, cut] of at.entries()) {
            slow.send(body.subarray(from, cut));
            from = cut;
            await sleep(cuts[i]![1]);
          }
          slow.end(body.subarray(from));
          const reply = await slow.response;
          const seen = up.requests.find((r) => r.url === `/p/${n}`)!;
          return reply.status === 200 && seen.bodyComplete && seen.body.equals(body);
        },
      ),
      { numRuns: 20 },
    );
    expect(gw.upstreamErrors).toEqual([]);
  });
});

describe('the upstream clock around a request body', () => {
  it('runs again once the body is complete: an upload longer than timeout_ms still gets its 504 when the upstream never answers', async () => {
    const up = await upstream({ routes: { '/upload': { kind: 'hang' } } });
    const gw = await gateway(up.url, { max_sockets: 1, timeout_ms: 300 }, 2_000);
    const slow = upload(gw.url, '/upload', 12);
    expect(await slow.trickle(12, 60)).toBe(12); // ~700 ms of upload, not cut
    const reply = await slow.response;
    expect(reply.status).toBe(504);
    expect(json(reply)).toEqual(envelope(504, 'upstream_timeout', 'Gateway Timeout'));
    expect(up.requests[0]!.bodyComplete).toBe(true);
    expect(up.requests[0]!.body.toString()).toBe(trickled(0, 12));
    await up.requests[0]!.done;
    expect(up.requests[0]!.clientClosed).toBe(true); // the upstream request was aborted
  });

  it('answers 504 when the upstream stops reading the body for timeout_ms', async () => {
    const up = await upstream({ routes: { '/sink': { kind: 'handler', fn: (req) => req.pause() } } });
    const gw = await gateway(up.url, { max_sockets: 1, timeout_ms: 300 }, 60_000);
    const TOTAL = 32 * 1024 * 1024;
    const reply = await new Promise<{ status: number; body: string }>((resolve) => {
      const req = request(`${gw.url}/sink`, { method: 'PUT', headers: { 'content-length': TOTAL }, agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', () => {}); // the gateway closes while the upload is still blocked
      req.end(randomBytes(TOTAL));
    });
    expect(reply.status).toBe(504);
    expect(JSON.parse(reply.body)).toEqual(envelope(504, 'upstream_timeout', 'Gateway Timeout'));
    expect(gw.upstreamErrors).toEqual(['upstream_timeout']);
  });
});

describe('our own backpressure is not the client being idle', () => {
  const MiB = 1024 * 1024;

  it('does not count the wait for a connection as the client being idle', async () => {
    // The only connection is busy for longer than the idle timeout; the waiting POST's body is
    // complete and waits on the gateway, not the other way round.
    const up = await upstream({ routes: { '/busy': { kind: 'slow', delayMs: 800, body: 'done' } } });
    const gw = await gateway(up.url, { max_sockets: 1, timeout_ms: 5_000 }, 200);
    const busy = get(gw.url, '/busy');
    await up.waitForRequest(1);
    const waiting = upload(gw.url, '/upload', 5);
    waiting.end('hello');
    expect((await busy).status).toBe(200);
    expect((await waiting.response).status).toBe(200);
    expect(up.requests[1]!.body.toString()).toBe('hello');
  });

  it('(d) a paused download holding the upload back is not an idle upload', async () => {
    // The upstream streams the body straight back: while the client does not read the response,
    // the upstream stops reading the body, undici stops reading ours, and the client's upload
    // waits on the gateway — for much longer than the idle timeout.
    const up = await upstream({
      routes: {
        '/echo': {
          kind: 'handler',
          fn: (req, res) => {
            res.writeHead(200, { 'content-type': 'application/octet-stream' });
            req.pipe(res);
          },
        },
      },
    });
    const gw = await gateway(up.url, { max_sockets: 1, timeout_ms: 5_000 }, 300);
    const TOTAL = 32 * MiB;
    const payload = randomBytes(TOTAL);
    const outcome = await new Promise<{ status: number; received: Buffer; upstreamHadWhilePaused: number; complete: boolean }>((resolve, reject) => {
      const req = request(`${gw.url}/echo`, { method: 'POST', headers: { 'content-length': TOTAL }, agent: false }, (res) => {
        res.pause();
        setTimeout(() => {
          const upstreamHadWhilePaused = up.requests[0]?.body.length ?? 0;
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, received: Buffer.concat(chunks), upstreamHadWhilePaused, complete: res.complete }));
          res.resume();
        }, 1_200); // four idle timeouts
      });
      req.on('error', reject);
      req.end(payload);
    });
    expect(outcome.status).toBe(200);
    // The chain really was held back: most of the body had not reached the upstream yet.
    expect(outcome.upstreamHadWhilePaused).toBeLessThan(TOTAL / 2);
    expect(outcome.complete).toBe(true);
    expect(outcome.received.length).toBe(TOTAL);
    expect(createHash('sha256').update(outcome.received).digest('hex')).toBe(createHash('sha256').update(payload).digest('hex'));
    expect(await gw.result(1)).toEqual({ status: 200, upstreamMs: expect.any(Number) });
  });

  it('frees the connection when a client that stopped reading its download hangs up', async () => {
    const chunk = randomBytes(64 * 1024);
    const up = await upstream({
      routes: {
        '/big': {
          kind: 'handler',
          fn: (_req, res) => {
            res.writeHead(200, { 'content-type': 'application/octet-stream' });
            const pump = (): void => {
              while (!res.destroyed) if (!res.write(chunk)) return void res.once('drain', pump);
            };
            pump();
          },
        },
      },
    });
    const gw = await gateway(up.url, { max_sockets: 1, timeout_ms: 5_000 }, 5_000);
    await new Promise<void>((resolve) => {
      const req = request(`${gw.url}/big`, { agent: false }, (res) => {
        res.once('data', () => {
          res.pause(); // the gateway pauses the upstream while our socket is full...
          setTimeout(() => {
            req.destroy(); // ...and then we are gone
            resolve();
          }, 300);
        });
      });
      req.on('error', () => {});
      req.end();
    });
    await up.requests[0]!.done;
    expect(up.requests[0]!.clientClosed).toBe(true);
    expect(await gw.result(1)).toMatchObject({ status: 200, aborted: true });
    expect((await get(gw.url, '/v2/next')).status).toBe(200);
  });

  it('(d) an upstream that stops reading the body is not the client being idle', async () => {
    let received = 0;
    const up = await upstream({
      routes: {
        '/sink': {
          kind: 'handler',
          fn: (req, res) => {
            req.pause();
            // Reads nothing for four idle timeouts, then everything.
            setTimeout(() => {
              req.on('data', (c: Buffer) => (received += c.length));
              req.on('end', () => res.end(JSON.stringify({ received })));
              req.resume();
            }, 1_200);
          },
        },
      },
    });
    const gw = await gateway(up.url, { max_sockets: 1, timeout_ms: 5_000 }, 300);
    const TOTAL = 32 * MiB;
    const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(`${gw.url}/sink`, { method: 'PUT', headers: { 'content-length': TOTAL }, agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end(randomBytes(TOTAL));
    });
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body)).toEqual({ received: TOTAL });
    expect(gw.upstreamErrors).toEqual([]);
  });
});

describe('through the whole gateway', () => {
  const mint = (sub: string, scope: string) => {
    const iat = Math.floor(Date.now() / 1000);
    return hsToken(TEST_SECRET, { iss: 'scopegate-test', aud: 'api', sub, iat, exp: iat + 3_600, client_type: 'user', scope, jti: `${sub}-${iat}` });
  };

  it('answers another user 504 within timeout_ms while four trickling uploads hold max_sockets 4, and never sends that request later', async () => {
    const up = await upstream();
    const yaml = baseConfig({ upstream: up.url }).replace(
      /^ {2}default: \{ url: .*\}$/m,
      `  default: { url: ${up.url}, timeout_ms: 300, connect_timeout_ms: 500, max_sockets: 4 }`,
    );
    const gw = await startTestGateway(yaml, { admin: false });
    cleanups.push(() => gw.close());
    const uploader = await mint('mallory', 'send_notification');
    const uploads = [1, 2, 3, 4].map((i) => {
      const u = openSlowUpload(gw.url, {
        path: `/v2/room/${i}/notification`,
        contentLength: 1_000,
        headers: { authorization: `Bearer ${uploader}`, 'content-type': 'application/json' },
      });
      cleanups.push(() => u.destroy());
      u.send('{');
      return u;
    });
    const held = await Promise.all([1, 2, 3, 4].map((n) => up.waitForRequest(n)));
    const trickling = uploads.map((u) => u.trickle(1_000, 50));

    const reply = await get(gw.url, '/v2/room/7', { authorization: `Bearer ${await mint('alice', 'view_room')}` });
    expect(reply.status).toBe(504);
    expect(json(reply)).toEqual(envelope(504, 'upstream_timeout', 'Gateway Timeout'));
    expect(held.every((r) => !r.bodyComplete)).toBe(true);

    for (const u of uploads) u.destroy();
    await Promise.all(trickling);
    await Promise.all(held.map((r) => r.done));
    const after = await get(gw.url, '/v2/room/8', { authorization: `Bearer ${await mint('bob', 'view_room')}` });
    expect(after.status).toBe(200);
    expect(paths(up).sort()).toEqual(['/v2/room/1/notification', '/v2/room/2/notification', '/v2/room/3/notification', '/v2/room/4/notification', '/v2/room/8']);
  });
});
