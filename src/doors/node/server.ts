/**
 * The Node proxy door's listeners (SPEC §8): the proxy listener (@hono/node-server around
 * app.ts, WebSocket upgrades to http-proxy; HTTPS and WSS with `listen.tls`, its certificate
 * swapped on reload), the admin listener (always plain HTTP), the slow-client bounds of
 * SPEC §1.8, reload and graceful drain. The door-independent parts (verifier, store, decision,
 * readiness, reload queue) are gateway/generation.ts'.
 *
 * @example
 *   const gw = await startNodeGateway({ loaded: loadConfigText(yaml), listen: { port: 0 } });
 *   await fetch(`${gw.url}/v2/room/42`, { headers: { authorization: `Bearer ${token}` } });
 *   await gw.shutdown();
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type tls from 'node:tls';
import { getRequestListener } from '@hono/node-server';
import { createAdminApp, type ReadinessCheck } from '../../admin.js';
import { createApp, endSocketWithResponse, EXPECTS_CONTINUE, HOST_PLACEHOLDER, requestIdOf, type Gateway } from '../../app.js';
import { GatewayError, renderError } from '../../errors.js';
import type { LoadedConfig } from '../../config/load.js';
import { prepareStart } from '../../gateway/start.js';
import { buildCoreGeneration, createReloader, readinessOf, type CoreGeneration } from '../../gateway/generation.js';
import { createAccessLog } from '../../gateway/access.js';
import { answeredInPlace } from '../../gateway/service-route.js';
import { describeTls, MIN_TLS_VERSION, sameTls, tlsForGeneration, type TlsFiles } from '../../gateway/tls.js';
import { createForwarder, type Forwarder } from '../../proxy/forward.js';
import { checkTarget } from '../../routing/path-safety.js';
import type { RunningGateway, StartOptions } from '../../server.js';

/** One configuration's worth of request-handling state: the shared core plus the Node door's parts. */
interface Generation extends CoreGeneration {
  gateway: Gateway;
  forwarder: Forwarder;
  /** What the proxy listener serves with `listen.tls` (undefined: plain HTTP). */
  tls: TlsFiles | undefined;
}

/** A WebSocket handshake (RFC 6455 §4.1): GET with `Upgrade: websocket`. Every other Upgrade is plain HTTP. */
export function isWebSocketUpgrade(req: http.IncomingMessage): boolean {
  const up = req.headers.upgrade;
  return req.method === 'GET' && typeof up === 'string' && up.trim().toLowerCase() === 'websocket';
}

/**
 * Node before 24.9 hands every request with `Connection: Upgrade` to the 'upgrade' listener, and
 * every Node hands CONNECT to 'connect', with the parser detached. Such a request that is not a
 * WebSocket handshake is handled as the ordinary request it also is: a ServerResponse on the raw
 * socket (closed after the answer), and a Content-Length body fed from the bytes after the head. A
 * chunked body cannot be framed without the parser: such a request is refused with 400 before
 * anything is decided.
 *
 * The request handed on is a fresh IncomingMessage with the same head: the one Node passes to
 * those listeners has already ended (its parser saw the message complete at the head), so a body
 * pushed into it fails with ERR_STREAM_PUSH_AFTER_EOF, which destroys the socket — the client got
 * no answer at all (`curl --http2 -d …` sends such a request).
 */
