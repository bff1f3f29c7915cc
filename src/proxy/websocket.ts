/**
 * WebSocket upgrades (SPEC.md §1.8): the upgrade request has passed the whole pipeline at the
 * HTTP level; this tunnels it to the upstream with ONE http-proxy instance (`ws: true`,
 * `xfwd: false` — the X-Forwarded-* headers come from `buildUpstreamHeaders`).
 *
 * Before the handshake succeeds, an upstream failure is answered on the raw socket with the
 * gateway's JSON error (502 upstream_unavailable, 504 upstream_timeout when the upstream does
 * not answer the handshake within `timeoutMs`), then the socket is closed. After it, a failure
 * just closes the socket. A non-101 answer from the upstream (e.g. 403) is relayed as is.
 *
 * @example
 *   const ws = createWsProxy({ render: (e) => renderError(e, { realm: 'api' }) });
 *   server.on('upgrade', (req, socket, head) =>
 *     ws.proxy(req, socket, head, {
 *       target: 'http://127.0.0.1:3000', pathAndQuery: '/v2/room/1/events',
 *       headers: buildUpstreamHeaders(req.headers, {...}), responseHeaders: { 'x-request-id': id }, timeoutMs: 30_000,
 *     }));
 *   ws.close(); // closes open tunnels
 */
import { STATUS_CODES } from 'node:http';
import type { ClientRequest, IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import httpProxy from 'http-proxy';
import { GatewayError } from '../errors.js';
import type { ErrorCode, RenderedError } from '../errors.js';

export interface WsProxyOptions {
  /** Upstream URL; only its origin is used (`pathAndQuery` is the whole request target). */
  target: string;
  /** Request target sent upstream, byte for byte. */
  pathAndQuery: string;
  /** Upstream request headers (from `buildUpstreamHeaders`); the handshake headers are added back. */
  headers: Record<string, string | string[]>;
  /** Added to the upstream's handshake answer (X-Request-Id, rate-limit headers). */
  responseHeaders: Record<string, string>;
  /** The upstream must answer the handshake within this many ms, connect included (→ 504). */
  timeoutMs: number;
}

export interface WsProxy {
  proxy(req: IncomingMessage, socket: Duplex, head: Buffer, opts: WsProxyOptions): void;
  /** Destroys every open tunnel and pending handshake. */
  close(): void;
}

export interface WsProxyDeps {
  render: (err: GatewayError) => RenderedError;
  /** Called once per upstream failure with the reason code it maps to. */
  onError?: (err: Error, code: ErrorCode) => void;
}

interface Pending {
  path: string;
  timeoutMs: number;
  responseHeaders: Record<string, string>;
  socket: Duplex;
  /** The upstream answered the handshake (101 or anything else). */
  answered: boolean;
  timedOut: boolean;
  clientGone: boolean;
  timer?: NodeJS.Timeout;
}

/** Handshake headers http-proxy and the upstream need; `buildUpstreamHeaders` drops them as hop-by-hop. */
function isHandshakeHeader(name: string): boolean {
  return name === 'connection' || name === 'upgrade' || name.startsWith('sec-websocket-');
}

function rawResponse(r: RenderedError, extra: Record<string, string>): string {
  const headers: Record<string, string> = {
    ...r.headers,
    ...extra,
    'content-length': String(Buffer.byteLength(r.body)),
    connection: 'close',
  };
  const lines = [`HTTP/1.1 ${r.status} ${STATUS_CODES[r.status] ?? 'Error'}`];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  return `${lines.join('\r\n')}\r\n\r\n${r.body}`;
}

function lowerKeys(h: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) out[k.toLowerCase()] = v;
  return out;
}

export function createWsProxy(deps: WsProxyDeps): WsProxy {
  const server = httpProxy.createProxyServer({ ws: true, xfwd: false });
  const pending = new WeakMap<IncomingMessage, Pending>();
  const open = new Set<Duplex>();

  // Every call passes its own error callback, so this never fires; it is here so that a future
  // http-proxy code path emitting 'error' cannot take the process down.
  server.on('error', () => {});

  server.on('proxyReqWs', (proxyReq: ClientRequest, req: IncomingMessage) => {
    const st = pending.get(req);
    if (!st) return;
    // http-proxy url.parse()s the target (escaping quotes, braces, ...) and collapses '//';
    // the path the pipeline matched must reach the upstream byte for byte. The request line is
    // only written at proxyReq.end(), which http-proxy calls right after this event.
    proxyReq.path = st.path;
    st.timer = setTimeout(() => {
      st.timedOut = true;
      proxyReq.destroy(new GatewayError('upstream_timeout', { why: 'websocket handshake timeout' }));
    }, st.timeoutMs);
    const answered = (res: IncomingMessage): void => {
      st.answered = true;
      clearTimeout(st.timer);
      Object.assign(res.headers, st.responseHeaders);
    };
    // Registered before http-proxy's own listeners, so the extra headers make it into the answer.
    proxyReq.once('upgrade', (res: IncomingMessage, proxySocket: Duplex) => {
      answered(res);
      open.add(proxySocket);
      // pipe() ends the other side on a clean end only; a reset or error on either side must
      // tear down the whole tunnel.
      proxySocket.once('close', () => {
        open.delete(proxySocket);
        st.socket.destroy();
      });
      st.socket.once('close', () => proxySocket.destroy());
    });
    proxyReq.once('response', answered);
    // The client's listener allows half-open sockets, so a client that hangs up shows as 'end'.
    const clientLeft = (): void => {
      if (st.answered || st.clientGone) return;
      st.clientGone = true;
      clearTimeout(st.timer);
      proxyReq.destroy();
      st.socket.destroy();
    };
    st.socket.once('end', clientLeft);
    st.socket.once('close', clientLeft);
  });

  return {
    proxy(req, socket, head, opts) {
      // Node removes its own 'error' listener from a socket it hands to 'upgrade'; without this,
      // a client resetting the connection would crash the process.
      socket.on('error', () => {});
      open.add(socket);
      socket.once('close', () => open.delete(socket));

      const headers: Record<string, string | string[]> = { ...opts.headers };
      for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && isHandshakeHeader(k)) headers[k] = v;
      req.headers = headers as IncomingHttpHeaders;
      req.url = opts.pathAndQuery;

      const st: Pending = {
        path: opts.pathAndQuery,
        timeoutMs: opts.timeoutMs,
        responseHeaders: lowerKeys(opts.responseHeaders),
        socket,
        answered: false,
        timedOut: false,
        clientGone: false,
      };
      pending.set(req, st);

      const target = new URL(opts.target).origin;
      server.ws(req, socket, head, { target }, (err) => {
        clearTimeout(st.timer);
        if (st.clientGone) {
          socket.destroy();
          return;
        }
        const code: ErrorCode = st.timedOut ? 'upstream_timeout' : 'upstream_unavailable';
        deps.onError?.(err, code);
        if (st.answered || socket.destroyed || !socket.writable) {
          socket.destroy();
          return;
        }
        const why = typeof (err as { code?: unknown }).code === 'string' ? String((err as { code?: unknown }).code) : err.name;
        const rendered = deps.render(new GatewayError(code, { why }));
        socket.end(rawResponse(rendered, st.responseHeaders), () => socket.destroy());
      });
    },
    close() {
      for (const s of open) s.destroy();
      open.clear();
      server.close();
    },
  };
}
