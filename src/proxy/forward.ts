/**
 * Step 8 of the pipeline (SPEC.md §1.8, §5): forwards an authorised request to its upstream.
 * HTTP goes through undici — one keep-alive `Pool` per configured upstream — streaming the
 * request body from the client and the response body straight into the Node `ServerResponse`
 * with backpressure; nothing is buffered. WebSocket upgrades go to `websocket.ts` (http-proxy).
 *
 * Failures:
 * - refused / reset / DNS / connect timeout before response headers → 502 upstream_unavailable,
 *   rendered with `deps.render`;
 * - no response headers within `timeout_ms` → 504 upstream_timeout;
 * - a failure after headers were sent (reset mid-body, `timeout_ms` without a body chunk) → the
 *   client connection is destroyed (the status cannot change any more) and `error` is reported;
 * - the client hanging up → the upstream request is aborted, `{ aborted: true }`.
 * Nothing here throws for a network failure or leaves an 'error' event unhandled.
 *
 * `Expect: 100-continue` is not forwarded: undici refuses the header, and Node has already
 * answered the client's `100 Continue` when it emitted the request, so the body flows anyway.
 * 1xx responses from the upstream (103 Early Hints) are not relayed.
 *
 * @example
 *   const fwd = createForwarder(config.upstreams, { render: (e) => renderError(e, { realm: 'api' }) });
 *   server.on('request', async (req, res) => {
 *     const r = await fwd.forward(req, res, {
 *       upstream: 'default', pathAndQuery: '/v2/room?expand=items',
 *       headers: buildUpstreamHeaders(req.headers, {...}), responseHeaders: { 'x-request-id': id },
 *     });
 *     log.info({ status: r.status, upstreamMs: r.upstreamMs, reason: r.error?.code });
 *   });
 *   server.on('upgrade', (req, socket, head) => fwd.upgrade(req, socket, head, opts));
 *   await fwd.close();
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import type { UpstreamConfig } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import type { ErrorCode, RenderedError } from '../errors.js';
import { systemClock } from '../types.js';
import type { Clock } from '../types.js';
import { responseHeaderList } from './upstream-headers.js';
import { createWsProxy } from './websocket.js';

export interface ForwardOptions {
  /** Upstream name (a key of `upstreams`). */
  upstream: string;
  /** Path and query to request, exactly as they go on the wire (`auth_token` already removed). */
  pathAndQuery: string;
  /** Request headers for the upstream, from `buildUpstreamHeaders` (lower-case names). */
  headers: Record<string, string | string[]>;
  /** The gateway's own response headers (X-Request-Id, rate-limit headers); they override the upstream's. */
  responseHeaders: Record<string, string>;
}

export interface ForwardResult {
  /** Status as sent to the client; 499 when the client left before any response was sent. */
  status: number;
  /** Milliseconds from dispatch to the upstream's response headers (0 when there were none). */
  upstreamMs: number;
  /** Set when the exchange failed on the upstream side (before or after headers were sent). */
  error?: GatewayError;
  /** The client hung up before the response finished; the upstream request was aborted. */
  aborted?: boolean;
}

export interface Forwarder {
  /** Resolves when the response is finished (or aborted). Never rejects for network failures. */
  forward(req: IncomingMessage, res: ServerResponse, opts: ForwardOptions): Promise<ForwardResult>;
  /** Proxies a WebSocket upgrade (the request already passed the pipeline). */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, opts: ForwardOptions): void;
  /** Closes every pool, letting in-flight requests finish. */
  close(): Promise<void>;
}

export interface ForwarderDeps {
  /** Renders the gateway's own error response (renderError bound to the realm/docs URL). */
  render: (err: GatewayError) => RenderedError;
  clock?: Clock;
  /** Called once per upstream failure, with the reason code it maps to (for logs and metrics). */
  onUpstreamError?: (err: Error, code: ErrorCode) => void;
}

/** Status reported when the client left before anything was sent (nginx's convention). */
export const CLIENT_CLOSED_REQUEST = 499;

/** Idle keep-alive sockets are closed after this long, ms; below Node's 5 s server default so we never reuse a socket the upstream is closing. */
const KEEP_ALIVE_TIMEOUT_MS = 4_000;

interface UpstreamEntry {
  config: UpstreamConfig;
  pool: Pool;
  /** Path of the upstream URL without its trailing slash ('' for `http://host:port`). */
  prefix: string;
}

const HEADERS_TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

function reasonFor(err: Error): ErrorCode {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && HEADERS_TIMEOUT_CODES.has(code) ? 'upstream_timeout' : 'upstream_unavailable';
}

/** A short, token-free description of a network error: its code, never its message. */
function describe(err: Error): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : err.name;
}

/** HTTP/1.1 requests carry a body only when they say so (RFC 9112 §6.3). */
function hasRequestBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const len = req.headers['content-length'];
  return len !== undefined && len !== '0';
}

function whenClosed(res: ServerResponse): Promise<void> {
  if (res.writableFinished || res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    res.once('finish', resolve);
    res.once('close', resolve);
  });
}

/** The abort reason given to undici when the client hung up; never shown to anyone. */
const CLIENT_GONE = Object.assign(new Error('client closed the connection'), { code: 'CLIENT_GONE' });

/**
 * One proxied exchange as an undici dispatch handler: response headers and chunks are written
 * straight into the Node response, and the upstream is paused while the client's socket is full.
 * `settle` runs exactly once, with the upstream error if the exchange failed.
 */