function handleAsPlainRequest(
  parsed: http.IncomingMessage,
  socket: Duplex,
  head: Buffer,
  listener: (req: http.IncomingMessage, res: http.ServerResponse) => void,
  refuse: (req: http.IncomingMessage, res: http.ServerResponse, why: string) => void,
): void {
  socket.on('error', () => socket.destroy());
  const req = new http.IncomingMessage(socket as import('node:net').Socket);
  req.method = parsed.method;
  req.url = parsed.url;
  req.headers = parsed.headers;
  // Computed from the parser's header count on first read, which a fresh message does not have.
  req.headersDistinct = parsed.headersDistinct;
  req.rawHeaders = parsed.rawHeaders;
  req.httpVersion = parsed.httpVersion;
  req.httpVersionMajor = parsed.httpVersionMajor;
  req.httpVersionMinor = parsed.httpVersionMinor;
  const res = new http.ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as import('node:net').Socket);
  res.on('finish', () => {
    res.detachSocket(socket as import('node:net').Socket);
    socket.end();
  });
  if (req.headers['transfer-encoding'] !== undefined) return refuse(req, res, 'a chunked body together with Upgrade cannot be framed');
  const declared = Number(req.headers['content-length'] ?? 0);
  let left = Number.isSafeInteger(declared) && declared > 0 ? declared : 0;
  const ended = (): void => {
    req.complete = true;
    req.push(null);
  };
  const feed = (chunk: Buffer): void => {
    if (left === 0) return;
    const part = chunk.subarray(0, left);
    left -= part.length;
    if (part.length > 0 && !req.push(part)) socket.pause();
    if (left === 0) {
      socket.off('data', feed);
      ended();
    }
  };
  if (left === 0) ended();
  else {
    // IncomingMessage._read resumes the socket when the consumer wants more.
    feed(head);
    if (left > 0) socket.on('data', feed);
  }
  listener(req, res);
}

