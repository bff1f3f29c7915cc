/**
 * scopegate as a Hono middleware (SPEC §8 "Hono middleware"): the gateway's one decision
 * (core/decide.ts) in front of a Hono application's own routes, on any runtime Hono runs on.
 *
 *  - `scopegate(options)` validates its options once, synchronously (options.ts): a bad config
 *    throws `ScopegateConfigError` with the issues `scopegate check` prints. The token verifier is
 *    built on the first request (one shared promise; `await mw.ready()` builds it at start-up).
 *  - The decision sees the request target as `c.req.url` gives it (path and query from where
 *    Hono's router starts its path, http/url-target.ts): a WHATWG-normalised URL, so — as with the Bun door —
 *    dot segments and `\` were resolved by the runtime before the route table sees them (the app
 *    routes the same spelling). A relative `c.req.url` (Bun.serve, no usable Host) is refused 400.
 *  - Denied: the §2 response (status, envelope, WWW-Authenticate, Allow, Retry-After, rate-limit
 *    headers, X-Request-Id) and the handler never runs. auth_test: the 202, handler never runs.
 *  - Allowed: `c.get('scopegate')` is the principal, `next()` runs, then the rate-limit headers
 *    are set on the application's response. A public route: `next()` with no principal.
 *  - Repeated `Authorization` fields reach a Fetch `Request` merged (`Bearer a, Bearer b`); the
 *    merged value is handed over as one, and token extraction refuses it (400 `token_conflict`).
 *
 * Imports nothing Node-only and no `node:` module: the memory store is plain JS, the Redis store
 * (ioredis) is loaded with a dynamic import only when `rate_limit.store: redis`, and files and
 * node:crypto are asked of the runtime (src/builtin.ts) only when the config names a file; the
 * bundle runs with Web globals alone (test/doors/hono-bundle.test.ts, docs/hono-middleware.md).
 *
 * @example
 *   import { Hono } from 'hono';
 *   import { scopegate } from 'scopegate/hono';
 *
 *   const app = new Hono();
 *   app.use('/v2/*', scopegate({ configFile: 'config/hono.yaml' }));
 *   app.get('/v2/room/:room', (c) => c.json({ room: c.req.param('room'), by: c.get('scopegate')?.subject }));
 */
import type { Context, MiddlewareHandler } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { createTokenVerifier, type TokenVerifier } from '../../auth/verify-token.js';
import type { LoadedConfig } from '../../config/parse.js';
import { createDecider, type Decider, type Decision, type RequestFacts } from '../../core/decide.js';
import { ConfigError, GatewayError, renderError, type RenderOptions } from '../../errors.js';
import { targetOfUrl } from '../../http/url-target.js';
import { createMemoryStore } from '../../ratelimit/memory-store.js';
import { createRateLimiter } from '../../ratelimit/policy.js';
import type { RateLimitStore } from '../../ratelimit/store.js';
import type { Clock, Principal } from '../../types.js';
import { compileOptions, ScopegateConfigError, type ScopegateOptions } from './options.js';

export { ScopegateConfigError } from './options.js';
export type { FileOptions, InlineOptions, RuntimeOptions, ScopegateOptions } from './options.js';

/** What `c.get('scopegate')` holds on an allowed request (undefined on a public route). */
export interface ScopegatePrincipal {
  /** The token's subject (`claims.subject`, default `sub`); undefined only when the token has none. */
  readonly subject: string | undefined;
  /** `group`, `room`, `user` (after `client_type_map`), or what else the token said. */
  readonly clientType: string;
  readonly scopes: readonly string[];
  readonly room?: string;
  readonly roomName?: string;
  readonly group?: string;
  readonly tokenId?: string;
  /** The token's `iss`; for an issuer matched without `iss`, its configured name. */
  readonly issuer: string;
  /** The matched route's id (its `id`, else its path pattern; `fallback` for `fallback: authenticated`). */
  readonly route: string;
}

declare module 'hono' {
  interface ContextVariableMap {
    /** Set by the scopegate middleware on an allowed request; undefined on public routes. */
    scopegate: ScopegatePrincipal | undefined;
  }
}

