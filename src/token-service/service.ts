/**
 * The token service (SPEC §9) as one Fetch-API handler, so every door (Node proxy, Bun proxy,
 * Hono middleware) mounts it the same way: ask `matches(method, path)` after path safety and
 * before the route table, and if true answer with `handle(req, facts)`.
 *
 * Its paths (the `SERVICE_ROUTES` table below; the next issue adds sessions, revoke, introspect,
 * personal tokens and the Integration page there):
 *   POST /v2/oauth/token                       HipChat dialect
 *   POST /v1/auth/token                        livedigital dialect
 *   POST /oauth/token                          standard dialect (advertised by the metadata)
 *   GET  /.well-known/jwks.json                the public signing keys ({"keys": []} for HS)
 *   GET  /.well-known/oauth-authorization-server   RFC 8414 metadata
 * `matches` is true for every method on these paths (another method is 405 with Allow), so a
 * route of the table can never shadow them.
 *
 * The token endpoint's body is the only body the gateway ever reads: at most
 * `token_service.max_body_bytes`; beyond that reading stops and the answer is 400
 * `invalid_request`. The body must have the dialect's media type, and the request URL no query
 * (RFC 6749 §2.3.1: credentials never go in the URI, where access logs keep them).
 *
 * @example
 *   const service = await createTokenService(loaded, { store, clock: Date.now, logger, metrics });
 *   if (service.matches(req.method, url.pathname)) return service.handle(req, { clientIp, proto: 'https', host });
 *   serviceOutcome(res); // { route: 'token_hipchat', reason: 'invalid_client' } for the access line
 *   await service.readiness(); // { ok: true }
 *   await service.close();     // stops the purge timer (the store is the caller's to close)
 */
import type { JWK } from 'jose';
import { ConfigError, GatewayError, renderError, type ErrorCode, type RenderOptions } from '../errors.js';
import { clip } from '../clip.js';
import type { LoadedConfig } from '../config/load.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { Clock } from '../types.js';
import { BODY_TYPES, isMediaType, NO_STORE_HEADERS, parseFormBody, parseJsonBody, TOKEN_PATHS, type Dialect, type RenderedResponse } from './dialects.js';
import { createTokenEndpoint, type EndpointSettings, type GrantLabel } from './endpoint.js';
import { createTokenSigner, type KeyRingSource } from './issue.js';
import { createKeyRing, maxTokenLifetimeMs } from './keys.js';
import { authorizationServerMetadata, baseUrlFor, JWKS_PATH, METADATA_PATH, routeScopes } from './metadata.js';
import type { TokenStore } from './store.js';

/** What the door knows about the request beyond the Request object. */
export interface RequestFacts {
  clientIp: string;
  /** `https` when the client came over TLS (or a trusted proxy said so). */
  proto: 'http' | 'https';
  /** The Host the client addressed (the metadata's default base). */
  host: string | undefined;
}

export interface TokenService {
  /** Whether `path` (no query) is one of the service's; true for every method on it. */
  matches(method: string, path: string): boolean;
  handle(req: Request, facts: RequestFacts): Promise<Response>;
  /** The store answers and a signing key is available. */
  readiness(): Promise<{ ok: boolean; error?: string }>;
  /** Stops the purge timer and waits for a running purge. Does not close the store. */
  close(): Promise<void>;
}

export interface TokenServiceDeps {
  store: TokenStore;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  /** The store's key ring; built here (and its first key generated) when the issuer needs one. */
  keyRing?: (KeyRingSource & { ensureKey?(): Promise<void> }) | undefined;
  /** Every this many ms, expired rows are purged (store.purgeExpired); default 60 000, 0 = never. */
  purgeIntervalMs?: number | undefined;
  /** Overrides of the endpoint's tunables (attempt limits, users-URL timeout, client cache). */
  endpoint?: Pick<EndpointSettings, 'attempts' | 'usersTimeoutMs' | 'clientCache'> | undefined;
}

/** What a service response was, for the door's access line and metrics (no body parsing). */
export interface ServiceOutcome {
  /** Bounded id of the service route (`token_hipchat`, `jwks`, ...). */
  route: string;
  /** The refusal code, when the service refused. */
  reason?: ErrorCode | undefined;
  dialect?: Dialect | undefined;
  grant?: GrantLabel | undefined;
  clientId?: string | undefined;
}

/** Every path the service answers (for `scopegate check`'s shadowed-route warning). */
export const SERVICE_PATHS: readonly string[] = [TOKEN_PATHS.hipchat, TOKEN_PATHS.livedigital, TOKEN_PATHS.standard, JWKS_PATH, METADATA_PATH];

const outcomes = new WeakMap<Response, ServiceOutcome>();

/** The outcome of a Response produced by `TokenService.handle`, else undefined. */
export function serviceOutcome(res: Response): ServiceOutcome | undefined {
  return outcomes.get(res);
}

