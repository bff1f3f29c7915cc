/**
 * The Node proxy door (SPEC §8): @hono/node-server in front, the decision (core/decide.ts) in
 * the middle, undici / http-proxy behind. This file only translates: a Node request into
 * `RequestFacts`, a decision into a response or a forwarded exchange. The pipeline order lives
 * in core/decide.ts, the error table in errors.ts.
 *
 *   observe ⟮ facts → decide → forward (undici / ws) | answer 202 | deny (errors.ts) ⟯
 *
 * `observe` keeps the request id, the metrics and the one access line per request, whatever
 * happens inside. Request bodies are never read here: the proxy stage streams the Node request
 * straight to undici and answers RESPONSE_ALREADY_SENT.
 *
 * @example
 *   const gw = createApp(loaded, { clock, logger, metrics, decider, forwarder, trusted });
 *   http.createServer(getRequestListener(gw.fetch)).on('upgrade', gw.handleUpgrade);
 */
import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { HttpBindings } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { Hono, type Context, type MiddlewareHandler } from 'hono';
import type { Logger } from 'pino';
import type { LoadedConfig } from './config/load.js';
import { AUTH_TEST_BODY, type Decider, type Decision, type ForwardDecision, type RequestFacts } from './core/decide.js';
import { GatewayError, renderError, type RenderOptions } from './errors.js';
import type { CidrList } from './net/cidr.js';
import { createAccessLog, requestIdOf, type AccessRecord } from './gateway/access.js';
import type { ForwardAuth } from './doors/forward-auth/handler.js';
import { recordForwardAuth, recordServiceOutcome, serviceFor } from './gateway/service-route.js';
import type { TokenService } from './token-service/service.js';

export { requestIdOf };
import type { Metrics } from './observability/metrics.js';
import { buildUpstreamHeaders } from './proxy/upstream-headers.js';
import type { Forwarder } from './proxy/forward.js';
import type { Clock } from './types.js';

export { AUTH_TEST_BODY };

export interface AppDeps {
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  decider: Decider;
  forwarder: Forwarder;
  /** `trusted_proxies`, compiled: whose X-Forwarded-* are kept. */
  trusted: CidrList;
  /** The token service (SPEC §9), answered before the route table. */
  tokenService?: TokenService | undefined;
  /** The forward-auth endpoint (SPEC §8), answered before everything else. */
  forwardAuth?: ForwardAuth | undefined;
}

/** Per-request state: the access record plus what only this door needs. */
export interface RequestState extends AccessRecord {
  /** Headers every response of this request carries (request id, rate-limit state). */
  responseHeaders: Record<string, string>;
  upgrade: { socket: Duplex; head: Buffer } | undefined;
}

type Env = { Bindings: HttpBindings & { upgrade?: { socket: Duplex; head: Buffer } }; Variables: { rc: RequestState } };

export interface Gateway {
  /** Hono's fetch, for @hono/node-server's getRequestListener (or app.request in tests). */
  fetch: (req: Request, env: Env['Bindings']) => Response | Promise<Response>;
  /** The Node server's 'upgrade' listener for WebSocket upgrades: the same decision, then http-proxy's ws. */
  handleUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  readonly loaded: LoadedConfig;
}

/**
 * Writes a whole HTTP/1.1 response straight to a socket and closes it: for answers given where no
 * ServerResponse exists (refused WebSocket upgrades, requests Node's parser rejected).
 */