/** The middleware, plus its lifecycle. */
export interface ScopegateMiddleware extends MiddlewareHandler {
  /** Builds the verifier (reads and parses key files) now; rejects with ScopegateConfigError. */
  ready(): Promise<void>;
  /** Closes the rate-limit store (a Redis connection); the middleware answers 500 afterwards. */
  close(): Promise<void>;
}

interface Core {
  decider: Decider;
  verifier: TokenVerifier;
  store: RateLimitStore;
}

/** A valid incoming X-Request-Id is kept (the proxy doors' rule), else a new UUID. */
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

/**
 * Builds the middleware. Throws ScopegateConfigError (synchronously) for any problem with the
 * options; never for a request.
 */
export function scopegate(options: ScopegateOptions): ScopegateMiddleware {
  const { loaded, runtime } = compileOptions(options);
  const { clock, onError } = runtime;
  const clientIp = runtime.clientIp ?? connectionAddress;
  const renderOpts: RenderOptions = { realm: loaded.config.realm, docsUrl: loaded.config.docs_url };

  let core: Core | undefined;
  let building: Promise<Core> | undefined;
  let closed = false;
  const getCore = (): Core | Promise<Core> => core ?? (building ??= buildCore(loaded, clock, onError, runtime.isRevoked).then((k) => (core = k)));

  let reported: unknown;
  const fail = (c: Context, requestId: string, err: unknown): Response => {
    // A build failure rejects every request with the same error: told once.
    if (err !== reported) onError(err instanceof Error ? err : new Error(String(err)));
    reported = err;
    const r = renderError(new GatewayError('internal_error'), renderOpts);
    return c.body(r.body, r.status as ContentfulStatusCode, { ...r.headers, 'x-request-id': requestId });
  };

  const middleware = async function scopegateMiddleware(c: Context, next: () => Promise<void>): Promise<Response | void> {
    const incomingId = c.req.header('x-request-id');
    const requestId = incomingId !== undefined && REQUEST_ID.test(incomingId) ? incomingId : globalThis.crypto.randomUUID();
    if (closed) return fail(c, requestId, new Error('the scopegate middleware was closed'));
    let d: Decision;
    let k: Core;
    try {
      const got = getCore();
      k = got instanceof Promise ? await got : got;
      const facts = factsOf(c, clientIp);
      if (facts === null) {
        const r = renderError(new GatewayError('bad_request', { why: 'no usable Host: the server handed over a relative URL' }), renderOpts);
        return c.body(r.body, r.status as ContentfulStatusCode, { ...r.headers, 'x-request-id': requestId });
      }
      const decided = k.decider.decide(facts);
      d = decided instanceof Promise ? await decided : decided;
    } catch (e) {
      return fail(c, requestId, e);
    }
    if (d.kind !== 'forward') {
      const r = k.decider.render(d);
      return c.body(r.body, r.status as ContentfulStatusCode, { ...r.headers, 'x-request-id': requestId });
    }
    c.set('scopegate', d.principal ? principalOf(d.principal, d.route.id) : undefined);
    await next();
    const headers = d.responseHeaders;
    const names = Object.keys(headers);
    if (names.length === 0 && c.res.headers.has('x-request-id')) return;
    try {
      setHeaders(c.res.headers, headers, requestId);
    } catch {
      // An immutable response (e.g. one returned from fetch()): copy it, then set.
      c.res = new Response(c.res.body, c.res);
      setHeaders(c.res.headers, headers, requestId);
    }
  };

  return Object.assign(middleware as MiddlewareHandler, {
    async ready(): Promise<void> {
      await getCore();
    },
    async close(): Promise<void> {
      closed = true;
      const k = core ?? (building ? await building.catch(() => undefined) : undefined);
      await k?.store.close();
    },
  });
}

function setHeaders(h: Headers, rate: Readonly<Record<string, string>>, requestId: string): void {
  for (const name in rate) h.set(name, rate[name]!);
  if (!h.has('x-request-id')) h.set('x-request-id', requestId);
}

