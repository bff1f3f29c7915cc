/**
 * A real upstream for integration tests: a node:http server on 127.0.0.1:0 that records every
 * request exactly as it arrived and answers as each path is told to. By default it echoes:
 * 200 `{"ok":true,"method":..,"url":..,"headers":{..}}` once the request body has been read.
 * WebSocket upgrades are accepted (RFC 6455 handshake written here, no `ws` package) and every
 * frame is echoed back with the same opcode.
 *
 * @example
 *   const up = await startUpstream({ routes: { '/slow': { kind: 'slow', delayMs: 200 } } });
 *   up.route('/hang', { kind: 'hang' });
 *   await fetch(`${up.url}/v2/room?x=1`);
 *   expect(up.requests[0]?.url).toBe('/v2/room?x=1');
 *   await up.close();
 *
 *   const refused = await closedPortUrl(); // nothing listens there
 */
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/** One request as the upstream received it. `body` grows while the body streams in. */
export interface RecordedRequest {
  method: string;
  /** Request target exactly as received (path and raw query). */
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  /** Bytes received so far (a fresh copy on each read); complete once `bodyComplete`. */
  readonly body: Buffer;
  bodyComplete: boolean;
  /** true when the connection closed before the response finished (the proxy gave up on us). */
  clientClosed: boolean;
  /** true for a WebSocket upgrade request. */
  upgrade: boolean;
  /** Resolves when the exchange is over: response finished or connection closed. */
  done: Promise<void>;
}

type Chunk = string | Buffer;

/** How the upstream answers a path. */
export type Behaviour =
  /** 200 JSON echo after reading the whole body (the default). */
  | { kind: 'echo' }
  /** A fixed answer after reading the whole body. */
  | { kind: 'respond'; status?: number; headers?: OutgoingHttpHeaders; body?: Chunk }
  /** Waits `delayMs` before sending headers, then answers like `respond`. */
  | { kind: 'slow'; delayMs: number; status?: number; headers?: OutgoingHttpHeaders; body?: Chunk }
  /** Sends headers at once, then each chunk `intervalMs` apart; `thenReset` destroys the socket instead of ending. */
  | { kind: 'stream'; chunks: Chunk[]; intervalMs: number; status?: number; headers?: OutgoingHttpHeaders; thenReset?: boolean }
  /** Destroys the socket as soon as the request head arrives (no response at all). */
  | { kind: 'reset' }
  /** Reads the request and never answers. */
  | { kind: 'hang' }
  /** Full control. */
  | { kind: 'handler'; fn: (req: IncomingMessage, res: ServerResponse, record: RecordedRequest) => void };

export interface UpstreamOptions {
  /** Behaviour per exact pathname (query ignored). */
  routes?: Record<string, Behaviour>;
  /** Behaviour of every other path; default echo. */
  fallback?: Behaviour;
}

