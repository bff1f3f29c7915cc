/**
 * The token service (SPEC §9) as one Fetch-API handler, so every door (Node proxy, Bun proxy,
 * Hono middleware) mounts it the same way: ask `matches(method, path)` after path safety and
 * before the route table, and if true answer with `handle(req, facts)`.
 *
 * Its paths (the `SERVICE_ROUTES` table below; `{x}` is one path segment):
 *   POST /v2/oauth/token                       HipChat dialect
 *   POST /v1/auth/token                        livedigital dialect
 *   POST /oauth/token                          standard dialect (advertised by the metadata)
 *   GET  /.well-known/jwks.json                the public signing keys ({"keys": []} for HS)
 *   GET  /.well-known/oauth-authorization-server   RFC 8414 metadata
 *   GET|DELETE /v2/oauth/token/{access_token}  HipChat sessions (sessions.ts)
 *   POST /oauth/revoke, POST /oauth/introspect RFC 7009 / RFC 7662 (sessions.ts)
 *   GET|POST /v2/oauth/personal-tokens, DELETE /v2/oauth/personal-tokens/{id}        (personal-tokens.ts)
 *   GET|POST /v2/room/{room}/notification-tokens, DELETE …/notification-tokens/{id}   (personal-tokens.ts)
 *   GET|POST token_service.integration_page and its form paths (integration-page.ts)
 * `matches` is true for every method on these paths (another method is 405 with Allow), so a
 * route of the table can never shadow them.
 *
 * Revocation: the service owns this replica's denylist (revocation.ts), started before
 * `createTokenService` resolves; the gateway checks `service.denylist.has(principal.tokenId)`
 * after verification (cached or not) and calls `service.usage.seen(jti)` after an allowed
 * decision for a token of `service.issuerName` (last_used_at).
 *
 * The token endpoint's body is the only body the gateway ever reads: at most
 * `token_service.max_body_bytes`; beyond that reading stops and the answer is 400
 * `invalid_request`. The body must have the dialect's media type, and the request URL no query
 * (RFC 6749 §2.3.1: credentials never go in the URI, where access logs keep them).
 *
 * @example
 *   const service = await createTokenService(loaded, { store, clock: Date.now, logger, metrics, verify: (t) => verifier.verify(t) });
 *   if (service.matches(req.method, url.pathname)) return service.handle(req, { clientIp, proto: 'https', host });
 *   serviceOutcome(res); // { route: 'token_hipchat', reason: 'invalid_client' } for the access line
 *   await service.readiness(); // { ok: true } — false while the denylist cannot sync
 *   service.denylist.has(jti); // the request path's revocation check (a Map lookup)
 *   await service.close();     // stops the purge timer and the denylist (the store is the caller's to close)
 */
import { readFile } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
import type { JWK } from 'jose';
import { ConfigError, ERROR_CODES, GatewayError, isGatewayError, renderError, type ErrorCode, type RenderOptions } from '../errors.js';
import { clip } from '../clip.js';
import type { LoadedConfig } from '../config/load.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { Clock, Principal } from '../types.js';
import { createTokenVerifier } from '../auth/verify-token.js';
import { createAttemptLimiter } from './attempts.js';
import { createClientAuthenticator } from './client-auth.js';
import { BODY_TYPES, isMediaType, NO_STORE_HEADERS, parseFormBody, parseJsonBody, renderTokenError, TOKEN_PATHS, type Dialect, type RenderedResponse } from './dialects.js';
import { createTokenEndpoint, DEFAULT_ATTEMPT_LIMITS, type EndpointSettings, type GrantLabel } from './endpoint.js';
import { createIntegrationPage, PAGE_HEADERS, type IntegrationPage } from './integration-page.js';
import { createPageSessions } from './integration-session.js';
import { createTokenSigner, type KeyRingSource } from './issue.js';
import { createKeyRing, maxTokenLifetimeMs } from './keys.js';
import { authorizationServerMetadata, baseUrlFor, JWKS_PATH, METADATA_PATH, routeScopes } from './metadata.js';
import { createPersonalTokens, createUsageRecorder, type OwnTokenKind, type UsageRecorder } from './personal-tokens.js';
import { createDenylist, type Denylist } from './revocation.js';
import { createSessions } from './sessions.js';
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
  /** Stops the purge timer and the denylist, and waits for a running purge. Does not close the store. */
  close(): Promise<void>;
  /** This replica's denylist: `has(jti)` after verification, cached or not → 401 token_revoked. */
  readonly denylist: Denylist;
  /** `seen(jti)` after an allowed decision for a token of `issuerName`: last_used_at, throttled. */
  readonly usage: UsageRecorder;
  /** token_service.issuer: the configured issuer whose tokens the service records. */
  readonly issuerName: string;
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
  /**
   * The gateway's token verifier (`verifier.verify`): sessions, personal tokens and introspection
   * check tokens with exactly the gateway's semantics. Default: a verifier of its own over
   * `tokens` (the service's issuer verifying with the keys it signs with).
   */
  verify?: ((token: string) => Promise<Principal>) | undefined;
  /** Denylist tunables (tests): poll margin and purge period, ms. */
  denylist?: { syncMarginMs?: number | undefined; purgeEveryMs?: number | undefined } | undefined;
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

