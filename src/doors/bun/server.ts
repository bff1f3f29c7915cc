/**
 * The Bun proxy door (SPEC §8): `bun dist/cli.js serve` runs the same gateway — same config, same
 * decision (core/decide.ts), same admin listener, same reload / drain / signals — on `Bun.serve`,
 * forwarding with Bun's fetch (forward.ts) and tunnelling WebSockets with Bun's own server and
 * client. Nothing here imports undici or http-proxy; only Bun loads this module.
 *
 * Where the doors cannot behave alike, docs/doors.md says why: Bun.serve hands the request over
 * with a WHATWG-normalised URL (dot segments resolved, `\` read as `/`, an absolute-form target
 * reduced to its path) and merged repeated headers, so those spellings are routed — and forwarded
 * — in their normalised form instead of being refused with 400. And Bun.serve cannot change a
 * listening server's certificate (`reload({ tls })` is ignored): with `listen.tls` a renewed
 * certificate gets a new listener on the same port (SO_REUSEPORT), and the old one drains.
 *
 * @example
 *   const gw = await startBunGateway({ loaded, listen: { host: '127.0.0.1', port: 0 } });
 *   await fetch(`${gw.url}/v2/room/42`, { headers: { authorization: `Bearer ${t}` } });
 *   await gw.shutdown();
 */
import './runtime-fixes.js';
import { createAdminApp, type ReadinessCheck } from '../../admin.js';
import type { RequestFacts } from '../../core/decide.js';
import { GatewayError, renderError } from '../../errors.js';
import { createAccessLog, requestIdOf, type AccessRecord } from '../../gateway/access.js';
import type { Decision as DecisionLabel } from '../../observability/metrics.js';
import type { LoadedConfig } from '../../config/load.js';
import { prepareStart } from '../../gateway/start.js';
import { buildCoreGeneration, createReloader, readinessOf, type CoreGeneration } from '../../gateway/generation.js';
import { recordForwardAuth, recordServiceOutcome, serviceFor } from '../../gateway/service-route.js';
import { describeTls, sameTls, tlsForGeneration, type TlsFiles } from '../../gateway/tls.js';
import { buildUpstreamHeaders } from '../../proxy/upstream-headers.js';
import type { RunningGateway, StartOptions } from '../../server.js';
import { bun, type BunServeOptions, type BunServer, type BunServerWebSocket } from './bun-api.js';
import { createBunForwarder, type BunForwarder } from './forward.js';
import { bunTarget } from './target.js';

interface Generation extends CoreGeneration {
  forwarder: BunForwarder;
  /** What the proxy listener serves with `listen.tls` (undefined: plain HTTP). */
  tls: TlsFiles | undefined;
}

/** One WebSocket tunnel: the client side is Bun's server socket, the upstream side Bun's client. */
interface Tunnel {
  upstream: WebSocket;
  /** Upstream messages that arrived before the client socket opened. */
  early: (string | ArrayBuffer)[];
  client: BunServerWebSocket<Tunnel> | undefined;
}

/** Set by handle when it answers with a relayed upstream body: the access line waits for its end. */
interface Pending {
  bodyEnded: Promise<void> | undefined;
}

/** Bun caps idleTimeout at 255 s. */
const BUN_MAX_IDLE_S = 255;

/** The facts of a Bun request: its target (bunTarget of req.url), the merged headers. */
function bunFacts(req: Request, target: string, clientIp: string): RequestFacts {
  const auth = req.headers.get('authorization');
  const host = req.headers.get('host');
  return {
    method: req.method,
    target,
    authorization: auth === null ? undefined : [auth],
    // Bun merges repeated fields with ", ": two Host headers show as one value with a comma.
    hostCount: host === null ? 0 : host.includes(',') ? 2 : 1,
    httpVersion: undefined,
    clientIp,
  };
}

/** Request headers as a record (Headers already lower-cases and merges). */
function headerRecord(h: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  h.forEach((v, k) => {
    out[k] = v;
  });
  return out;
}

function isWebSocketRequest(req: Request): boolean {
  return req.method === 'GET' && (req.headers.get('upgrade') ?? '').trim().toLowerCase() === 'websocket';
}