class Relay implements Dispatcher.DispatchHandler {
  controller: Dispatcher.DispatchController | null = null;
  clientGone = false;
  upstreamMs = 0;
  private settled = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly ownHeaders: Readonly<Record<string, string>>,
    private readonly clock: Clock,
    private readonly start: number,
    private readonly settle: (relay: Relay, err: Error | undefined) => void,
  ) {}

  /** The client's response closed: unless it was finished (or failed by us), the client left. */
  readonly onClientClose = (): void => {
    const res = this.res;
    if (this.settled || res.writableFinished || res.errored) return;
    this.clientGone = true;
    this.controller?.abort(CLIENT_GONE);
  };

  private readonly onDrain = (): void => this.controller?.resume();

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.clientGone) controller.abort(CLIENT_GONE);
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200) return; // 103 Early Hints and the like are not relayed
    this.upstreamMs = this.clock() - this.start;
    this.res.writeHead(statusCode, responseHeaderList(headers, this.ownHeaders));
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', this.onDrain);
    }
  }

  onResponseEnd(): void {
    this.res.end();
    this.finish(undefined);
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    this.finish(err);
  }

  private finish(err: Error | undefined): void {
    if (this.settled) return;
    this.settled = true;
    this.res.off('close', this.onClientClose);
    this.res.off('drain', this.onDrain);
    this.settle(this, err);
  }
}

/**
 * Builds one Pool per upstream. Options map from config as: `max_sockets` → `connections`,
 * `connect_timeout_ms` → `connectTimeout`, `timeout_ms` → `headersTimeout` and `bodyTimeout`
 * (the longest silence between two body chunks).
 */
export function createForwarder(upstreams: Record<string, UpstreamConfig>, deps: ForwarderDeps): Forwarder {
  const clock = deps.clock ?? systemClock;
  const entries = new Map<string, UpstreamEntry>();
  for (const [name, config] of Object.entries(upstreams)) {
    const url = new URL(config.url);
    entries.set(name, {
      config,
      prefix: url.pathname.replace(/\/+$/, ''),
      pool: new Pool(url.origin, {
        connections: config.max_sockets,
        connectTimeout: config.connect_timeout_ms,
        headersTimeout: config.timeout_ms,
        bodyTimeout: config.timeout_ms,
        keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      }),
    });
  }
  const ws = createWsProxy({
    render: deps.render,
    onError: (err, code) => deps.onUpstreamError?.(err, code),
  });

  const entryFor = (name: string): UpstreamEntry => {
    const e = entries.get(name);
    if (!e) throw new TypeError(`unknown upstream "${name}"; defined: ${[...entries.keys()].join(', ')}`);
    return e;
  };

  function forward(req: IncomingMessage, res: ServerResponse, opts: ForwardOptions): Promise<ForwardResult> {
    const entry = entryFor(opts.upstream);
    if (res.destroyed) return Promise.resolve({ status: CLIENT_CLOSED_REQUEST, upstreamMs: 0, aborted: true });
    const start = clock();
    const responseHeaders = opts.responseHeaders;

    // undici refuses `expect`; strip it (the body is sent without waiting for 100 Continue).
    let headers = opts.headers;
    if (headers['expect'] !== undefined || headers['Expect'] !== undefined) {
      headers = {};
      for (const k in opts.headers) if (k.toLowerCase() !== 'expect') headers[k] = opts.headers[k]!;
    }
    const withBody = hasRequestBody(req);

    return new Promise<ForwardResult>((resolve) => {
      const settle = (relay: Relay, err: Error | undefined): void => {
        if (!err) return resolve({ status: res.statusCode, upstreamMs: relay.upstreamMs });
        if (!res.headersSent) relay.upstreamMs = clock() - start; // time until the failure
        const upstreamMs = relay.upstreamMs;
        if (relay.clientGone) {
          return resolve({ status: res.headersSent ? res.statusCode : CLIENT_CLOSED_REQUEST, upstreamMs, aborted: true });
        }
        const code = reasonFor(err);
        const gwErr = new GatewayError(code, { why: describe(err) });
        deps.onUpstreamError?.(err, code);
        if (res.headersSent || res.destroyed) {
          // The status line is gone: the only honest signal left is a broken connection.
          res.destroy();
          return resolve({ status: res.headersSent ? res.statusCode : CLIENT_CLOSED_REQUEST, upstreamMs, error: gwErr });
        }
        const rendered = deps.render(gwErr);
        const h: Record<string, string> = { ...rendered.headers, ...responseHeaders };
        // An unread request body would be parsed as the next request: close after this answer.
        if (withBody && !req.complete) h['connection'] = 'close';
        res.writeHead(rendered.status, h);
        res.end(rendered.body);
        void whenClosed(res).then(() => resolve({ status: rendered.status, upstreamMs, error: gwErr }));
      };
      const relay = new Relay(res, responseHeaders, clock, start, settle);
      res.once('close', relay.onClientClose);
      entry.pool.dispatch(
        { path: entry.prefix + opts.pathAndQuery, method: req.method ?? 'GET', headers, body: withBody ? req : null },
        relay,
      );
    });
  }

  return {
    forward,
    upgrade(req, socket, head, opts) {
      const entry = entryFor(opts.upstream);
      ws.proxy(req, socket, head, {
        target: entry.config.url,
        pathAndQuery: entry.prefix + opts.pathAndQuery,
        headers: opts.headers,
        responseHeaders: opts.responseHeaders,
        timeoutMs: entry.config.timeout_ms,
      });
    },
    async close() {
      await Promise.all([...entries.values()].map((e) => e.pool.close()));
      ws.close();
    },
  };
}