export const SESSION_PATH_PREFIX = '/v2/oauth/token/';
export const REVOKE_PATH = '/oauth/revoke';
export const INTROSPECT_PATH = '/oauth/introspect';
export const PERSONAL_TOKENS_PATH = '/v2/oauth/personal-tokens';
/** `/v2/room/{room_id_or_name}/notification-tokens` */
export const ROOM_TOKENS_SEGMENT = 'notification-tokens';
const ROOM_PREFIX = '/v2/room/';

/**
 * Every path the service answers, `{x}` for one segment (for `scopegate check`'s shadowed-route
 * warning); the Integration page's paths are added by `servicePaths(config)`.
 */
export const SERVICE_PATHS: readonly string[] = [
  TOKEN_PATHS.hipchat,
  TOKEN_PATHS.livedigital,
  TOKEN_PATHS.standard,
  JWKS_PATH,
  METADATA_PATH,
  `${SESSION_PATH_PREFIX}{access_token}`,
  REVOKE_PATH,
  INTROSPECT_PATH,
  PERSONAL_TOKENS_PATH,
  `${PERSONAL_TOKENS_PATH}/{id}`,
  `/v2/room/{room_id_or_name}/${ROOM_TOKENS_SEGMENT}`,
  `/v2/room/{room_id_or_name}/${ROOM_TOKENS_SEGMENT}/{id}`,
];

/** SERVICE_PATHS plus the Integration page (its path and `<path>/*`) when configured. */
export function servicePaths(ts: { integration_page?: string | undefined } | undefined): string[] {
  return ts?.integration_page !== undefined ? [...SERVICE_PATHS, ts.integration_page, `${ts.integration_page}/*`] : [...SERVICE_PATHS];
}

/** A parameterised service path, matched (pure): which route and its decoded parameters. */
export type ServicePathMatch =
  | { route: 'session'; token: string }
  | { route: 'personal_tokens'; id?: string | undefined }
  | { route: 'room_tokens'; room: string; id?: string | undefined }
  | { route: 'bad_path' };

function decodeSegment(seg: string): string | undefined {
  try {
    return decodeURIComponent(seg);
  } catch {
    return undefined;
  }
}

/**
 * Matches the parameterised paths of the service (the exact ones are a Map lookup). Never throws;
 * a segment that is not valid percent-encoding (or is empty) is `bad_path` (400), not a miss, so
 * the route table never sees such a path either.
 */
export function matchServicePath(path: string): ServicePathMatch | undefined {
  if (path.length > 8192) return undefined;
  if (path.startsWith(SESSION_PATH_PREFIX)) {
    const rest = path.slice(SESSION_PATH_PREFIX.length);
    if (rest.includes('/')) return undefined;
    const token = decodeSegment(rest);
    return token === undefined || token === '' ? { route: 'bad_path' } : { route: 'session', token };
  }
  if (path === PERSONAL_TOKENS_PATH) return { route: 'personal_tokens' };
  if (path.startsWith(`${PERSONAL_TOKENS_PATH}/`)) {
    const rest = path.slice(PERSONAL_TOKENS_PATH.length + 1);
    if (rest.includes('/')) return undefined;
    const id = decodeSegment(rest);
    return id === undefined || id === '' ? { route: 'bad_path' } : { route: 'personal_tokens', id };
  }
  if (path.startsWith(ROOM_PREFIX)) {
    // Every room request of the route table passes here: split only a path that names the segment.
    const slash = path.indexOf('/', ROOM_PREFIX.length);
    if (slash === -1 || !path.startsWith(ROOM_TOKENS_SEGMENT, slash + 1)) return undefined;
    const parts = path.slice(ROOM_PREFIX.length).split('/');
    if (parts.length < 2 || parts.length > 3 || parts[1] !== ROOM_TOKENS_SEGMENT) return undefined;
    const room = decodeSegment(parts[0]!);
    if (room === undefined || room === '') return { route: 'bad_path' };
    if (parts.length === 2) return { route: 'room_tokens', room };
    const id = decodeSegment(parts[2]!);
    return id === undefined || id === '' ? { route: 'bad_path' } : { route: 'room_tokens', room, id };
  }
  return undefined;
}

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