export async function startBunGateway(opts: StartOptions): Promise<RunningGateway> {
  const { clock, logger, metrics, load, initial, host } = await prepareStart(opts);
  const build = async (loaded: LoadedConfig, previous?: Generation): Promise<Generation> => {
    // First: a certificate that cannot be served fails the start (config error) or the reload
    // (the running certificate and config are kept) before anything else is built.
    const tlsFiles = await tlsForGeneration(loaded, previous?.tls, previous !== undefined, logger);
    const core = await buildCoreGeneration(loaded, previous, { clock, logger, metrics, host });
    const cfg = loaded.config;
    const renderOpts = { realm: cfg.realm, docsUrl: cfg.docs_url };
    const forwarder = createBunForwarder(cfg.upstreams, {
      render: (err) => renderError(err, renderOpts),
      clock,
      bodyIdleTimeoutMs: cfg.listen.body_idle_timeout_ms,
      onUpstreamError: (err, code) => logger.warn({ reason: code, err: err.message }, 'upstream error'),
    });
    // Last, so nothing after it can fail (a listener that cannot start fails the reload).
    if (mainServer && tlsFiles && !sameTls(previous?.tls, tlsFiles)) {
      swapListener(tlsFiles);
      logger.info(describeTls(tlsFiles), 'TLS certificate reloaded');
    }
    return { ...core, forwarder, tls: tlsFiles };
  };
  // The proxy listener (undefined during the first build) and those replaced by a certificate
  // swap, still draining.
  let mainServer: BunServer | undefined;
  const draining = new Set<BunServer>();
  const reloader = createReloader<Generation>({
    initial: await build(initial),
    load,
    build,
    retire: (old) => void old.forwarder.close(),
    metrics,
    logger,
  });
  const cfg0 = reloader.current().loaded.config;
  const tls0 = reloader.current().tls;
  const proto = tls0 ? 'https' : 'http';
  const access = createAccessLog({ logger, metrics, clock, tokenParam: cfg0.tokens.query_param });
  let shuttingDown = false;

  const internalError = (rec: AccessRecord | undefined, err: unknown): Response => {
    metrics.internalErrors.inc();
    logger.error({ request_id: rec?.requestId, err }, 'unexpected error in the request handler');
    const cfg = reloader.current().loaded.config;
    const r = renderError(new GatewayError('internal_error'), { realm: cfg.realm, docsUrl: cfg.docs_url });
    if (rec) {
      rec.status = r.status;
      rec.reason = 'internal_error';
      rec.decision = 'denied';
    }
    return new Response(r.body, { status: r.status, headers: { ...r.headers, ...(rec ? { 'x-request-id': rec.requestId } : {}) } });
  };

  /** The door's own refusal of a request, in the envelope, with what its access line records. */
  const refusal = (rec: AccessRecord, g: Generation, err: GatewayError, own: Record<string, string>, decision: DecisionLabel): Response => {
    const cfg = g.loaded.config;
    const r = renderError(err, { realm: cfg.realm, docsUrl: cfg.docs_url });
    rec.status = r.status;
    rec.decision = decision;
    rec.reason = err.code;
    return new Response(r.body, { status: r.status, headers: { ...r.headers, ...own } });
  };

  async function handle(req: Request, server: BunServer, rec: AccessRecord, g: Generation, pending: Pending): Promise<Response | undefined> {
    const cfg = g.loaded.config;
    const own: Record<string, string> = { 'x-request-id': rec.requestId };
    const refuse = (why: string): Response => {
      rec.why = why;
      return refusal(rec, g, new GatewayError('bad_request', { why }), own, 'denied');
    };
    const target = rec.url ?? '/';
    // Bun.serve takes a repeated Content-Length and shows it merged ("3, 3"); Node's parser refuses
    // it, and so does this door, in the same words (fetch would fail on it as an upstream error).
    const length = req.headers.get('content-length');
    if (length !== null && length.includes(',')) return refuse('malformed HTTP request (HPE_UNEXPECTED_CONTENT_LENGTH)');
    if (g.forwardAuth && g.forwardAuth.matches(target.split('?', 1)[0]!)) {
      let r = g.forwardAuth.handle({ method: req.method, target, headers: headerRecord(req.headers), clientIp: rec.clientIp, requestId: rec.requestId });
      if (r instanceof Promise) r = await r;
      recordForwardAuth(rec, r);
      return new Response(r.body, { status: r.status, headers: { ...r.headers, 'x-request-id': rec.requestId } });
    }
    const svc = serviceFor(g.tokenService, req.method, target);
    if (svc) {
      const res = await svc.handle(req, { clientIp: rec.clientIp, proto, host: req.headers.get('host') ?? undefined });
      recordServiceOutcome(rec, res);
      res.headers.set('x-request-id', rec.requestId);
      return res;
    }
    let d = g.decider.decide(bunFacts(req, target, rec.clientIp));
    if (d instanceof Promise) d = await d;
    rec.route = d.route;
    rec.principal = d.principal;
    rec.limitKey = d.limitKey;
    if (d.kind !== 'forward') {
      const r = g.decider.render(d);
      rec.status = r.status;
      if (d.kind === 'answer') rec.decision = 'auth_test';
      else {
        rec.reason = d.error.code;
        if (d.error.status >= 500) logger.warn({ request_id: rec.requestId, reason: d.error.code, why: d.error.detail.why }, 'gateway refused with 5xx');
      }
      return new Response(r.body, { status: r.status, headers: { ...r.headers, ...own } });
    }
    // Bun's fetch refuses a body on GET and HEAD, and dropping it would change what the request
    // asks (a search without its query): such a request is refused, not forwarded without it.
    if ((req.method === 'GET' || req.method === 'HEAD') && (req.headers.has('transfer-encoding') || (length !== null && length !== '0'))) {
      return refuse(`a ${req.method} request with a body cannot be forwarded by the Bun door (Bun's fetch refuses one)`);
    }
    rec.decision = d.outcome;
    if (g.tokenService !== undefined && d.principal?.tokenId !== undefined && d.principal.issuerName === g.tokenService.issuerName) g.tokenService.usage.seen(d.principal.tokenId);
    Object.assign(own, d.responseHeaders);
    const incoming = headerRecord(req.headers);
    const headers = buildUpstreamHeaders(incoming, {
      identityPrefix: cfg.tokens.identity_header_prefix,
      principal: d.principal,
      token: d.token,
      forwardToken: cfg.tokens.forward_token,
      requestId: rec.requestId,
      clientIp: rec.clientIp,
      proto,
      host: incoming['host'],
      trustedPeer: g.trusted.contains(rec.clientIp),
      underscoreHeaders: cfg.listen.underscore_headers,
    });
    if (!d.principal && incoming['authorization'] !== undefined) headers['authorization'] = incoming['authorization'];

    if (isWebSocketRequest(req)) return openTunnel(req, server, rec, g, d.upstream, d.pathAndQuery, headers, own, d.route.id);

    const result = await g.forwarder.forward(req, { upstream: d.upstream, pathAndQuery: d.pathAndQuery, headers, responseHeaders: own });
    rec.status = result.status;
    rec.upstreamMs = result.upstreamMs;
    const routeId = d.route.id;
    const upstream = d.upstream;
    // Recorded once the exchange is over, as the Node door does when its forward resolves: at the
    // end of a relayed body, so a failure mid-body is an upstream error in the log and the metrics.
    const record = (error: GatewayError | undefined, aborted: boolean | undefined): void => {
      const upstreamError = error?.code === 'upstream_unavailable' || error?.code === 'upstream_timeout' ? error.code : undefined;
      // As on the Node door (app.ts): a client that paused its body too long cost the upstream
      // nothing measurable, and is the client's refusal, not an upstream error.
      metrics.observeUpstream({
        route: routeId,
        upstream,
        ...(aborted || error?.code === 'request_timeout' ? {} : { seconds: result.upstreamMs / 1000 }),
        ...(upstreamError ? { error: upstreamError } : {}),
      });
      if (error) {
        rec.decision = error.code === 'request_timeout' ? 'denied' : 'upstream_error';
        rec.reason = error.code;
      }
    };
    if (result.bodyEnded === undefined) record(result.error, result.aborted);
    else pending.bodyEnded = result.bodyEnded.then((o) => record(o.error, o.aborted));
    return result.response;
  }

  /**
   * Connects to the upstream first, and only then upgrades the client: a refused or silent
   * upstream is still answered with the gateway's 502 / 504 envelope before any handshake.
   */
  async function openTunnel(
    req: Request,
    server: BunServer,
    rec: AccessRecord,
    g: Generation,
    upstreamName: string,
    pathAndQuery: string,
    headers: Record<string, string | string[]>,
    own: Record<string, string>,
    routeId: string,
  ): Promise<Response | undefined> {
    const t = g.forwarder.target(upstreamName);
    const wsUrl = `${t.origin.replace(/^http/, 'ws')}${t.prefix}${pathAndQuery}`;
    const protocols = (req.headers.get('sec-websocket-protocol') ?? '').split(',').map((p) => p.trim()).filter(Boolean);
    const upstreamHeaders: Record<string, string> = {};
    for (const [k, v] of Object.entries(headers)) {
      if (k.startsWith('sec-websocket-')) continue;
      upstreamHeaders[k] = Array.isArray(v) ? v.join(', ') : v;
    }
    const start = clock();
    const upstream = new WebSocket(wsUrl, { headers: upstreamHeaders, protocols } as unknown as string[]);
    upstream.binaryType = 'arraybuffer';
    const tunnel: Tunnel = { upstream, early: [], client: undefined };
    const outcome = await new Promise<'open' | 'error' | 'timeout'>((resolve) => {
      const timer = setTimeout(() => resolve('timeout'), t.timeoutMs);
      upstream.addEventListener('open', () => {
        clearTimeout(timer);
        resolve('open');
      });
      upstream.addEventListener('error', () => {
        clearTimeout(timer);
        resolve('error');
      });
      upstream.addEventListener('close', () => {
        clearTimeout(timer);
        resolve('error');
      });
    });
    rec.upstreamMs = clock() - start;
    if (outcome !== 'open') {
      try {
        upstream.close();
      } catch {
        /* already closed */
      }
      const code = outcome === 'timeout' ? 'upstream_timeout' : 'upstream_unavailable';
      metrics.observeUpstream({ route: routeId, upstream: upstreamName, seconds: rec.upstreamMs / 1000, error: code });
      return refusal(rec, g, new GatewayError(code, { why: 'websocket handshake' }), own, 'upstream_error');
    }
    metrics.observeUpstream({ route: routeId, upstream: upstreamName, seconds: rec.upstreamMs / 1000 });
    upstream.addEventListener('message', (ev: MessageEvent) => {
      const data = ev.data as string | ArrayBuffer;
      if (tunnel.client) tunnel.client.send(typeof data === 'string' ? data : new Uint8Array(data));
      else tunnel.early.push(data);
    });
    upstream.addEventListener('close', (ev: Event) => {
      const { code, reason } = ev as Event & { code: number; reason: string };
      tunnel.client?.close(safeCloseCode(code), reason);
    });
    const upgradeHeaders: Record<string, string> = { ...own };
    if (upstream.protocol) upgradeHeaders['sec-websocket-protocol'] = upstream.protocol;
    if (!server.upgrade<Tunnel>(req, { headers: upgradeHeaders, data: tunnel })) {
      upstream.close();
      return refusal(rec, g, new GatewayError('bad_request', { why: 'not a valid WebSocket handshake' }), own, 'denied');
    }
    rec.status = 101;
    return undefined;
  }

  const lc = cfg0.listen;
  const serveOptions = (hostname: string, port: number, tls: TlsFiles | undefined): BunServeOptions<Tunnel> => ({
    hostname,
    port,
    // Bun's TLS stack (BoringSSL) refuses anything older than TLS 1.2 by itself; the process
    // tests hold it to that.
    ...(tls ? { tls: { cert: tls.cert, key: tls.key }, reusePort: true } : {}),
    idleTimeout: Math.min(BUN_MAX_IDLE_S, Math.ceil(lc.idle_timeout_ms / 1000)),
    // Bun.serve refuses a body over 128 MiB with a bare 413 by default; the Node door streams any
    // size to the upstream (which decides), and so does this one: the body is a stream either way.
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    development: false,
    fetch(req, server) {
      const g = reloader.current();
      let rec: AccessRecord | undefined;
      try {
        const requestId = requestIdOf(req.headers.get('x-request-id') ?? undefined);
        rec = access.start({ requestId, method: req.method, url: bunTarget(req.url), clientIp: server.requestIP(req)?.address ?? '' });
        const r = rec;
        metrics.inflight.inc();
        const done = (res: Response | undefined): Response | undefined => {
          metrics.inflight.dec();
          access.finish(r, res?.status ?? 101);
          return res;
        };
        const pending: Pending = { bodyEnded: undefined };
        return handle(req, server, r, g, pending).then(
          (res) => {
            if (pending.bodyEnded === undefined) return done(res);
            // The access line waits for the relayed body to end.
            const finish = () => void done(res);
            void pending.bodyEnded.then(finish, finish);
            return res;
          },
          (err: unknown) => done(internalError(r, err)),
        );
      } catch (err) {
        return internalError(rec, err);
      }
    },
    error(err) {
      return internalError(undefined, err);
    },
    websocket: {
      open(ws) {
        const t = ws.data;
        t.client = ws;
        for (const m of t.early) ws.send(typeof m === 'string' ? m : new Uint8Array(m));
        t.early.length = 0;
      },
      message(ws, message) {
        const up = ws.data.upstream;
        if (up.readyState === WebSocket.OPEN) up.send(message);
      },
      close(ws, code, reason) {
        const up = ws.data.upstream;
        try {
          up.close(safeCloseCode(code), reason);
        } catch {
          /* already closing */
        }
      },
    },
  });
  /**
   * A renewed certificate: Bun.serve's reload() ignores `tls`, so a second listener with the new
   * one binds the same address (SO_REUSEPORT) and takes the new connections; the old listener
   * stops accepting and drains what it has, as at shutdown.
   */
  const swapListener = (tls: TlsFiles): void => {
    const old = mainServer!;
    mainServer = bun().serve<Tunnel>(serveOptions(bindHost, old.port, tls));
    draining.add(old);
    void old.stop(false).finally(() => draining.delete(old));
  };
  const bindHost = opts.listen?.host ?? lc.host;
  mainServer = bun().serve<Tunnel>(serveOptions(bindHost, opts.listen?.port ?? lc.port, tls0));
  if (tls0) logger.info(describeTls(tls0), 'TLS certificate loaded');
  const url = `${proto}://${mainServer.hostname.includes(':') ? `[${mainServer.hostname}]` : mainServer.hostname}:${mainServer.port}`;

  const readiness = (): Promise<ReadinessCheck[]> => readinessOf(reloader.current());
  let adminServer: BunServer | undefined;
  let adminUrl: string | undefined;
  if (opts.admin !== false && cfg0.admin.enabled) {
    const adminApp = createAdminApp({ metrics, readiness, isShuttingDown: () => shuttingDown });
    adminServer = bun().serve({
      hostname: opts.admin?.host ?? cfg0.admin.host,
      port: opts.admin?.port ?? cfg0.admin.port,
      development: false,
      fetch: (req) => adminApp.fetch(req),
    });
    adminUrl = `http://${adminServer.hostname.includes(':') ? `[${adminServer.hostname}]` : adminServer.hostname}:${adminServer.port}`;
  }

  const shutdown = async (): Promise<void> => {
    if (shuttingDown) return;
    shuttingDown = true;
    const timeout = reloader.current().loaded.config.shutdown_timeout_ms;
    // stop(false): no new connections, in-flight requests finish; then bounded by the timeout.
    const listeners = [mainServer!, ...draining];
    const drained = Promise.all(listeners.map((s) => s.stop(false))).then(() => 'drained' as const);
    const timer = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), timeout).unref?.());
    const outcome = await Promise.race([drained, timer]);
    if (outcome === 'timeout') {
      logger.warn({ timeout_ms: timeout }, 'drain timed out; closing remaining connections');
      await Promise.all(listeners.map((s) => s.stop(true)));
    }
    const last = reloader.current();
    await last.forwarder.close();
    await last.store.close().catch(() => undefined);
    await last.tokenService?.close().catch(() => undefined);
    await host?.close().catch((e: unknown) => logger.warn({ err: (e as Error).message }, 'token store close failed'));
    if (adminServer) await adminServer.stop(true);
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

/** Close codes a peer may send on (RFC 6455 §7.4): 1005/1006/1015 are never sent. */
function safeCloseCode(code: number): number {
  if (code === 1000 || (code >= 1001 && code <= 1014 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999)) return code;
  return 1000;
}
