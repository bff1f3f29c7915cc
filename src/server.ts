/**
 * Builds a running gateway from a loaded config: dependencies (verifier, limiter + store, forwarder,
 * metrics, logger), the proxy listener, the admin listener, atomic reload and graceful drain.
 * main.ts adds signals on top; tests call startGateway() directly with port 0.
 *
 * @example
 *   const gw = await startGateway({ loaded: loadConfigText(yaml), listen: { port: 0 } });
 *   await fetch(`${gw.url}/v2/room/42`, { headers: { authorization: `Bearer ${token}` } });
 *   await gw.shutdown();
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import type { Logger } from 'pino';
import { createAdminApp, type ReadinessCheck } from './admin.js';
import type { Duplex } from 'node:stream';
import { createApp, endSocketWithResponse, EXPECTS_CONTINUE, requestIdOf, type Gateway } from './app.js';
import { createDecider } from './core/decide.js';
import { compileCidrs } from './net/cidr.js';
import { createTokenVerifier, type TokenVerifier } from './auth/verify-token.js';
import { loadConfigFile, type LoadedConfig } from './config/load.js';
import type { GatewayConfig } from './config/schema.js';
import { GatewayError, renderError } from './errors.js';
import { createLogger, redactUrl } from './observability/logger.js';
import { createMetrics, type Metrics } from './observability/metrics.js';
import { createForwarder, type Forwarder } from './proxy/forward.js';
import { createMemoryStore } from './ratelimit/memory-store.js';
import { createRateLimiter } from './ratelimit/policy.js';
import { createRedisStore } from './ratelimit/redis-store.js';
import { systemClock, type Clock, type RateLimitStore } from './types.js';
import { VERSION } from './version.js';

export interface StartOptions {
  /** An already loaded config; or `configFile` to load (and reload) from disk. */
  loaded?: LoadedConfig;
  configFile?: string;
  env?: Readonly<Record<string, string | undefined>>;
  /** Overrides config.listen / config.admin (tests pass port 0). */
  listen?: { host?: string; port?: number };
  admin?: { host?: string; port?: number } | false;
  clock?: Clock;
  logger?: Logger;
  metrics?: Metrics;
}

export interface RunningGateway {
  /** http://host:port of the proxy listener. */
  url: string;
  /** http://host:port of the admin listener, when it runs. */
  adminUrl?: string | undefined;
  metrics: Metrics;
  logger: Logger;
  current(): LoadedConfig;
  /** Re-reads the config file (or uses `next`), swaps atomically. false (old config kept) on error. */
  reload(next?: LoadedConfig): Promise<boolean>;
  readiness(): Promise<ReadinessCheck[]>;
  /** Fails readiness, stops accepting, drains in-flight requests (bounded), closes everything. */
  shutdown(): Promise<void>;
}

/** One configuration's worth of request-handling state. Swapped whole on reload. */
interface Generation {
  loaded: LoadedConfig;
  gateway: Gateway;
  verifier: TokenVerifier;
  forwarder: Forwarder;
  store: RateLimitStore;
  storeKey: string;
}

function storeIdentity(cfg: GatewayConfig): string {
  const r = cfg.rate_limit;
  // The memory store is kept across every reload (counters survive); a new max_keys applies on restart.
  return r.store === 'redis' ? `redis|${r.redis_url}|${r.key_prefix}|${r.redis_timeout_ms}` : 'memory';
}

/** A WebSocket handshake (RFC 6455 §4.1): GET with `Upgrade: websocket`. Every other Upgrade is plain HTTP. */
export function isWebSocketUpgrade(req: http.IncomingMessage): boolean {
  const up = req.headers.upgrade;
  return req.method === 'GET' && typeof up === 'string' && up.trim().toLowerCase() === 'websocket';
}

/**
 * Node before 24.9 hands every request with `Connection: Upgrade` to the 'upgrade' listener, with
 * the parser detached. An Upgrade that is not a WebSocket handshake is handled as the ordinary
 * request it also is: a ServerResponse on the raw socket (closed after the answer), and a
 * Content-Length body fed from the bytes after the head. A chunked body cannot be framed without
 * the parser: such a request is refused with 400 before anything is decided.
 */
function handleAsPlainRequest(
  req: http.IncomingMessage,
  socket: Duplex,
  head: Buffer,
  listener: (req: http.IncomingMessage, res: http.ServerResponse) => void,
  refuse: (req: http.IncomingMessage, res: http.ServerResponse, why: string) => void,
): void {
  socket.on('error', () => socket.destroy());
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
  const feed = (chunk: Buffer): void => {
    if (left === 0) return;
    const part = chunk.subarray(0, left);
    left -= part.length;
    if (part.length > 0 && !req.push(part)) socket.pause();
    if (left === 0) {
      socket.off('data', feed);
      (req as { complete: boolean }).complete = true;
      req.push(null);
    }
  };
  if (left === 0) {
    (req as { complete: boolean }).complete = true;
    req.push(null);
  } else {
    // IncomingMessage._read resumes the socket when the consumer wants more.
    feed(head);
    if (left > 0) socket.on('data', feed);
  }
  listener(req, res);
}