type BodyResult = { ok: true; text: string } | { ok: false; code: 'invalid_request' | 'request_timeout'; why: string };

/**
 * Reads at most `limit` bytes of the body; stops reading (cancels) as soon as it is over, or when
 * the client sends nothing for `idleMs` (`listen.body_idle_timeout_ms`, the bound the proxy path
 * has): a client that stops mid-body is answered 408, not left holding the request forever.
 */
export async function readBodyLimited(req: Request, limit: number, idleMs: number): Promise<BodyResult> {
  const declared = req.headers.get('content-length');
  if (declared !== null && /^[0-9]+$/.test(declared.trim()) && Number(declared.trim()) > limit) {
    return { ok: false, code: 'invalid_request', why: `the body is larger than ${limit} bytes` };
  }
  if (!req.body) return { ok: true, text: '' };
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stalled = new Promise<'stalled'>((resolve) => (timer = setTimeout(() => resolve('stalled'), idleMs)));
    let r: Awaited<ReturnType<typeof reader.read>> | 'stalled';
    try {
      r = await Promise.race([reader.read(), stalled]);
    } finally {
      clearTimeout(timer);
    }
    if (r === 'stalled') {
      void reader.cancel().catch(() => {});
      return { ok: false, code: 'request_timeout', why: `the body paused longer than body_idle_timeout_ms (${idleMs} ms)` };
    }
    if (r.done) break;
    n += r.value.byteLength;
    if (n > limit) {
      void reader.cancel().catch(() => {});
      return { ok: false, code: 'invalid_request', why: `the body is larger than ${limit} bytes` };
    }
    chunks.push(r.value);
  }
  try {
    return { ok: true, text: UTF8.decode(Buffer.concat(chunks)) };
  } catch {
    return { ok: false, code: 'invalid_request', why: 'the body is not UTF-8' };
  }
}

const ERROR_CODE_SET: ReadonlySet<ErrorCode> = new Set(ERROR_CODES);