export function endSocketWithResponse(socket: Duplex, status: number, headers: Iterable<[string, string]>, body: Buffer | string): void {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`];
  for (const [k, v] of headers) lines.push(`${k}: ${v}`);
  lines.push(`content-length: ${bytes.length}`, 'connection: close', '', '');
  socket.end(Buffer.concat([Buffer.from(lines.join('\r\n')), bytes]));
}

/**
 * Marks HTTP/1.0 requests that came without Host: the listener gives them a placeholder so
 * @hono/node-server can build its URL; it is never forwarded as X-Forwarded-Host.
 */
export const HOST_PLACEHOLDER: WeakSet<IncomingMessage> = new WeakSet();

/** Marks requests that sent `Expect: 100-continue` (server.ts' checkContinue listener). */
export const EXPECTS_CONTINUE: WeakSet<IncomingMessage> = new WeakSet();

/**
 * The facts of a Node request. One pass over the raw headers: `req.headers` silently keeps only
 * the first of repeated Authorization and Host headers.
 */
export function nodeFacts(req: IncomingMessage, clientIp: string): RequestFacts {
  const raw = req.rawHeaders;
  let authorization: string[] | undefined;
  let hostCount = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 13) {
      if (name.toLowerCase() === 'authorization') (authorization ??= []).push(raw[i + 1]!);
    } else if (name.length === 4 && name.toLowerCase() === 'host') hostCount++;
  }
  return { method: req.method ?? 'GET', target: req.url ?? '/', authorization, hostCount, httpVersion: req.httpVersion, clientIp };
}

function pathOf(target: string): string {
  const q = target.indexOf('?');
  return q === -1 ? target : target.slice(0, q);
}

/** `https` when the request came over TLS (`listen.tls`): X-Forwarded-Proto, the token service's base URL and cookies. */
export function protoOf(req: IncomingMessage): 'http' | 'https' {
  return (req.socket as TLSSocket | null)?.encrypted === true ? 'https' : 'http';
}

/** HTTP/1.1 requests carry a body only when they say so (RFC 9112 §6.3). */
export function hasRequestBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const len = req.headers['content-length'];
  return len !== undefined && len !== '0';
}

export function createApp(loaded: LoadedConfig, deps: AppDeps): Gateway {
  const { config } = loaded;
  const { clock, logger, metrics, decider, forwarder, trusted, tokenService, forwardAuth } = deps;
  const renderOpts: RenderOptions = { realm: config.realm, docsUrl: config.docs_url };
  const access = createAccessLog({ logger, metrics, clock, tokenParam: config.tokens.query_param });

  // ── observe: request id, timing, metrics and the access log line, around everything ────────
  const observe: MiddlewareHandler<Env> = async (c, next) => {
    const incoming = c.env.incoming;
    const requestId = requestIdOf(incoming.headers['x-request-id']);
    // The client ip is read at arrival: undici may detach the socket after an upstream error.
    const rc = access.start({ requestId, method: incoming.method ?? 'GET', url: incoming.url ?? '/', clientIp: incoming.socket?.remoteAddress ?? '' }) as RequestState;
    rc.responseHeaders = { 'x-request-id': requestId };
    rc.upgrade = c.env.upgrade;
    c.set('rc', rc);
    metrics.inflight.inc();
    try {
      await next();
    } finally {
      metrics.inflight.dec();
      access.finish(rc, c.res.status);
    }
  };

  // ── the handler: facts → decision → response; awaits only where the decision waits ──────────
  const handle: MiddlewareHandler<Env> = async (c) => {
    const rc = c.get('rc');
    const incoming = c.env.incoming;
    if (forwardAuth !== undefined && !rc.upgrade && forwardAuth.matches(pathOf(rc.url ?? '/'))) {
      let r = forwardAuth.handle({ method: rc.method, target: rc.url ?? '/', headers: incoming.headersDistinct, clientIp: rc.clientIp, requestId: rc.requestId });
      if (r instanceof Promise) r = await r;
      recordForwardAuth(rc, r);
      return new Response(r.body, { status: r.status, headers: { ...r.headers, 'x-request-id': rc.requestId } });
    }
    if (tokenService !== undefined && !rc.upgrade) {
      const svc = serviceFor(tokenService, rc.method, rc.url ?? '/');
      if (svc) return serveTokenService(c, rc, svc);
    }
    let d: Decision | Promise<Decision> = decider.decide(nodeFacts(incoming, rc.clientIp));
    if (d instanceof Promise) d = await d;
    rc.route = d.route;
    rc.principal = d.principal;
    rc.limitKey = d.limitKey;
    if (d.kind === 'forward') {
      rc.decision = d.outcome;
      // last_used_at of the service's own tokens (throttled inside: one write per token per 10 min).
      if (tokenService !== undefined && d.principal?.tokenId !== undefined && d.principal.issuerName === tokenService.issuerName) tokenService.usage.seen(d.principal.tokenId);
      if (d.responseHeaders !== undefined) Object.assign(rc.responseHeaders, d.responseHeaders);
      return proxy(c, rc, d);
    }
    const r = decider.render(d);
    rc.status = r.status;
    if (d.kind === 'answer') {
      rc.decision = 'auth_test';
    } else {
      rc.decision = 'denied';
      rc.reason = d.error.code;
      if (d.error.status >= 500) logger.warn({ request_id: rc.requestId, reason: d.error.code, why: d.error.detail.why }, 'gateway refused with 5xx');
    }
    const headers: Record<string, string> = { ...r.headers, ...rc.responseHeaders };
    // A refusal is sent at once and the body is not read (no 100 Continue was sent): the
    // connection cannot carry another request after it.
    if (EXPECTS_CONTINUE.has(incoming) && hasRequestBody(incoming) && !incoming.complete) headers['connection'] = 'close';
    return new Response(r.body, { status: r.status, headers });
  };

  // ── the token service's paths: answered by it, before the route table (SPEC §9) ────────────
  async function serveTokenService(c: Context<Env>, rc: RequestState, svc: TokenService): Promise<Response> {
    const incoming = c.env.incoming;
    const res = await svc.handle(c.req.raw, { clientIp: rc.clientIp, proto: protoOf(incoming), host: incoming.headers.host });
    recordServiceOutcome(rc, res);
    res.headers.set('x-request-id', rc.requestId);
    return res;
  }

  // ── 8: proxy (HTTP through undici, WebSocket through http-proxy) ────────────────────────────
  async function proxy(c: Context<Env>, rc: RequestState, d: ForwardDecision): Promise<Response> {
    const incoming = c.env.incoming;
    const opts = {
      upstream: d.upstream,
      pathAndQuery: d.pathAndQuery,
      headers: buildUpstreamHeaders(incoming.headers, {
        identityPrefix: config.tokens.identity_header_prefix,
        principal: d.principal,
        token: d.token,
        forwardToken: config.tokens.forward_token,
        requestId: rc.requestId,
        clientIp: rc.clientIp,
        proto: protoOf(incoming),
        host: HOST_PLACEHOLDER.has(incoming) ? '' : incoming.headers.host,
        trustedPeer: trusted.contains(rc.clientIp),
        underscoreHeaders: config.listen.underscore_headers,
      }),
      responseHeaders: rc.responseHeaders,
    };
    // Public routes check no token, so whatever credentials the client sent (e.g. Basic for a
    // token endpoint) are the upstream's business and pass through untouched.
    if (!d.principal && incoming.headers.authorization !== undefined) opts.headers['authorization'] = incoming.headers.authorization;
    if (rc.upgrade) {
      // The client may have left while its token was being verified: don't open a tunnel for nobody.
      if (rc.upgrade.socket.destroyed) {
        rc.status = 499;
        return RESPONSE_ALREADY_SENT;
      }
      forwarder.upgrade(incoming, rc.upgrade.socket, rc.upgrade.head, opts);
      rc.status = 101;
      return RESPONSE_ALREADY_SENT;
    }
    // Expect: 100-continue is answered only now, once the request is allowed.
    if (EXPECTS_CONTINUE.has(incoming) && !c.env.outgoing.headersSent) c.env.outgoing.writeContinue();
    const result = await forwarder.forward(incoming, c.env.outgoing, opts);
    rc.status = result.status;
    rc.upstreamMs = result.upstreamMs;
    const upstreamError = result.error?.code === 'upstream_unavailable' || result.error?.code === 'upstream_timeout' ? result.error.code : undefined;
    // Duration until response headers, or until the failure: both are what the upstream cost. A
    // client that paused its body too long (request_timeout) cost the upstream nothing measurable.
    metrics.observeUpstream({
      route: d.route.id,
      upstream: d.upstream,
      ...(result.aborted || result.error?.code === 'request_timeout' ? {} : { seconds: result.upstreamMs / 1000 }),
      ...(upstreamError ? { error: upstreamError } : {}),
    });
    if (result.error) {
      rc.decision = result.error.code === 'request_timeout' ? 'denied' : 'upstream_error';
      rc.reason = result.error.code;
    }
    return RESPONSE_ALREADY_SENT;
  }

  const app = new Hono<Env>();
  app.all('*', observe, handle);

  // Only unexpected exceptions land here: every refusal is a decision. They are bugs: logged with
  // their stack, counted, and answered 500 without details.
  app.onError((err, c) => {
    const rc = c.get('rc');
    metrics.internalErrors.inc();
    logger.error({ request_id: rc?.requestId, err }, 'unexpected error in the request handler');
    const r = renderError(new GatewayError('internal_error'), renderOpts);
    if (rc) {
      rc.status = r.status;
      rc.reason = 'internal_error';
      rc.decision = 'denied';
    }
    return new Response(r.body, { status: r.status, headers: { ...r.headers, ...(rc?.responseHeaders ?? {}), connection: 'close' } });
  });

  // Hono answers HEAD by running the GET handler and rebuilding the Response, which loses
  // RESPONSE_ALREADY_SENT. The handler reads the method from the Node request, so Hono may see GET.
  const fetch = (req: Request, env: Env['Bindings']) => app.fetch(req.method === 'HEAD' ? new Request(req.url, { method: 'GET' }) : req, env);

  // Hono only needs a Request to dispatch on; every fact comes from the Node request. A fixed URL
  // and GET keep Request's own validation (forbidden methods, unparseable targets) out of the way.
  const UPGRADE_REQUEST_URL = 'http://gateway/';
  const handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    try {
      Promise.resolve(app.fetch(new Request(UPGRADE_REQUEST_URL), { incoming: req, outgoing: undefined as never, upgrade: { socket, head } }))
        .then(async (res) => {
          if (res === RESPONSE_ALREADY_SENT || res.headers.get('x-hono-already-sent')) return;
          endSocketWithResponse(socket, res.status, res.headers.entries(), Buffer.from(await res.arrayBuffer()));
        })
        .catch((err: unknown) => {
          metrics.internalErrors.inc();
          logger.error({ err }, 'upgrade handler failed');
          socket.destroy();
        });
    } catch (err) {
      metrics.internalErrors.inc();
      logger.error({ err }, 'upgrade handler failed');
      socket.destroy();
    }
  };

  return { fetch, handleUpgrade, loaded };
}