export async function startNodeGateway(opts: StartOptions): Promise<RunningGateway> {
  const { clock, logger, metrics, load, initial, host } = await prepareStart(opts);
  // The proxy listener, once it exists: a reload swaps its certificate (https only).
  let secure: tls.Server | undefined;
  const build = async (loaded: LoadedConfig, previous?: Generation): Promise<Generation> => {
    // First: a certificate that cannot be served fails the start (config error) or the reload
    // (the running certificate and config are kept) before anything else is built.
    const tlsFiles = await tlsForGeneration(loaded, previous?.tls, previous !== undefined, logger);
    const core = await buildCoreGeneration(loaded, previous, { clock, logger, metrics, host });
    const cfg = loaded.config;
    const renderOpts = { realm: cfg.realm, docsUrl: cfg.docs_url };
    const forwarder = createForwarder(cfg.upstreams, {
      render: (err) => renderError(err, renderOpts),
      clock,
      bodyIdleTimeoutMs: cfg.listen.body_idle_timeout_ms,
      onUpstreamError: (err, code) => logger.warn({ reason: code, err: err.message }, 'upstream error'),
    });
    const gateway = createApp(loaded, { clock, logger, metrics, decider: core.decider, forwarder, trusted: core.trusted, tokenService: core.tokenService, forwardAuth: core.forwardAuth });
    // Last, so nothing after it can fail: new TLS connections get the new certificate, open ones
    // keep theirs.
    if (secure && tlsFiles && !sameTls(previous?.tls, tlsFiles)) {
      secure.setSecureContext({ cert: tlsFiles.cert, key: tlsFiles.key, minVersion: MIN_TLS_VERSION });
      logger.info(describeTls(tlsFiles), 'TLS certificate reloaded');
    }
    return { ...core, forwarder, gateway, tls: tlsFiles };
  };

  /** Forwarders of retired generations: their WebSocket tunnels are closed at shutdown. */
  const retired = new Set<Forwarder>();
  const reloader = createReloader<Generation>({
    initial: await build(initial),
    load,
    build,
    // undici's Pool.close waits for requests in flight on the old generation; its WebSocket
    // tunnels stay open (they finish on the old generation too) until shutdown closes them.
    retire: (old) => {
      retired.add(old.forwarder);
      void old.forwarder.close({ keepTunnels: true }).catch(() => undefined);
    },
    metrics,
    logger,
  });
  let shuttingDown = false;
  const cfg0 = reloader.current().loaded.config;

  // Each request captures the generation current when it arrives: in-flight requests finish on it.
  // Requests refused before the pipeline runs get the same envelope, access line, metric and
  // X-Request-Id as any other refusal.
  const access = createAccessLog({ logger, metrics, clock, tokenParam: cfg0.tokens.query_param });
  const refuseEarly = (gerr: GatewayError, req: { requestId: string; method?: string | undefined; url?: string | undefined; clientIp?: string | undefined }) => {
    const cfg = reloader.current().loaded.config;
    const r = renderError(gerr, { realm: cfg.realm, docsUrl: cfg.docs_url });
    const rec = access.start({ requestId: req.requestId, method: req.method ?? 'OTHER', url: req.url, clientIp: req.clientIp ?? '' });
    rec.status = r.status;
    rec.reason = gerr.code;
    rec.why = gerr.detail.why;
    access.finish(rec);
    return { ...r, headers: { ...r.headers, 'x-request-id': req.requestId } };
  };

  // @hono/node-server refuses some request targets before our pipeline runs (a backslash in the
  // path, a bad Host). Its errorHandler gets only the error, but for these it is called
  // synchronously inside the listener call, so `arriving` names the Node request (undefined for a
  // later, asynchronous failure).
  let arriving: http.IncomingMessage | undefined;
  const refuseMalformed = (err: unknown): Response => {
    const incoming = arriving;
    // A target that is not origin-form (CONNECT host:443, `*`) gets the decision's own words, as
    // on the Bun door, rather than @hono/node-server's "Invalid URL".
    const why = (incoming?.url !== undefined ? checkTarget(incoming.url) : null) ?? (err instanceof Error ? err.message : 'malformed request');
    const r = refuseEarly(new GatewayError('bad_request', { why }), {
      requestId: requestIdOf(incoming?.headers['x-request-id']),
      method: incoming?.method,
      url: incoming?.url,
      clientIp: incoming?.socket?.remoteAddress,
    });
    return new Response(r.body, { status: r.status, headers: r.headers });
  };
  const honoListener = getRequestListener((req, env) => reloader.current().gateway.fetch(req, env as never), { errorHandler: refuseMalformed });
  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => {
    // A request line `PRI <target>` without a version (HTTP/0.9 form) parses, but Node destroys
    // the socket as soon as this listener returns (its HTTP/2-preface guard): only an answer
    // written now gets out, so it is refused here, with its access line, not left to vanish.
    if (req.method === 'PRI') return refuseUnframed(req, res, 'PRI is the HTTP/2 connection preface, not a request method');
    // HTTP/1.0 may omit Host (HTTP/1.1 without one is refused by the decision, which counts the
    // raw headers): @hono/node-server needs one to build its URL.
    if (req.headers.host === undefined) {
      req.headers.host = 'localhost';
      HOST_PLACEHOLDER.add(req);
    }
    arriving = req;
    try {
      return honoListener(req, res);
    } finally {
      arriving = undefined;
    }
  };
  const refuseUnframed = (r: http.IncomingMessage, res: http.ServerResponse, why: string): void => {
    const refused = refuseEarly(new GatewayError('bad_request', { why }), {
      requestId: requestIdOf(r.headers['x-request-id']),
      method: r.method,
      url: r.url,
      clientIp: r.socket?.remoteAddress,
    });
    res.writeHead(refused.status, { ...refused.headers, connection: 'close' }).end(refused.body);
  };
  // A WebSocket handshake opens a tunnel, unless its path is one the gateway answers itself
  // (forward auth behind a proxy that passes the client's Upgrade on, the token service): there
  // it is the plain request it also is, as on the Bun door.
  const tunnels = (req: http.IncomingMessage): boolean => isWebSocketUpgrade(req) && !answeredInPlace(reloader.current(), req.method ?? 'GET', req.url ?? '/');
  const lc = cfg0.listen;
  const tls0 = reloader.current().tls;
  const serverOptions = {
    // Slow clients are bounded (SPEC §1.8): the head within header_timeout_ms (Node answers 408
    // through clientError below), a keep-alive connection idle for idle_timeout_ms is closed.
    // No bound on the whole request: a long upload that keeps moving is legitimate; pauses
    // inside a body are the forwarder's body_idle_timeout_ms.
    headersTimeout: lc.header_timeout_ms,
    requestTimeout: 0,
    keepAliveTimeout: lc.idle_timeout_ms,
    connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(lc.header_timeout_ms / 4))),
    // A request without Host gets the gateway's own 400 (with the envelope and X-Request-Id),
    // not Node's bare one.
    requireHostHeader: false,
    // Node ≥ 24.9 / 22.21: only a GET to websocket is an upgrade; anything else (h2c, TRACE with
    // Upgrade) stays an ordinary request with its parser intact. Older Node ignores the option:
    // handleNodeUpgrade below does the same by hand.
    shouldUpgradeCallback: tunnels,
  } as http.ServerOptions;
  // One server, one wiring: with listen.tls it is an https.Server (a tls.Server underneath), whose
  // HTTP side takes the same options and events. The handshake is bounded like the head.
  const httpsServer = tls0
    ? https.createServer({ ...serverOptions, cert: tls0.cert, key: tls0.key, minVersion: MIN_TLS_VERSION, handshakeTimeout: lc.header_timeout_ms }, listener)
    : undefined;
  const server: http.Server = httpsServer ?? http.createServer(serverOptions, listener);
  if (tls0) {
    secure = httpsServer;
    logger.info(describeTls(tls0), 'TLS certificate loaded');
  }
  server.maxConnections = lc.max_connections;
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    if (tunnels(req)) return reloader.current().gateway.handleUpgrade(req, socket, head);
    handleAsPlainRequest(req, socket, head, listener, refuseUnframed);
  });
  // CONNECT never reaches 'request': Node hands it to 'connect' with the parser detached, and with
  // no listener closes the socket unanswered. It is decided like any request (405 unless a route
  // lists it; an authority-form target is 400); scopegate does not open tunnels, so an allowed
  // CONNECT gets the upstream's answer to an ordinary request, or 502.
  server.on('connect', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    handleAsPlainRequest(req, socket, head, listener, refuseUnframed);
  });
  // Expect: 100-continue is answered only once the request is allowed (app.ts); a refusal goes out
  // at once and the body is never read.
  server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
    EXPECTS_CONTINUE.add(req);
    listener(req, res);
  });
  // Requests Node's parser refuses (raw backslash or control bytes in the target, oversized
  // headers) never reach the pipeline; answer them in the same envelope.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || err.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const gerr =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? new GatewayError('headers_too_large')
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? new GatewayError('request_timeout', { why: `request head not received within ${reloader.current().loaded.config.listen.header_timeout_ms} ms` })
          : new GatewayError('bad_request', { why: `malformed HTTP request (${err.code ?? 'parse error'})` });
    const r = refuseEarly(gerr, { requestId: requestIdOf(undefined), clientIp: (socket as import('node:net').Socket).remoteAddress });
    endSocketWithResponse(socket, r.status, Object.entries(r.headers), r.body);
  });

  const listen = (s: http.Server, host: string, port: number, scheme: 'http' | 'https' = 'http') =>
    new Promise<string>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, host, () => {
        s.off('error', reject);
        const a = s.address() as AddressInfo;
        resolve(`${scheme}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`);
      });
    });

  const url = await listen(server, opts.listen?.host ?? cfg0.listen.host, opts.listen?.port ?? cfg0.listen.port, tls0 ? 'https' : 'http');

  const readiness = (): Promise<ReadinessCheck[]> => readinessOf(reloader.current());

  let adminServer: http.Server | undefined;
  let adminUrl: string | undefined;
  if (opts.admin !== false && cfg0.admin.enabled) {
    const adminApp = createAdminApp({ metrics, readiness, isShuttingDown: () => shuttingDown });
    adminServer = http.createServer(getRequestListener(adminApp.fetch));
    adminUrl = await listen(adminServer, opts.admin?.host ?? cfg0.admin.host, opts.admin?.port ?? cfg0.admin.port);
  }

  const shutdown = async (): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    const timeout = reloader.current().loaded.config.shutdown_timeout_ms;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), timeout).unref());
    const idleSweep = setInterval(() => server.closeIdleConnections(), 100);
    const outcome = await Promise.race([closed.then(() => 'drained' as const), timer]);
    clearInterval(idleSweep);
    if (outcome === 'timeout') {
      logger.warn({ timeout_ms: timeout }, 'drain timed out; closing remaining connections');
      server.closeAllConnections();
    }
    const last = reloader.current();
    await Promise.all([last.forwarder, ...retired].map((f) => f.close().catch(() => undefined)));
    await last.store.close().catch(() => undefined);
    await last.tokenService?.close().catch(() => undefined);
    await host?.close().catch((e: unknown) => logger.warn({ err: (e as Error).message }, 'token store close failed'));
    if (adminServer) {
      adminServer.closeAllConnections();
      await new Promise<void>((resolve) => adminServer!.close(() => resolve()));
    }
    logger.info({ outcome }, 'shutdown complete');
  };

  return {
    url,
    adminUrl,
    metrics,
    logger,
    current: () => reloader.current().loaded,
    reload: reloader.reload,
    readiness,
    shutdown,
  };
}