/** The `reason` of a rendered refusal (the envelope's error.reason, or the RFC 6749 error), for the access line. */
function reasonOf(r: RenderedResponse): ErrorCode | undefined {
  if (r.status < 400) return undefined;
  try {
    const v = JSON.parse(r.body) as { error?: { reason?: unknown } | string };
    const code = typeof v.error === 'string' ? v.error : v.error?.reason;
    return typeof code === 'string' && ERROR_CODE_SET.has(code as ErrorCode) ? (code as ErrorCode) : undefined;
  } catch {
    return undefined;
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
  /** A request body as every service route reads it: `max_body_bytes`, and the proxy path's idle bound. */
  const readBody = (req: Request) => readBodyLimited(req, ts.max_body_bytes, config.listen.body_idle_timeout_ms);

  const needsRing = ['secrets', 'private_key_file', 'public_key_file', 'jwks_file', 'jwks_url'].every((k) => issuer[k as keyof typeof issuer] === undefined);
  let keyRing = deps.keyRing;
  if (needsRing && !keyRing) keyRing = createKeyRing(store, { clock, maxLifetimeMs: maxTokenLifetimeMs(ts, config.tokens.clock_tolerance_s) });
  if (needsRing && keyRing?.ensureKey) await keyRing.ensureKey();
  const signer = await createTokenSigner(issuer, { keyRing, baseDir, configPath: 'token_service.issuer' });

  // ── revocation: this replica's denylist, synced before the service answers anything ─────────
  const denylist = createDenylist(store, { clock, maxLagMs: ts.revocation.max_lag_ms, logger, metrics, ...deps.denylist });
  await denylist.start();
  const usage = createUsageRecorder(store, { clock, metrics, logger });

  const limits = { ...DEFAULT_ATTEMPT_LIMITS, ...(deps.endpoint?.attempts ?? {}) };
  const userAttempts = createAttemptLimiter({ maxFailures: limits.perUser, windowMs: limits.windowMs, maxKeys: limits.maxKeys, clock });
  const endpoint = createTokenEndpoint({
    store,
    signer,
    clock,
    logger,
    metrics,
    settings: { lifetimes: ts.lifetimes, passwordGrant: ts.password_grant, users: ts.users, render, ...deps.endpoint },
    userAttempts,
    onRevoked: (entries) => {
      for (const e of entries) denylist.add(e.jti, e.expiresAt);
    },
  });
  const scopes = routeScopes(loaded.routes);
  const renderTokenErrorStandard = (err: GatewayError) => renderTokenError('standard', err, render);

  // ── the gateway's verifier semantics for tokens in paths, bearers and introspection ─────────
  let verify = deps.verify;
  if (!verify) {
    const own = await createTokenVerifier(config.tokens, {
      clock,
      baseDir,
      storeKeys: { issuer: issuer.name, publicJwks: () => signer.publicJwks(), invalidate: () => (keyRing as { invalidate?: () => void } | undefined)?.invalidate?.() },
    });
    verify = (t) => own.verify(t);
  }
  const aud = Array.isArray(issuer.audience) ? issuer.audience[0] : issuer.audience;
  const sessions = createSessions({
    store,
    clock,
    logger,
    metrics,
    verify,
    denylist,
    authenticator: createClientAuthenticator({
      getClient: async (id) => {
        try {
          return await store.getClient(id);
        } catch (e) {
          metrics.storeErrors.inc({ op: 'getClient' });
          throw new GatewayError('store_unavailable', { store: 'token', why: `token store getClient failed: ${clip((e as Error).message ?? String(e), 200)}` });
        }
      },
      clock,
      cacheTtlMs: deps.endpoint?.clientCache?.ttlMs,
      cacheMaxEntries: deps.endpoint?.clientCache?.maxEntries,
    }),
    issuerName: issuer.name,
    iss: issuer.issuer,
    aud,
    render,
    extract: { sources: config.tokens.sources, queryParam: config.tokens.query_param, maxTokenBytes: config.tokens.max_token_bytes },
  });
  const personal = createPersonalTokens({ store, signer, clock, logger, metrics, sessions, personalS: ts.lifetimes.personal_s });

  // ── the Integration page ─────────────────────────────────────────────────────────────────────
  let page: IntegrationPage | undefined;
  if (ts.integration_page !== undefined) {
    page = createIntegrationPage({
      page: ts.integration_page.replace(/\/+$/, '') || '/integration',
      store,
      clock,
      logger,
      sessions: createPageSessions({ keys: pageKeyMaterial(), clock }),
      personal,
      checkUser: (u, p) => endpoint.checkUser(u, p),
      userAttempts,
      ipAttempts: createAttemptLimiter({ maxFailures: limits.perClient, windowMs: limits.windowMs, maxKeys: limits.maxKeys, clock }),
      personalS: ts.lifetimes.personal_s,
      defaultScopes: scopes,
      storeUsers: ts.users === 'store',
    });
  }

  /**
   * What the page's session MAC key derives from: material every replica already shares — the
   * issuer's HMAC secrets, its private key file, or the store's ES256 private keys (all of them, newest first,
   * so a rotation does not end open sessions). Re-read at most every 5 s.
   */
  function pageKeyMaterial(): () => Promise<readonly Uint8Array[]> {
    let cached: { at: number; keys: readonly Uint8Array[] } | undefined;
    return async () => {
      const now = clock();
      if (cached && now - cached.at < 5000) return cached.keys;
      let keys: Uint8Array[];
      if (issuer!.secrets?.length) keys = issuer!.secrets.map((x) => new TextEncoder().encode(x));
      else if (issuer!.private_key_file !== undefined) keys = [await readFile(resolvePath(baseDir ?? process.cwd(), issuer!.private_key_file))];
      else {
        const rows = await store.listKeys();
        const live = rows.filter((k) => k.retiredAt === undefined).concat(rows.filter((k) => k.retiredAt !== undefined));
        keys = live.map((k) => new TextEncoder().encode(k.privateJwk));
        if (keys.length === 0) throw new GatewayError('keys_unavailable', { why: 'the token store has no signing key to derive the Integration page key from' });
      }
      cached = { at: now, keys };
      return keys;
    };
  }

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
      const early = (why: string, code: 'invalid_request' | 'request_timeout' = 'invalid_request') => {
        const out = endpoint.refuse(dialect, new GatewayError(code, { why }));
        return { rendered: out.response, outcome: { reason: out.error, dialect } };
      };
      if (url.search !== '') return early('token request parameters go in the body, not the URL');
      if (!isMediaType(req.headers.get('content-type'), BODY_TYPES[dialect])) return early(`the body must be ${BODY_TYPES[dialect]}`);
      const body = await readBody(req);
      if (!body.ok) return early(body.why, body.code);
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

  /** A form-encoded RFC 7009 / 7662 request: no query, the standard body type, bounded. */
  const clientFormRoute = (id: 'revoke' | 'introspect', path: string): ServiceRoute => ({
    id,
    path,
    methods: ['POST'],
    dialect: 'standard',
    async run(req, url) {
      const early = (why: string, code: 'invalid_request' | 'request_timeout' = 'invalid_request') => ({
        rendered: renderTokenErrorStandard(new GatewayError(code, { why })),
        outcome: { reason: code, dialect: 'standard' as const },
      });
      if (url.search !== '') return early('parameters go in the body, not the URL');
      if (!isMediaType(req.headers.get('content-type'), BODY_TYPES.standard)) return early(`the body must be ${BODY_TYPES.standard}`);
      const body = await readBody(req);
      if (!body.ok) return early(body.why, body.code);
      const parsed = parseFormBody(body.text);
      if (!parsed.ok) return early(parsed.why);
      const auth = req.headers.get('authorization');
      const rendered = id === 'revoke' ? await sessions.revoke(auth, parsed.params) : await sessions.introspect(auth, parsed.params);
      return { rendered, outcome: { reason: reasonOf(rendered), dialect: 'standard' } };
    },
  });

  /** Runs a bearer-authenticated JSON route; a GatewayError becomes the §2 envelope. */
  async function enveloped(run: () => Promise<RenderedResponse>) {
    try {
      const rendered = await run();
      return { rendered, outcome: { reason: reasonOf(rendered) } };
    } catch (e) {
      if (!isGatewayError(e)) throw e;
      logger.info({ event: 'token_service_refused', reason: e.code, why: e.detail.why }, 'token service request refused');
      return { rendered: sessions.envelope(e), outcome: { reason: e.code } };
    }
  }

  async function jsonBody(req: Request): Promise<unknown> {
    if (!isMediaType(req.headers.get('content-type'), 'application/json')) throw new GatewayError('invalid_request', { why: 'the body must be application/json' });
    const body = await readBody(req);
    if (!body.ok) throw new GatewayError(body.code, { why: body.why });
    try {
      return JSON.parse(body.text) as unknown;
    } catch {
      throw new GatewayError('invalid_request', { why: 'the body is not JSON' });
    }
  }

  const ownTokensRoute = (kind: OwnTokenKind): ServiceRoute => ({
    id: kind === 'personal' ? 'personal_tokens' : 'room_notification_tokens',
    path: '',
    methods: ['GET', 'POST', 'DELETE'],
    run: (req, url) =>
      enveloped(async () => {
        const m = matchServicePath(url.pathname);
        const id = m && m.route !== 'bad_path' && m.route !== 'session' ? m.id : undefined;
        const room = m?.route === 'room_tokens' ? m.room : undefined;
        const allow = id === undefined ? ['GET', 'POST'] : ['DELETE'];
        if (!allow.includes(req.method)) throw new GatewayError('method_not_allowed', { allow });
        const caller = await sessions.caller(req, url);
        const body = req.method === 'POST' ? await jsonBody(req) : undefined;
        return personal.handle(req, { kind, room, id, body, caller });
      }),
  });

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
          return { rendered: envelope('store_unavailable', { store: 'token', why: `token store listKeys failed: ${clip((e as Error).message ?? String(e), 200)}` }), outcome: { reason: 'store_unavailable' } };
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
        const doc = {
          ...authorizationServerMetadata({ base, iss: issuer.issuer, scopes, passwordGrant: ts.password_grant }),
          revocation_endpoint: `${base}${REVOKE_PATH}`,
          revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
          introspection_endpoint: `${base}${INTROSPECT_PATH}`,
          introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
        };
        // Derived from the request's Host: never let a shared cache keep one client's view for another.
        return { rendered: jsonOk(doc, ts.public_url !== undefined ? 'public, max-age=60' : 'no-store'), outcome: {} };
      },
    },
    clientFormRoute('revoke', REVOKE_PATH),
    clientFormRoute('introspect', INTROSPECT_PATH),
  ];
  const byPath = new Map(SERVICE_ROUTES.map((r) => [r.path, r]));

  const sessionRoute: ServiceRoute = {
    id: 'session',
    path: '',
    methods: ['GET', 'DELETE'],
    run: (req, url) =>
      enveloped(async () => {
        const m = matchServicePath(url.pathname);
        if (m?.route !== 'session') throw new GatewayError('bad_request', { why: 'the session path has no token' });
        return req.method === 'DELETE' ? sessions.deleteSession(req, url, m.token) : sessions.getSession(req, url, m.token);
      }),
  };
  const personalRoute = ownTokensRoute('personal');
  const roomRoute = ownTokensRoute('room_notification');
  const badPathRoute: ServiceRoute = {
    id: 'token_service_bad_path',
    path: '',
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
    run: async () => ({ rendered: envelope('bad_request', { why: 'a token-service path segment is empty or not valid percent-encoding' }), outcome: { reason: 'bad_request' } }),
  };
  const pageRoute: ServiceRoute | undefined = page && {
    id: 'integration_page',
    path: '',
    methods: ['GET', 'HEAD', 'POST'],
    async run(req, url, facts) {
      let form: URLSearchParams | undefined;
      let formError: string | undefined;
      if (req.method === 'POST') {
        if (!isMediaType(req.headers.get('content-type'), 'application/x-www-form-urlencoded')) formError = 'it is not application/x-www-form-urlencoded';
        else {
          const body = await readBody(req);
          if (body.ok) form = new URLSearchParams(body.text);
          else if (body.code === 'request_timeout') {
            const r = envelope('request_timeout', { why: body.why });
            return { rendered: { ...r, headers: { ...r.headers, ...NO_STORE_HEADERS } }, outcome: { reason: 'request_timeout' } };
          } else formError = body.why;
        }
      }
      let rendered: RenderedResponse & { reason?: string | undefined };
      try {
        rendered = await page!.handle(req, { path: url.pathname, form, formError, proto: facts.proto, clientIp: facts.clientIp });
      } catch (e) {
        if (!isGatewayError(e)) throw e;
        metrics.storeErrors.inc({ op: 'integration_page' });
        logger.warn({ event: 'integration_page_unavailable', reason: e.code, why: e.detail.why }, 'integration page could not answer');
        rendered = { status: 503, headers: { ...PAGE_HEADERS }, body: '<!doctype html><html lang="en"><title>Unavailable</title><h1>Temporarily unavailable</h1><p>Try again in a moment.</p></html>', reason: e.code };
      }
      const { reason, ...plain } = rendered;
      return { rendered: plain, outcome: { reason: reason !== undefined && (ERROR_CODE_SET as ReadonlySet<string>).has(reason) ? (reason as ErrorCode) : undefined } };
    },
  };

  /** The route for a path (no query), exact paths first. */
  function routeFor(path: string): ServiceRoute | undefined {
    const exact = byPath.get(path);
    if (exact) return exact;
    if (page?.matches(path)) return pageRoute;
    const m = matchServicePath(path);
    if (!m) return undefined;
    switch (m.route) {
      case 'session':
        return sessionRoute;
      case 'personal_tokens':
        return personalRoute;
      case 'room_tokens':
        return roomRoute;
      case 'bad_path':
        return badPathRoute;
    }
  }

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
    denylist,
    usage,
    issuerName: issuer.name,

    matches(_method, path) {
      const q = path.indexOf('?');
      return routeFor(q === -1 ? path : path.slice(0, q)) !== undefined;
    },

    async handle(req, facts) {
      const url = new URL(req.url);
      const route = routeFor(url.pathname);
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
        const headers = { ...r.headers, ...NO_STORE_HEADERS };
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
      if (!denylist.ready()) return { ok: false, error: 'the revocation denylist has not synced with the token store (its last sync failed)' };
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
      await denylist.close();
      await usage.flush();
      await purging;
    },
  };
}