export async function startGateway(opts: StartOptions): Promise<RunningGateway> {
  const clock = opts.clock ?? systemClock;
  const logger = opts.logger ?? createLogger();
  const metrics = opts.metrics ?? createMetrics({ version: VERSION });
  const load = async (): Promise<LoadedConfig> => {
    if (opts.configFile) return loadConfigFile(opts.configFile, opts.env);
    if (opts.loaded) return opts.loaded;
    throw new Error('startGateway needs `loaded` or `configFile`');
  };

  const makeStore = (cfg: GatewayConfig): RateLimitStore => {
    const r = cfg.rate_limit;
    if (r.store === 'redis') {
      return createRedisStore({
        url: r.redis_url!,
        keyPrefix: r.key_prefix,
        timeoutMs: r.redis_timeout_ms,
        onError: (err) => logger.warn({ err: err.message }, 'redis rate-limit store error'),
      });
    }
    return createMemoryStore({ maxKeys: r.max_keys, clock });
  };

  const build = async (loaded: LoadedConfig, previous?: Generation): Promise<Generation> => {
    const cfg = loaded.config;
    const verifier = await createTokenVerifier(cfg.tokens, {
      clock,
      baseDir: loaded.baseDir,
      observer: {
        tokenCache: (result) => metrics.tokenCache.inc({ result }),
        jwksRefresh: (issuer, result) => metrics.jwksRefresh.inc({ issuer, result }),
      },
    });
    // Counters survive reloads: the store is kept unless its identity (kind, url, prefix) changed.
    const storeKey = storeIdentity(cfg);
    const store = previous && previous.storeKey === storeKey ? previous.store : makeStore(cfg);
    const limiter = createRateLimiter(cfg.rate_limit, { store, clock });
    const renderOpts = { realm: cfg.realm, docsUrl: cfg.docs_url };
    const forwarder = createForwarder(cfg.upstreams, {
      render: (err) => renderError(err, renderOpts),
      clock,
      onUpstreamError: (err, code) => logger.warn({ reason: code, err: err.message }, 'upstream error'),
    });
    const decider = createDecider(loaded, {
      clock,
      verifier,
      limiter,
      observer: {
        storeError: (err, refused) => {
          metrics.rateLimitStoreErrors.inc({ store: store.kind });
          logger.warn(
            { err: err.message },
            refused ? 'rate-limit store error; refusing (on_store_error: closed)' : 'rate-limit store error; forwarding (on_store_error: open)',
          );
        },
        rateLimited: (route, kind) => metrics.rateLimited.inc({ route, kind }),
      },
    });
    const trusted = compileCidrs(cfg.trusted_proxies);
    const gateway = createApp(loaded, { clock, logger, metrics, decider, forwarder, trusted });
    return { loaded, gateway, verifier, forwarder, store, storeKey };
  };

  let gen = await build(await load());
  let shuttingDown = false;
  const cfg0 = gen.loaded.config;

  // Each request captures the generation current when it arrives: in-flight requests finish on it.
  // Requests refused before the pipeline runs get the same envelope, access line, metric and
  // X-Request-Id as any other refusal.
  const refuseEarly = (gerr: GatewayError, req: { requestId: string; method?: string | undefined; url?: string | undefined; clientIp?: string | undefined }) => {
    const cfg = gen.loaded.config;
    const r = renderError(gerr, { realm: cfg.realm, docsUrl: cfg.docs_url });
    const method = req.method ?? 'OTHER';
    metrics.observeRequest({ route: 'unmatched', method, status: r.status, decision: 'denied', seconds: 0, reason: gerr.code });
    logger.info(
      {
        request_id: req.requestId,
        method,
        path: req.url === undefined ? undefined : redactUrl(req.url, [cfg.tokens.query_param]),
        route: 'unmatched',
        status: r.status,
        decision: 'denied',
        reason: gerr.code,
        why: gerr.detail.why,
        duration_ms: 0,
        client_ip: req.clientIp ?? '',
      },
      'request',
    );
    return { ...r, headers: { ...r.headers, 'x-request-id': req.requestId } };
  };

  // @hono/node-server refuses some request targets before our pipeline runs (a backslash in the
  // path, a bad Host). Its errorHandler gets only the error, but for these it is called
  // synchronously inside the listener call, so `arriving` names the Node request (undefined for a
  // later, asynchronous failure).
  let arriving: http.IncomingMessage | undefined;
  const refuseMalformed = (err: unknown): Response => {
    const incoming = arriving;
    const why = err instanceof Error ? err.message : 'malformed request';
    const r = refuseEarly(new GatewayError('bad_request', { why }), {
      requestId: requestIdOf(incoming?.headers['x-request-id']),
      method: incoming?.method,
      url: incoming?.url,
      clientIp: incoming?.socket?.remoteAddress,
    });
    return new Response(r.body, { status: r.status, headers: r.headers });
  };
  const honoListener = getRequestListener((req, env) => gen.gateway.fetch(req, env as never), { errorHandler: refuseMalformed });
  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => {
    arriving = req;
    try {
      return honoListener(req, res);
    } finally {
      arriving = undefined;
    }
  };
  const lc = cfg0.listen;
  const server = http.createServer(
    {
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
      shouldUpgradeCallback: isWebSocketUpgrade,
    } as http.ServerOptions,
    listener,
  );
  server.maxConnections = lc.max_connections;
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    if (isWebSocketUpgrade(req)) return gen.gateway.handleUpgrade(req, socket, head);
    handleAsPlainRequest(req, socket, head, listener, (r, res, why) => {
      const refused = refuseEarly(new GatewayError('bad_request', { why }), {
        requestId: requestIdOf(r.headers['x-request-id']),
        method: r.method,
        url: r.url,
        clientIp: r.socket?.remoteAddress,
      });
      res.writeHead(refused.status, { ...refused.headers, connection: 'close' }).end(refused.body);
    });
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
          ? new GatewayError('request_timeout', { why: `request head not received within ${gen.loaded.config.listen.header_timeout_ms} ms` })
          : new GatewayError('bad_request', { why: `malformed HTTP request (${err.code ?? 'parse error'})` });
    const r = refuseEarly(gerr, { requestId: requestIdOf(undefined), clientIp: (socket as import('node:net').Socket).remoteAddress });
    endSocketWithResponse(socket, r.status, Object.entries(r.headers), r.body);
  });

  const listen = (s: http.Server, host: string, port: number) =>
    new Promise<string>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, host, () => {
        s.off('error', reject);
        const a = s.address() as AddressInfo;
        resolve(`http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`);
      });
    });

  const url = await listen(server, opts.listen?.host ?? cfg0.listen.host, opts.listen?.port ?? cfg0.listen.port);

  const readiness = async (): Promise<ReadinessCheck[]> => {
    const g = gen;
    const checks: ReadinessCheck[] = [{ name: 'config', ok: true }];
    for (const r of await g.verifier.readiness()) {
      checks.push({ name: `keys:${r.issuer}`, ok: r.ok, ...(r.error ? { error: r.error } : {}) });
    }
    const rl = g.loaded.config.rate_limit;
    if (rl.enabled && rl.store === 'redis') {
      const required = rl.on_store_error === 'closed';
      try {
        await g.store.ping();
        checks.push({ name: 'redis', ok: true });
      } catch (e) {
        // With on_store_error: open a dead Redis degrades limits but does not stop traffic.
        checks.push({ name: 'redis', ok: !required, error: (e as Error).message });
      }
    }
    return checks;
  };

  let adminServer: http.Server | undefined;
  let adminUrl: string | undefined;
  if (opts.admin !== false && cfg0.admin.enabled) {
    const adminApp = createAdminApp({ metrics, readiness, isShuttingDown: () => shuttingDown });
    adminServer = http.createServer(getRequestListener(adminApp.fetch));
    adminUrl = await listen(adminServer, opts.admin?.host ?? cfg0.admin.host, opts.admin?.port ?? cfg0.admin.port);
  }

  // Open connections, so drain can close idle keep-alive sockets and count what is left.
  let reloading: Promise<boolean> = Promise.resolve(true);
  const reload = (next?: LoadedConfig): Promise<boolean> => {
    reloading = reloading.then(async () => {
      try {
        const loaded = next ?? (await load());
        const old = gen;
        gen = await build(loaded, old);
        if (old.store !== gen.store) void old.store.close().catch(() => undefined);
        // undici's Pool.close waits for requests in flight on the old generation.
        void old.forwarder.close().catch(() => undefined);
        metrics.configReloads.inc({ result: 'success' });
        logger.info({ routes: loaded.routes.routes.length, file: loaded.file }, 'config reloaded');
        return true;
      } catch (e) {
        metrics.configReloads.inc({ result: 'error' });
        logger.error({ err: (e as Error).message }, 'config reload failed; keeping the running config');
        return false;
      }
    });
    return reloading;
  };

  const shutdown = async (): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    const timeout = gen.loaded.config.shutdown_timeout_ms;
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
    await gen.forwarder.close().catch(() => undefined);
    await gen.store.close().catch(() => undefined);
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
    current: () => gen.loaded,
    reload,
    readiness,
    shutdown,
  };
}