interface ServiceRoute {
  id: string;
  path: string;
  methods: readonly string[];
  /** The dialect whose error format its refusals use (token paths), else the §2 envelope. */
  dialect?: Dialect | undefined;
  run(req: Request, url: URL, facts: RequestFacts): Promise<{ rendered: RenderedResponse; outcome: Omit<ServiceOutcome, 'route'> }>;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

type BodyResult = { ok: true; text: string } | { ok: false; why: string };

/** Reads at most `limit` bytes of the body; stops reading (cancels) as soon as it is over. */
export async function readBodyLimited(req: Request, limit: number): Promise<BodyResult> {
  const declared = req.headers.get('content-length');
  if (declared !== null && /^[0-9]+$/.test(declared.trim()) && Number(declared.trim()) > limit) {
    return { ok: false, why: `the body is larger than ${limit} bytes` };
  }
  if (!req.body) return { ok: true, text: '' };
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.byteLength;
    if (n > limit) {
      void reader.cancel().catch(() => {});
      return { ok: false, why: `the body is larger than ${limit} bytes` };
    }
    chunks.push(value);
  }
  try {
    return { ok: true, text: UTF8.decode(Buffer.concat(chunks)) };
  } catch {
    return { ok: false, why: 'the body is not UTF-8' };
  }
}

function toResponse(r: RenderedResponse, head: boolean): Response {
  return new Response(head ? null : r.body, { status: r.status, headers: r.headers });
}