export interface Upstream {
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** Every request received, in arrival order. */
  requests: RecordedRequest[];
  /** Sets the behaviour of a pathname from now on. */
  route(pathname: string, behaviour: Behaviour): void;
  /** Resolves with the `n`-th request (1-based) once it has arrived. */
  waitForRequest(n?: number): Promise<RecordedRequest>;
  /** Closes the listener and every connection, upgraded ones included. */
  close(): Promise<void>;
}

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Starts the upstream on 127.0.0.1:0. */
export async function startUpstream(opts: UpstreamOptions = {}): Promise<Upstream> {
  const routes = new Map<string, Behaviour>(Object.entries(opts.routes ?? {}));
  const fallback: Behaviour = opts.fallback ?? { kind: 'echo' };
  const requests: RecordedRequest[] = [];
  const waiters: Array<{ n: number; resolve: (r: RecordedRequest) => void }> = [];
  const sockets = new Set<Duplex>();
  const timers = new Set<NodeJS.Timeout>();

  const later = (ms: number, fn: () => void): void => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  const behaviourFor = (url: string): Behaviour => routes.get(url.split('?')[0] ?? '') ?? fallback;

  const record = (req: IncomingMessage, upgrade: boolean): { rec: RecordedRequest & { chunks: Buffer[] }; finish: () => void } => {
    let finish!: () => void;
    const done = new Promise<void>((resolve) => (finish = resolve));
    const chunks: Buffer[] = [];
    const rec: RecordedRequest & { chunks: Buffer[] } = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      chunks,
      get body() {
        return Buffer.concat(chunks);
      },
      bodyComplete: false,
      clientClosed: false,
      upgrade,
      done,
    };
    requests.push(rec);
    for (const w of [...waiters]) {
      if (requests.length >= w.n) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(requests[w.n - 1]!);
      }
    }
    return { rec, finish };
  };

  const server: Server = createServer((req, res) => {
    const { rec, finish } = record(req, false);
    req.on('data', (c: Buffer) => rec.chunks.push(c));
    const bodyRead = new Promise<void>((resolve) => {
      req.on('end', () => {
        rec.bodyComplete = true;
        resolve();
      });
    });
    req.on('error', () => {});
    res.on('error', () => {});
    res.on('close', () => {
      if (!res.writableFinished) rec.clientClosed = true;
      finish();
    });
    answer(behaviourFor(rec.url), req, res, rec, bodyRead);
  });

  const answer = (b: Behaviour, req: IncomingMessage, res: ServerResponse, rec: RecordedRequest, bodyRead: Promise<void>): void => {
    switch (b.kind) {
      case 'echo':
        void bodyRead.then(() => {
          const body = JSON.stringify({ ok: true, method: rec.method, url: rec.url, headers: rec.headers });
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
          res.end(body);
        });
        return;
      case 'respond':
        void bodyRead.then(() => {
          res.writeHead(b.status ?? 200, b.headers ?? {});
          res.end(b.body ?? '');
        });
        return;
      case 'slow':
        later(b.delayMs, () => {
          if (res.destroyed) return;
          res.writeHead(b.status ?? 200, b.headers ?? {});
          res.end(b.body ?? '');
        });
        return;
      case 'stream': {
        res.writeHead(b.status ?? 200, b.headers ?? { 'content-type': 'text/plain' });
        res.flushHeaders();
        const queue = [...b.chunks];
        const next = (): void => {
          if (res.destroyed) return;
          const c = queue.shift();
          if (c === undefined) {
            if (b.thenReset) req.socket.destroy();
            else res.end();
            return;
          }
          res.write(c);
          later(b.intervalMs, next);
        };
        next();
        return;
      }
      case 'reset':
        req.socket.destroy();
        return;
      case 'hang':
        req.resume();
        return;
      case 'handler':
        b.fn(req, res, rec);
        return;
    }
  };

  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const { rec, finish } = record(req, true);
    sockets.add(socket);
    socket.on('error', () => {});
    // http.Server sockets allow half-open connections: answer the peer's FIN with ours.
    socket.on('end', () => socket.end());
    socket.on('close', () => {
      sockets.delete(socket);
      finish();
    });
    const b = behaviourFor(rec.url);
    if (b.kind === 'reset' || b.kind === 'hang') {
      if (b.kind === 'reset') socket.destroy();
      return;
    }
    if (b.kind === 'respond' || b.kind === 'slow') {
      const body = b.body ?? '';
      const lines = [`HTTP/1.1 ${b.status ?? 400} Refused`, `content-length: ${Buffer.byteLength(body)}`, 'connection: close'];
      for (const [k, v] of Object.entries(b.headers ?? {})) lines.push(`${k}: ${String(v)}`);
      socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`);
      return;
    }
    const key = req.headers['sec-websocket-key'];
    if (typeof key !== 'string' || (req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    const accept = createHash('sha1').update(key + WS_GUID).digest('base64');
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    echoFrames(socket, head);
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    route(pathname, behaviour) {
      routes.set(pathname, behaviour);
    },
    waitForRequest(n = 1) {
      const have = requests[n - 1];
      if (have) return Promise.resolve(have);
      return new Promise((resolve) => waiters.push({ n, resolve }));
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Echoes RFC 6455 frames (client frames are masked, ours are not); answers ping and close. */
function echoFrames(socket: Duplex, head: Buffer): void {
  let buf = head.length ? Buffer.from(head) : Buffer.alloc(0);
  const drain = (): void => {
    for (;;) {
      if (buf.length < 2) return;
      const b0 = buf[0]!;
      const b1 = buf[1]!;
      const masked = (b1 & 0x80) !== 0;
      let len = b1 & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        off = 10;
      }
      const maskOff = off;
      if (masked) off += 4;
      if (buf.length < off + len) return;
      const payload = Buffer.from(buf.subarray(off, off + len));
      if (masked) for (let i = 0; i < payload.length; i++) payload[i]! ^= buf[maskOff + (i % 4)]!;
      buf = buf.subarray(off + len);
      const opcode = b0 & 0x0f;
      if (opcode === 0x8) {
        socket.end(frame(0x88, payload));
        return;
      }
      if (opcode === 0x9) socket.write(frame(0x8a, payload));
      else if (opcode !== 0xa) socket.write(frame(b0, payload));
    }
  };
  socket.on('data', (c: Buffer) => {
    buf = Buffer.concat([buf, c]);
    drain();
  });
  drain();
}

function frame(firstByte: number, payload: Buffer): Buffer {
  let header: Buffer;
  if (payload.length < 126) {
    header = Buffer.from([firstByte, payload.length]);
  } else if (payload.length < 65536) {
    header = Buffer.alloc(4);
    header[0] = firstByte;
    header[1] = 126;
    header.writeUInt16BE(payload.length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = firstByte;
    header[1] = 127;
    header.writeBigUInt64BE(BigInt(payload.length), 2);
  }
  return Buffer.concat([header, payload]);
}

/** A URL on 127.0.0.1 where nothing listens (bound once, then closed): connections are refused. */
export async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}
