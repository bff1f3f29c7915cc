/**
 * createApp(loaded, deps): the one place where the pipeline order is written (SPEC §1).
 *
 *   observe ⟮ path safety + route match → token → verify → authorize → auth_test → rate limit → proxy ⟯
 *
 * Every stage is a pure module (routing/, auth/, authz/, ratelimit/, proxy/). Hono runs two
 * middlewares: `observe` (request id, metrics, access line) around `pipeline`, which calls the
 * stages in order and awaits only where one really waits. Each stage refuses by throwing a GatewayError; `onError`
 * renders it through errors.ts, the one code → HTTP table. Request bodies are never read here:
 * the proxy stage streams the Node request straight to undici and answers RESPONSE_ALREADY_SENT.
 *
 * @example
 *   const gw = createApp(loaded, { clock, logger, metrics, verifier, limiter, forwarder });
 *   http.createServer(getRequestListener(gw.fetch)).on('upgrade', gw.handleUpgrade);
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { HttpBindings } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { Hono, type Context, type MiddlewareHandler } from 'hono';
import type { Logger } from 'pino';
import { extractToken, type ExtractOptions } from './auth/extract-token.js';
import type { TokenVerifier } from './auth/verify-token.js';
import { authorize, isAuthTest } from './authz/authorize.js';
import type { LoadedConfig } from './config/load.js';
import { GatewayError, isGatewayError, renderError, type ErrorCode, type RenderOptions } from './errors.js';
import type { Decision, Metrics } from './observability/metrics.js';
import { accessLogger, redactUrl } from './observability/logger.js';
import { buildUpstreamHeaders, stripQueryParams } from './proxy/upstream-headers.js';
import type { Forwarder } from './proxy/forward.js';
import type { LimitDecision, RateLimiter } from './ratelimit/policy.js';
import { checkPathSafety } from './routing/path-safety.js';
import { matchRoute } from './routing/match-route.js';
import type { Clock, CompiledRoute, Principal } from './types.js';

export const AUTH_TEST_BODY = JSON.stringify({
  success: { code: 202, message: 'This auth_token has access to use this method.', type: 'Accepted' },
});

export interface AppDeps {
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  verifier: TokenVerifier;
  limiter: RateLimiter;
  forwarder: Forwarder;
}

/** Per-request state, one mutable object shared by the stages of one request. */
export interface RequestState {
  requestId: string;
  startMs: number;
  method: string;
  rawPath: string;
  rawQuery: string;
  route: CompiledRoute | null;
  params: Record<string, string>;
  token: string | undefined;
  tokenSource: 'header' | 'query' | undefined;
  principal: Principal | undefined;
  limitKey: string | undefined;
  /** Headers every response of this request carries (request id, rate-limit state). */
  responseHeaders: Record<string, string>;
  decision: Decision;
  reason: ErrorCode | undefined;
  status: number | undefined;
  upstreamMs: number | undefined;
  upgrade: { socket: Duplex; head: Buffer } | undefined;
  /** Read at arrival: undici may detach the socket from the request after an upstream error. */
  clientIp: string;
}

type Env = { Bindings: HttpBindings & { upgrade?: { socket: Duplex; head: Buffer } }; Variables: { rc: RequestState } };

export interface Gateway {
  /** Hono's fetch, for @hono/node-server's getRequestListener (or app.request in tests). */
  fetch: (req: Request, env: Env['Bindings']) => Response | Promise<Response>;
  /** The Node server's 'upgrade' listener: the same pipeline, then http-proxy's ws. */
  handleUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  readonly loaded: LoadedConfig;
}

const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

/** The request id of a request: a valid incoming X-Request-Id is kept, else a new UUID. */
export function requestIdOf(given: string | string[] | undefined): string {
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
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
const FALLBACK_ROUTE_ID = 'fallback';
/** Shared by requests whose route has no parameters; never written to. */
const NO_PARAMS: Record<string, string> = Object.freeze({}) as Record<string, string>;

/**
 * Every Authorization value as sent. `req.headers` silently keeps only the first of repeated
 * Authorization headers; `headersDistinct` would build arrays for every header on every request.
 */
function authorizationValues(req: IncomingMessage): string[] | undefined {
  const raw = req.rawHeaders;
  let out: string[] | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    if (name.length === 13 && name.toLowerCase() === 'authorization') (out ??= []).push(raw[i + 1]!);
  }
  return out;
}