export async function createTokenService(loaded: LoadedConfig, deps: TokenServiceDeps): Promise<TokenService> {
  const { config, baseDir } = loaded;
  const ts = config.token_service;
  if (!ts) throw new TypeError('createTokenService: the config has no token_service section');
  const issuer = config.tokens.issuers.find((i) => i.name === ts.issuer);
  if (!issuer) throw new ConfigError([{ path: 'token_service.issuer', message: `unknown issuer "${ts.issuer}"` }]);
  const { store, clock, logger, metrics } = deps;
  const render: RenderOptions = { realm: config.realm, docsUrl: config.docs_url };

  const needsRing = ['secrets', 'private_key_file', 'public_key_file', 'jwks_file', 'jwks_url'].every((k) => issuer[k as keyof typeof issuer] === undefined);
  let keyRing = deps.keyRing;
  if (needsRing && !keyRing) keyRing = createKeyRing(store, { clock, maxLifetimeMs: maxTokenLifetimeMs(ts, config.tokens.clock_tolerance_s) });
  if (needsRing && keyRing?.ensureKey) await keyRing.ensureKey();
  const signer = await createTokenSigner(issuer, { keyRing, baseDir, configPath: 'token_service.issuer' });

  const endpoint = createTokenEndpoint({
    store,
    signer,
    clock,
    logger,
    metrics,
    settings: { lifetimes: ts.lifetimes, passwordGrant: ts.password_grant, users: ts.users, render, ...deps.endpoint },
  });
  const scopes = routeScopes(loaded.routes);

  function envelope(code: ErrorCode, detail: ConstructorParameters<typeof GatewayError>[1] = {}): RenderedResponse {
    const r = renderError(new GatewayError(code, detail), render);
    return { status: r.status, headers: r.headers, body: r.body };
  }

  const tokenRoute = (dialect: Dialect): ServiceRoute => ({
    id: `token_${dialect}`,
    path: TOKEN_PATHS[dialect],
    methods: ['POST'],
    dialect,
    async run(req, url) {
      const early = (why: string) => {
        const out = endpoint.refuse(dialect, new GatewayError('invalid_request', { why }));
        return { rendered: out.response, outcome: { reason: out.error, dialect } };
      };
      if (url.search !== '') return early('token request parameters go in the body, not the URL');
      if (!isMediaType(req.headers.get('content-type'), BODY_TYPES[dialect])) return early(`the body must be ${BODY_TYPES[dialect]}`);
      const body = await readBodyLimited(req, ts.max_body_bytes);
      if (!body.ok) return early(body.why);
      const parsed = dialect === 'livedigital' ? parseJsonBody(body.text) : parseFormBody(body.text);
      if (!parsed.ok) return early(parsed.why);
      const out = await endpoint.handle({ dialect, authorization: req.headers.get('authorization'), params: parsed.params });
      return { rendered: out.response, outcome: { reason: out.error, dialect, grant: out.grant, clientId: out.clientId } };
    },
  });

  const jsonOk = (value: unknown, cacheControl: string): RenderedResponse => ({
    status: 200,
    headers: { 'content-type': 'application/json', 'cache-control': cacheControl },
    body: JSON.stringify(value),
  });

  /**
   * The service's route table: exact paths. The next issue adds GET/DELETE /v2/oauth/token/{token},
   * POST /oauth/revoke, POST /oauth/introspect, the personal and room notification token paths and
   * the Integration page here (parameterised paths then need a matcher, not only `byPath`).
   */
  const SERVICE_ROUTES: ServiceRoute[] = [
    tokenRoute('hipchat'),
    tokenRoute('livedigital'),
    tokenRoute('standard'),
    {
      id: 'jwks',
      path: JWKS_PATH,
      methods: ['GET', 'HEAD'],
      async run() {
        let set: { keys: JWK[] };
        try {
          set = await signer.publicJwks();
        } catch (e) {
          metrics.storeErrors.inc({ op: 'listKeys' });
          return { rendered: envelope('store_unavailable', { why: `token store listKeys failed: ${clip((e as Error).message ?? String(e), 200)}` }), outcome: { reason: 'store_unavailable' } };
        }
        // Short cache: a rotated-in key must reach remote verifiers soon (jose refetches on an unknown kid anyway).
        return { rendered: jsonOk(set, 'public, max-age=60'), outcome: {} };
      },
    },
    {
      id: 'metadata',
      path: METADATA_PATH,
      methods: ['GET', 'HEAD'],
      async run(_req, _url, facts) {
        const base = baseUrlFor(ts.public_url, facts);
        if (base === undefined) {
          return { rendered: envelope('bad_request', { why: 'no usable Host header to build the metadata URLs from (set token_service.public_url)' }), outcome: { reason: 'bad_request' } };
        }
        const doc = authorizationServerMetadata({ base, iss: issuer.issuer, scopes, passwordGrant: ts.password_grant });
        // Derived from the request's Host: never let a shared cache keep one client's view for another.
        return { rendered: jsonOk(doc, ts.public_url !== undefined ? 'public, max-age=60' : 'no-store'), outcome: {} };
      },
    },
  ];
  const byPath = new Map(SERVICE_ROUTES.map((r) => [r.path, r]));

  // ── purge ────────────────────────────────────────────────────────────────────────────────────
  const purgeIntervalMs = deps.purgeIntervalMs ?? 60_000;
  if (!Number.isSafeInteger(purgeIntervalMs) || purgeIntervalMs < 0) throw new TypeError(`createTokenService: purgeIntervalMs must be a non-negative integer, got ${String(deps.purgeIntervalMs)}`);
  let purging: Promise<void> | undefined;
  const purgeTimer =
    purgeIntervalMs > 0
      ? setInterval(() => {
          purging ??= store
            .purgeExpired(clock())
            .then((n) => {
              if (n > 0) logger.debug({ event: 'token_store_purge', rows: n }, 'purged expired token-store rows');
            })
            .catch((e: unknown) => {
              metrics.storeErrors.inc({ op: 'purgeExpired' });
              logger.warn({ event: 'token_store_purge_failed', err: clip((e as Error).message ?? String(e), 200) }, 'purging expired token-store rows failed');
            })
            .finally(() => {
              purging = undefined;
            });
        }, purgeIntervalMs)
      : undefined;
  purgeTimer?.unref();

  return {
    matches(_method, path) {
      const q = path.indexOf('?');
      return byPath.has(q === -1 ? path : path.slice(0, q));
    },

    async handle(req, facts) {
      const url = new URL(req.url);
      const route = byPath.get(url.pathname);
      const head = req.method === 'HEAD';
      const finish = (rendered: RenderedResponse, outcome: ServiceOutcome): Response => {
        const res = toResponse(rendered, head);
        outcomes.set(res, outcome);
        return res;
      };
      if (!route) return finish(envelope('route_not_found'), { route: 'unmatched', reason: 'route_not_found' });
      if (!route.methods.includes(req.method)) {
        const err = new GatewayError('method_not_allowed', { allow: route.methods });
        const r = renderError(err, render);
        const headers = route.dialect ? { ...r.headers, ...NO_STORE_HEADERS } : r.headers;
        return finish({ status: r.status, headers, body: r.body }, { route: route.id, reason: 'method_not_allowed', dialect: route.dialect });
      }
      try {
        const { rendered, outcome } = await route.run(req, url, facts);
        return finish(rendered, { route: route.id, ...outcome });
      } catch (e) {
        metrics.internalErrors.inc();
        logger.error({ event: 'token_service_internal_error', route: route.id, err: e instanceof Error ? { message: e.message, stack: e.stack } : String(e) }, 'token service failed');
        const r = renderError(new GatewayError('internal_error'), render);
        return finish({ status: r.status, headers: { ...r.headers, ...NO_STORE_HEADERS }, body: r.body }, { route: route.id, reason: 'internal_error' });
      }
    },

    async readiness() {
      try {
        await store.ping();
      } catch (e) {
        return { ok: false, error: `token store (${store.kind}) does not answer: ${clip((e as Error).message ?? String(e), 200)}` };
      }
      if (signer.source === 'store') {
        try {
          await keyRing!.signingKey();
        } catch (e) {
          return { ok: false, error: `token service has no signing key: ${clip((e as Error).message ?? String(e), 200)}` };
        }
      }
      return { ok: true };
    },

    async close() {
      if (purgeTimer) clearInterval(purgeTimer);
      await purging;
    },
  };
}