/** The request as the decision needs it, from what a Fetch `Request` keeps; null when `c.req.url` is not absolute (http/url-target.ts). */
function factsOf(c: Context, clientIp: (c: Context) => string): RequestFacts | null {
  const target = targetOfUrl(c.req.url);
  if (target === null) return null;
  const auth = c.req.header('authorization');
  let ip = '';
  try {
    ip = clientIp(c);
  } catch {
    ip = '';
  }
  return {
    method: c.req.method,
    target,
    // A Fetch Headers object merges repeated fields with ", ": extractToken splits that and refuses two tokens.
    authorization: auth === undefined ? undefined : [auth],
    // The runtime's HTTP server checked Host; an in-process app.request() has none.
    hostCount: undefined,
    httpVersion: undefined,
    clientIp: typeof ip === 'string' ? ip : '',
  };
}

/**
 * The connection's address where the adapter exposes it without an import: @hono/node-server
 * (`c.env.incoming`), Bun (`c.env.requestIP`), Deno (`c.env.remoteAddr`); else ''.
 */
function connectionAddress(c: Context): string {
  const env = c.env as
    | {
        incoming?: { socket?: { remoteAddress?: unknown } };
        server?: { incoming?: { socket?: { remoteAddress?: unknown } } };
        requestIP?: (r: Request) => { address?: unknown } | null;
        remoteAddr?: { hostname?: unknown };
      }
    | undefined;
  if (!env || typeof env !== 'object') return '';
  const node = (env.incoming ?? env.server?.incoming)?.socket?.remoteAddress;
  if (typeof node === 'string') return node;
  if (typeof env.requestIP === 'function') {
    const a = env.requestIP(c.req.raw)?.address;
    if (typeof a === 'string') return a;
  }
  const deno = env.remoteAddr?.hostname;
  return typeof deno === 'string' ? deno : '';
}

/** The principal as the application sees it: plain, frozen, optional fields only when present. */
function principalOf(p: Principal, route: string): ScopegatePrincipal {
  const out: { -readonly [K in keyof ScopegatePrincipal]: ScopegatePrincipal[K] } = {
    subject: p.subject,
    clientType: p.clientType,
    scopes: Object.freeze([...p.scopes]),
    issuer: p.iss ?? p.issuerName,
    route,
  };
  if (p.room !== undefined) out.room = p.room;
  if (p.roomName !== undefined) out.roomName = p.roomName;
  if (p.group !== undefined) out.group = p.group;
  if (p.tokenId !== undefined) out.tokenId = p.tokenId;
  return Object.freeze(out);
}

async function buildCore(loaded: LoadedConfig, clock: Clock, onError: (e: Error) => void, isRevoked: ((tokenId: string) => boolean) | undefined): Promise<Core> {
  const cfg = loaded.config;
  let verifier: TokenVerifier;
  try {
    verifier = await createTokenVerifier(cfg.tokens, { clock, baseDir: loaded.baseDir });
  } catch (e) {
    // A key file that exists but does not parse: the same words `serve` would fail with.
    if (e instanceof ConfigError) throw new ScopegateConfigError(e.issues, loaded.file);
    throw e;
  }
  const store = await makeStore(cfg.rate_limit, clock, onError);
  const limiter = createRateLimiter(cfg.rate_limit, { store, clock });
  const decider = createDecider(loaded, {
    clock,
    verifier,
    limiter,
    isRevoked,
    observer: {
      storeError: (err, refused) =>
        onError(new Error(`rate-limit store error; ${refused ? 'refusing (on_store_error: closed)' : 'allowing (on_store_error: open)'}: ${err.message}`)),
    },
  });
  return { decider, verifier, store };
}

async function makeStore(r: LoadedConfig['config']['rate_limit'], clock: Clock, onError: (e: Error) => void): Promise<RateLimitStore> {
  if (r.enabled && r.store === 'redis') {
    // ioredis is Node-only-ish: loaded only when the config asks for it.
    const { createRedisStore } = await import('../../ratelimit/redis-store.js');
    return createRedisStore({
      ...(r.redis_cluster ? { cluster: r.redis_cluster } : { url: r.redis_url! }),
      keyPrefix: r.key_prefix,
      timeoutMs: r.redis_timeout_ms,
      onError: (err: Error) => onError(new Error(`redis rate-limit store error: ${err.message}`)),
    });
  }
  return createMemoryStore({ maxKeys: r.max_keys, clock });
}