export function createApp(loaded: LoadedConfig, deps: AppDeps): Gateway {
  const { config, routes } = loaded;
  const { clock, logger, metrics, verifier, limiter, forwarder } = deps;
  const renderOpts: RenderOptions = { realm: config.realm, docsUrl: config.docs_url };
  const extractOpts: ExtractOptions = {
    sources: config.tokens.sources,
    queryParam: config.tokens.query_param,
    maxTokenBytes: config.tokens.max_token_bytes,
  };
  const stripParams: ReadonlySet<string> = new Set([config.tokens.query_param, 'auth_test']);
  const redactParams = [config.tokens.query_param];
  const access = accessLogger(logger);
  const fallbackRoute: CompiledRoute | null =
    config.fallback === 'authenticated'
      ? { id: FALLBACK_ROUTE_ID, config: { path: '/*', public: false }, methods: null, params: [], upstream: 'default', index: -1 }
      : null;

  // ── observe: request id, timing, metrics and the access log line, around everything ────────
  const observe: MiddlewareHandler<Env> = async (c, next) => {
    const incoming = c.env.incoming;
    const url = incoming.url ?? '/';
    const q = url.indexOf('?');
    const requestId = requestIdOf(incoming.headers['x-request-id']);
    // Every field is present from the start: one object shape for every request.
    const rc: RequestState = {
      requestId,
      startMs: clock(),
      method: incoming.method ?? 'GET',
      rawPath: q === -1 ? url : url.slice(0, q),
      rawQuery: q === -1 ? '' : url.slice(q + 1),
      route: null,
      params: NO_PARAMS,
      token: undefined,
      tokenSource: undefined,
      principal: undefined,
      limitKey: undefined,
      responseHeaders: { 'x-request-id': requestId },
      decision: 'denied',
      reason: undefined,
      status: undefined,
      upstreamMs: undefined,
      upgrade: c.env.upgrade,
      clientIp: incoming.socket?.remoteAddress ?? '',
    };
    c.set('rc', rc);
    metrics.inflight.inc();
    try {
      await next();
    } finally {
      metrics.inflight.dec();
      const status = rc.status ?? c.res.status;
      const elapsedMs = clock() - rc.startMs;
      const routeId = rc.route?.id ?? 'unmatched';
      metrics.observeRequest({ route: routeId, method: rc.method, status, decision: rc.decision, seconds: elapsedMs / 1000, reason: rc.reason });
      if (access.isLevelEnabled('info')) access.info(
        {
          request_id: rc.requestId,
          method: rc.method,
          path: redactUrl(url, redactParams),
          route: routeId,
          status,
          decision: rc.decision,
          reason: rc.reason,
          duration_ms: Math.round(elapsedMs * 1000) / 1000,
          upstream_ms: rc.upstreamMs,
          token_id: rc.principal?.tokenId,
          subject: rc.principal?.subject,
          client_type: rc.principal?.clientType,
          limit_key: rc.limitKey,
          client_ip: rc.clientIp,
        },
        'request',
      );
    }
  };

  // ── the pipeline, in SPEC §1's order; a stage refuses by throwing a GatewayError ────────────
  // One Hono handler runs the stages in sequence, awaiting only where a stage really waits (a
  // token not yet in the cache, a Redis round trip, the upstream): a middleware per stage cost
  // an extra promise and microtask turn each, measurable at proxy speed.
  const pipeline: MiddlewareHandler<Env> = async (c) => {
    const rc = c.get('rc');
    // 1–2: path safety, route match
    route(rc);
    if (rc.route!.config.public) {
      rc.decision = 'public';
      return proxy(c, rc);
    }
    // 3–4: token extraction and verification (synchronous for a token already in the cache)
    extract(c.env.incoming, rc);
    rc.principal = verifier.cached(rc.token!) ?? (await verifier.verify(rc.token!));
    // 5: client type, scopes, room binding; a refusal still spends one unit of budget
    const denied = rc.route!.id === FALLBACK_ROUTE_ID ? null : authorize(rc.route!, rc.principal, rc.params);
    if (denied) {
      const spent = limit(rc, true, false);
      if (spent) await spent;
      throw denied;
    }
    // 6: auth_test probes are answered here, reading the budget without spending it
    if (isAuthTest(rc.rawQuery)) {
      const read = limit(rc, false, true);
      if (read) await read;
      rc.decision = 'auth_test';
      rc.status = 202;
      return new Response(AUTH_TEST_BODY, { status: 202, headers: { 'content-type': 'application/json', ...rc.responseHeaders } });
    }
    // 7: rate limit
    const counted = limit(rc, true, true);
    if (counted) await counted;
    // 8: proxy
    rc.decision = 'allowed';
    return proxy(c, rc);
  };

  function route(rc: RequestState): void {
    if (!rc.rawPath.startsWith('/')) throw new GatewayError('bad_request', { why: 'request target must be an absolute path' });
    const unsafe = checkPathSafety(rc.rawPath);
    if (unsafe) throw new GatewayError('bad_request', { why: unsafe });
    const m = matchRoute(routes, rc.method, rc.rawPath);
    if (m.kind === 'match') {
      rc.route = m.route;
      rc.params = m.params;
    } else if (fallbackRoute) {
      rc.route = fallbackRoute;
    } else if (m.kind === 'method_not_allowed') {
      throw new GatewayError('method_not_allowed', { allow: m.allow });
    } else {
      throw new GatewayError('route_not_found');
    }
  }

  function extract(incoming: IncomingMessage, rc: RequestState): void {
    const { token, source } = extractToken(authorizationValues(incoming), rc.rawQuery, extractOpts);
    rc.token = token;
    rc.tokenSource = source;
  }

  /** Counts (or, for auth_test, reads) the request's windows; a promise only when the store is remote. */
  function limit(rc: RequestState, consume: boolean, enforce: boolean): Promise<void> | undefined {
    const d = limiter.check({ principal: rc.principal!, token: rc.token!, route: rc.route, params: rc.params, consume });
    if (d instanceof Promise) return d.then((decided) => applyLimit(rc, decided, enforce));
    applyLimit(rc, d, enforce);
    return undefined;
  }

  function applyLimit(rc: RequestState, d: LimitDecision, enforce: boolean): void {
    rc.limitKey = d.key;
    Object.assign(rc.responseHeaders, d.headers);
    if (d.storeError) {
      metrics.rateLimitStoreErrors.inc({ store: limiter.store.kind });
      logger.warn(
        { request_id: rc.requestId, err: d.storeError.message },
        d.error ? 'rate-limit store error; refusing (on_store_error: closed)' : 'rate-limit store error; forwarding (on_store_error: open)',
      );
    }
    if (enforce && d.error) {
      if (d.limited) metrics.rateLimited.inc({ route: rc.route?.id ?? 'unmatched', kind: d.limited });
      throw d.error;
    }
  }

  // ── 8: proxy (HTTP through undici, WebSocket through http-proxy) ────────────────────────────
  async function proxy(c: Context<Env>, rc: RequestState): Promise<Response> {
    const incoming = c.env.incoming;
    const query = stripQueryParams(rc.rawQuery, stripParams);
    const opts = {
      upstream: rc.route!.upstream,
      pathAndQuery: query ? `${rc.rawPath}?${query}` : rc.rawPath,
      headers: buildUpstreamHeaders(incoming.headers, {
        identityPrefix: config.tokens.identity_header_prefix,
        principal: rc.principal,
        token: rc.token,
        forwardToken: config.tokens.forward_token,
        requestId: rc.requestId,
        clientIp: rc.clientIp,
        proto: 'http',
        host: incoming.headers.host,
      }),
      responseHeaders: rc.responseHeaders,
    };
    // Public routes check no token, so whatever credentials the client sent (e.g. Basic for a
    // token endpoint) are the upstream's business and pass through untouched.
    if (!rc.principal && incoming.headers.authorization !== undefined) opts.headers['authorization'] = incoming.headers.authorization;
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
    const result = await forwarder.forward(incoming, c.env.outgoing, opts);
    rc.status = result.status;
    rc.upstreamMs = result.upstreamMs;
    const upstreamError = result.error?.code === 'upstream_unavailable' || result.error?.code === 'upstream_timeout' ? result.error.code : undefined;
    // Duration until response headers, or until the failure: both are what the upstream cost.
    metrics.observeUpstream({
      route: rc.route!.id,
      upstream: rc.route!.upstream,
      ...(result.aborted ? {} : { seconds: result.upstreamMs / 1000 }),
      ...(upstreamError ? { error: upstreamError } : {}),
    });
    if (result.error) {
      rc.decision = 'upstream_error';
      rc.reason = result.error.code;
    }
    return RESPONSE_ALREADY_SENT;
  }

  const app = new Hono<Env>();
  app.all('*', observe, pipeline);

  app.onError((err, c) => {
    const rc = c.get('rc');
    let gerr: GatewayError;
    if (isGatewayError(err)) {
      gerr = err;
      if (gerr.code === 'keys_unavailable' || gerr.status >= 500) {
        logger.warn({ request_id: rc?.requestId, reason: gerr.code, why: gerr.detail.why }, 'gateway refused with 5xx');
      }
    } else {
      logger.error({ request_id: rc?.requestId, err }, 'unexpected error in pipeline');
      gerr = new GatewayError('internal_error');
    }
    const r = renderError(gerr, renderOpts);
    if (rc) {
      rc.status = r.status;
      rc.reason = gerr.code;
      rc.decision = 'denied';
    }
    return new Response(r.body, { status: r.status, headers: { ...r.headers, ...(rc?.responseHeaders ?? {}) } });
  });

  // Hono answers HEAD by running the GET handler and rebuilding the Response, which loses
  // RESPONSE_ALREADY_SENT. The stages read the method from the Node request, so Hono may see GET.
  const fetch = (req: Request, env: Env['Bindings']) => app.fetch(req.method === 'HEAD' ? new Request(req.url, { method: 'GET' }) : req, env);

  const handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const request = new Request(`http://gateway${req.url?.startsWith('/') ? '' : '/'}${req.url ?? '/'}`, { method: req.method ?? 'GET' });
    Promise.resolve(app.fetch(request, { incoming: req, outgoing: undefined as never, upgrade: { socket, head } }))
      .then(async (res) => {
        if (res === RESPONSE_ALREADY_SENT || res.headers.get('x-hono-already-sent')) return;
        endSocketWithResponse(socket, res.status, res.headers.entries(), Buffer.from(await res.arrayBuffer()));
      })
      .catch((err: unknown) => {
        logger.error({ err }, 'upgrade pipeline failed');
        socket.destroy();
      });
  };

  return { fetch, handleUpgrade, loaded };
}
