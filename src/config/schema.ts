/**
 * The configuration contract (SPEC.md §6, shared/example-gateway.yaml), as one zod schema.
 * Types are inferred from it; nothing else in the code re-declares a config shape.
 * Unknown keys are errors everywhere (strict objects). Cross-field rules (one key source per
 * issuer, route upstreams that exist, ...) are `superRefine`s so their errors carry a YAML path.
 *
 * @example
 *   const cfg = GatewayConfigSchema.parse(yaml.parse(text)); // load.ts adds env + line numbers
 */
import { z } from 'zod';
import { cidrProblem } from '../net/cidr.js';

export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT'] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];
/** Methods a route without `methods` does NOT serve: they must be listed explicitly (SPEC §1.8). */
export const EXPLICIT_ONLY_METHODS: readonly HttpMethod[] = ['TRACE', 'CONNECT'];

/** Client types a token can have. `oauth` in a route means "any of these". */
export const CLIENT_TYPES = ['group', 'room', 'user'] as const;
export type ClientType = (typeof CLIENT_TYPES)[number];
export const ROUTE_CLIENT_TYPES = ['group', 'room', 'user', 'oauth'] as const;

/** Algorithms an issuer may allow. `none` is deliberately absent: it can never be configured. */
export const ALGORITHMS = [
  'HS256', 'HS384', 'HS512',
  'RS256', 'RS384', 'RS512',
  'PS256', 'PS384', 'PS512',
  'ES256', 'ES384', 'ES512',
  'EdDSA', 'Ed25519',
] as const;
export const HMAC_ALGORITHMS: readonly string[] = ['HS256', 'HS384', 'HS512'];

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(min).max(max);
/** The longest delay a Node or Bun timer can hold (2^31 - 1 ms, ~24.8 days); longer fires at once. */
const MAX_TIMER_MS = 2_147_483_647;
const ms = (min: number) => int(min, MAX_TIMER_MS);
const port = int(0, 65535);
const nonEmpty = z.string().min(1);

/** A CIDR (`10.0.0.0/8`, `::1/128`) or a bare address (a /32 or /128). Checked by trusted-proxies.ts. */
const Cidr = z.string().superRefine((s, ctx) => {
  const problem = cidrProblem(s);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

const Listen = z.strictObject({
  host: nonEmpty.default('0.0.0.0'),
  port: port.default(8080),
  /** The whole request head must arrive within this many ms (408, connection closed). */
  header_timeout_ms: ms(1).default(10_000),
  /** Longest pause inside a request body, ms: then 408 request_timeout, the upstream request aborted. */
  body_idle_timeout_ms: ms(1).default(30_000),
  /** A keep-alive connection idle between requests is closed after this many ms. */
  idle_timeout_ms: ms(1).default(65_000),
  /** Open client connections at most; more are closed at once. */
  max_connections: int(1).default(10_000),
  /** Incoming header names containing "_": dropped (default; CGI/WSGI fold "_" into "-") or kept. */
  underscore_headers: z.enum(['drop', 'keep']).default('drop'),
  /** HTTPS (and WSS) on the main listener; both files re-read on SIGHUP. */
  tls: z.strictObject({ cert_file: nonEmpty, key_file: nonEmpty }).optional(),
});
const Admin = z.strictObject({
  host: nonEmpty.default('0.0.0.0'),
  port: port.default(9090),
  /** Set false to run without the admin listener (tests, embedding). */
  enabled: z.boolean().default(true),
});

const Upstream = z.strictObject({
  url: z.url({ protocol: /^https?$/, error: 'must be an absolute http:// or https:// URL' }),
  /** No response headers within this many ms -> 504 upstream_timeout. */
  timeout_ms: ms(1).default(30_000),
  /** TCP (and TLS) connect budget in ms -> 502 upstream_unavailable when exceeded. */
  connect_timeout_ms: ms(1).default(2_000),
  /** Keep-alive connections kept to this upstream (undici Pool `connections`). */
  max_sockets: int(1).default(256),
});

/** A claim reference: a claim name, or `{ claim, map }` to translate the claim's values. */
const ClaimRef = z.union([
  nonEmpty,
  z.strictObject({ claim: nonEmpty, map: z.record(z.string(), z.string()).default({}) }),
]);
export type ClaimRefConfig = z.infer<typeof ClaimRef>;

const Claims = z.strictObject({
  subject: ClaimRef.default('sub'),
  client_type: ClaimRef.default('client_type'),
  /** Adapts another IdP's client-type values, e.g. { client: group }. Merged with ClaimRef.map. */
  client_type_map: z.record(z.string(), z.enum(CLIENT_TYPES)).default({}),
  scopes: ClaimRef.default('scope'),
  room: ClaimRef.default('room_id'),
  room_name: ClaimRef.default('room_name'),
  group: ClaimRef.default('group_id'),
  token_id: ClaimRef.default('jti'),
});
export type ClaimsConfig = z.infer<typeof Claims>;

const Jwks = z.strictObject({
  /** HTTP timeout of one JWKS fetch, ms (jose `timeoutDuration`). */
  timeout_ms: int(1).default(5_000),
  /** Minimum time between two fetches triggered by an unknown kid, ms (jose `cooldownDuration`). */
  cooldown_ms: int(0).default(30_000),
  /** A fetched set is considered fresh for this long, ms (jose `cacheMaxAge`). */
  cache_max_age_ms: int(0).default(600_000),
});

const Issuer = z
  .strictObject({
    name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, "_", "." and "-" only'),
    /** Expected `iss`. One issuer may leave it out: it then takes tokens without a known `iss`. */
    issuer: nonEmpty.optional(),
    audience: z.union([nonEmpty, z.array(nonEmpty).min(1)]).optional(),
    algorithms: z.array(z.enum(ALGORITHMS)).min(1),
    /** HMAC secrets, newest first: any verifies, the first signs (`mint`). */
    secrets: z.array(z.string().min(16, 'an HMAC secret must be at least 16 characters')).min(1).optional(),
    public_key_file: nonEmpty.optional(),
    /** PEM (PKCS#8) or JWK private key used only by `scopegate mint`; its public half also verifies. */
    private_key_file: nonEmpty.optional(),
    jwks_file: nonEmpty.optional(),
    jwks_url: z.url({ protocol: /^https?$/ }).optional(),
    jwks: Jwks.prefault({}),
    /** Tokens without `exp` are rejected unless false. */
    require_exp: z.boolean().default(true),
    /** Reject tokens whose `iat` is older than this many seconds. */
    max_token_age_s: int(1).optional(),
    /** `jti` values that are refused with token_revoked. */
    revoked_jti: z.array(nonEmpty).default([]),
    claims: Claims.prefault({}),
  })
  .superRefine((iss, ctx) => {
    const sources = (['secrets', 'public_key_file', 'jwks_file', 'jwks_url', 'private_key_file'] as const).filter(
      (k) => iss[k] !== undefined,
    );
    const verifying = sources.filter((k) => k !== 'private_key_file');
    if (verifying.length > 1) {
      ctx.addIssue({ code: 'custom', message: `has several key sources (${verifying.join(', ')}); choose one` });
    }
    const hmac = iss.algorithms.filter((a) => HMAC_ALGORITHMS.includes(a));
    const asym = iss.algorithms.filter((a) => !HMAC_ALGORITHMS.includes(a));
    if (iss.secrets && asym.length) {
      ctx.addIssue({ code: 'custom', path: ['algorithms'], message: `${asym.join(', ')} cannot be verified with HMAC secrets; allowed with secrets: HS256, HS384, HS512` });
    }
    if (!iss.secrets && hmac.length) {
      ctx.addIssue({ code: 'custom', path: ['algorithms'], message: `${hmac.join(', ')} need \`secrets\` (HMAC keys); with public keys allow only asymmetric algorithms` });
    }
  });
export type IssuerConfig = z.infer<typeof Issuer>;

const Tokens = z
  .strictObject({
    sources: z.array(z.enum(['header', 'query'])).min(1).default(['header', 'query']),
    query_param: z.string().regex(/^[A-Za-z0-9_.-]+$/).default('auth_token'),
    forward_token: z.boolean().default(true),
    identity_header_prefix: z.string().regex(/^[A-Za-z0-9-]+$/, 'a header-name prefix such as X-Auth-').default('X-Auth-'),
    clock_tolerance_s: int(0, 3600).default(60),
    /** Longest token accepted, bytes; longer is 401 token_malformed without being parsed. */
    max_token_bytes: int(64, 65536).default(8192),
    cache: z
      .strictObject({
        /** Verified tokens kept at most (0 disables the cache). */
        max_entries: int(0).default(100_000),
        /** Bytes the cache may hold at most (entries are sized by their principal), default 64 MiB. */
        max_bytes: int(1024).default(64 * 1024 * 1024),
      })
      .prefault({}),
    issuers: z.array(Issuer).min(1),
  })
  .superRefine((t, ctx) => {
    const seen = new Set<string>();
    t.issuers.forEach((iss, i) => {
      if (seen.has(iss.name)) ctx.addIssue({ code: 'custom', path: ['issuers', i, 'name'], message: `duplicate issuer name "${iss.name}"` });
      seen.add(iss.name);
    });
    const seenIss = new Map<string, number>();
    t.issuers.forEach((iss, i) => {
      const key = iss.issuer ?? '\0none';
      if (seenIss.has(key)) {
        ctx.addIssue({
          code: 'custom',
          path: ['issuers', i, 'issuer'],
          message: iss.issuer ? `iss "${iss.issuer}" is already used by another issuer` : 'only one issuer may leave out `issuer`',
        });
      }
      seenIss.set(key, i);
    });
  });
export type TokensConfig = z.infer<typeof Tokens>;

const Window = z.strictObject({ limit: int(1), window_s: int(1, 86_400 * 31) });
export type WindowConfig = z.infer<typeof Window>;

const RateLimit = z
  .strictObject({
    /** false: no budget is counted and no rate-limit headers are sent. */
    enabled: z.boolean().default(true),
    store: z.enum(['memory', 'redis']).default('memory'),
    redis_url: z.string().regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL').optional(),
    /** Seed nodes of a Redis Cluster (ioredis Cluster client) instead of `redis_url`. */
    redis_cluster: z.array(z.string().regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL')).min(1).optional(),
    key_prefix: z.string().regex(/^[A-Za-z0-9_:.-]*$/).default('scopegate'),
    on_store_error: z.enum(['open', 'closed']).default('open'),
    key: z.enum(['token', 'subject']).default('token'),
    ietf_headers: z.boolean().default(true),
    /** Memory store bound: distinct windows kept at most (least recently used go first). */
    max_keys: int(1).default(100_000),
    /** Redis command timeout, ms: a slower answer counts as a store error. */
    redis_timeout_ms: int(1).default(500),
    default: Window.default({ limit: 500, window_s: 300 }),
    client_types: z.partialRecord(z.enum(CLIENT_TYPES), Window).default({}),
  })
  .superRefine((r, ctx) => {
    if (r.store === 'redis' && !r.redis_url && !r.redis_cluster) {
      ctx.addIssue({ code: 'custom', path: ['redis_url'], message: 'is required when store is redis (or redis_cluster)' });
    }
    if (r.redis_url && r.redis_cluster) {
      ctx.addIssue({ code: 'custom', path: ['redis_cluster'], message: 'redis_url and redis_cluster together: choose one' });
    }
  });
export type RateLimitConfig = z.infer<typeof RateLimit>;

const PARAM = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/;
const STATIC_SEGMENT = /^[A-Za-z0-9\-._~!$&'()+,;=:@]+$/;

/** Returns an error message for a route pattern, or null when it is well formed. */
export function routePathProblem(path: string): string | null {
  if (!path.startsWith('/')) return 'must start with "/"';
  if (path === '/') return null;
  const segs = path.slice(1).split('/');
  const names = new Set<string>();
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i]!;
    if (s === '*') {
      if (i !== segs.length - 1) return '"*" is only allowed as the last segment ("/prefix/*")';
      continue;
    }
    const m = PARAM.exec(s);
    if (m) {
      if (names.has(m[1]!)) return `parameter {${m[1]}} appears twice`;
      names.add(m[1]!);
      continue;
    }
    if (s === '') return 'empty segment ("//" or a trailing "/")';
    if (s === '.' || s === '..') return 'dot segments are not allowed';
    if (!STATIC_SEGMENT.test(s)) return `segment "${s}" must be literal text (no "%", "{", "}", "*"), "{param}" or a final "*"`;
  }
  return null;
}

export function routeParams(path: string): string[] {
  return path
    .split('/')
    .map((s) => PARAM.exec(s)?.[1])
    .filter((s): s is string => s !== undefined);
}

const Route = z
  .strictObject({
    /** Stable name used in metrics, logs and `explain`; defaults to the path pattern. */
    id: z.string().regex(/^[A-Za-z0-9_./{}*:-]+$/).optional(),
    path: z.string().superRefine((p, ctx) => {
      const problem = routePathProblem(p);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
    /** Methods this route serves; absent = every method. A GET route also serves HEAD. */
    methods: z.array(z.enum(HTTP_METHODS)).min(1).optional(),
    public: z.boolean().default(false),
    scopes: z.array(nonEmpty).min(1).optional(),
    scopes_all: z.array(nonEmpty).min(1).optional(),
    client_types: z.array(z.enum(ROUTE_CLIENT_TYPES)).min(1).optional(),
    room_param: nonEmpty.optional(),
    flood_control: z.strictObject({ limit: int(1), window_s: int(1, 86_400), param: nonEmpty }).optional(),
    rate_limit: Window.optional(),
    upstream: nonEmpty.optional(),
  })
  .superRefine((r, ctx) => {
    if (r.scopes && r.scopes_all) {
      ctx.addIssue({ code: 'custom', path: ['scopes_all'], message: 'use either scopes (any one) or scopes_all (every one), not both' });
    }
    if (r.public) {
      for (const k of ['scopes', 'scopes_all', 'client_types', 'room_param', 'flood_control', 'rate_limit'] as const) {
        if (r[k] !== undefined) ctx.addIssue({ code: 'custom', path: [k], message: 'has no effect on a public route (no token is checked)' });
      }
    }
  });
export type RouteConfig = z.infer<typeof Route>;

const ForwardAuth = z.strictObject({
  /** Path on the main listener answering front proxies' sub-requests (not a route). */
  path: z.string().regex(/^\/[A-Za-z0-9_.~-]+(?:\/[A-Za-z0-9_.~-]+)*$/, 'an absolute path such as /_scopegate/auth'),
});

const Lifetimes = z.strictObject({
  access_s: int(1).default(3600),
  user_s: int(1).default(3600),
  refresh_s: int(1).default(2_592_000),
  personal_s: int(1).default(31_536_000),
});

const TokenService = z.strictObject({
  /** A tokens.issuers entry; its iss and aud go into every token, its keys sign (generated when it has none). */
  issuer: nonEmpty,
  /** A directory (embedded store, created if missing) or a postgres:// URL (several replicas). */
  store: nonEmpty.default('./data'),
  /** Base of the absolute URLs in the RFC 8414 metadata; default: the request's scheme and host. */
  public_url: z.url({ protocol: /^https?$/ }).optional(),
  /** RFC 9700 says MUST NOT; true for livedigital-style clients. */
  password_grant: z.boolean().default(false),
  /** Password check: `store` (scopegate users add) or an http(s) URL answering POST {username,password}. */
  users: z.union([z.literal('store'), z.url({ protocol: /^https?$/ })]).default('store'),
  lifetimes: Lifetimes.prefault({}),
  revocation: z.strictObject({ max_lag_ms: int(10).default(1000) }).prefault({}),
  /** Optional path of the self-service Integration page. */
  integration_page: z.string().regex(/^\/[A-Za-z0-9_.~/-]*$/).optional(),
  /** Largest token-endpoint request body, bytes. */
  max_body_bytes: int(256, 1_048_576).default(16_384),
});
export type TokenServiceConfig = z.infer<typeof TokenService>;

export const GatewayConfigSchema = z
  .strictObject({
    listen: Listen.prefault({}),
    admin: Admin.prefault({}),
    realm: z.string().regex(/^[^"\\]+$/, 'no quotes or backslashes').default('scopegate'),
    docs_url: z.url().optional(),
    shutdown_timeout_ms: ms(0).default(10_000),
    watch: z.boolean().default(false),
    /** Where routes forward to. May be empty only when the gateway runs as forward auth (it forwards nothing). */
    upstreams: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/), Upstream).default({}),
    tokens: Tokens,
    rate_limit: RateLimit.prefault({ enabled: false }),
    fallback: z.enum(['deny', 'authenticated']).default('deny'),
    /** Peers whose X-Forwarded-* / Forwarded are kept, and who may call forward_auth. */
    trusted_proxies: z.array(Cidr).default(['127.0.0.0/8', '::1/128']),
    forward_auth: ForwardAuth.optional(),
    token_service: TokenService.optional(),
    routes: z.array(Route).default([]),
  })
  .superRefine((c, ctx) => {
    const names = Object.keys(c.upstreams);
    if (names.length === 0 && !c.forward_auth) {
      ctx.addIssue({ code: 'custom', path: ['upstreams'], message: 'at least one upstream (only a forward_auth-only gateway may have none)' });
    }
    if (names.length > 0 || !c.forward_auth) c.routes.forEach((r, i) => {
      const name = r.upstream ?? 'default';
      if (!c.upstreams[name]) {
        ctx.addIssue({
          code: 'custom',
          path: ['routes', i, r.upstream ? 'upstream' : 'path'],
          message: r.upstream
            ? `unknown upstream "${name}"; defined: ${names.join(', ')}`
            : `route has no \`upstream\` and there is no upstream named "default"; defined: ${names.join(', ')}`,
        });
      }
    });
    // An issuer needs a key source, except the token service's own: its ES256 keys live in the store.
    c.tokens.issuers.forEach((iss, i) => {
      const hasSource = (['secrets', 'public_key_file', 'jwks_file', 'jwks_url', 'private_key_file'] as const).some((k) => iss[k] !== undefined);
      if (hasSource || c.token_service?.issuer === iss.name) return;
      ctx.addIssue({
        code: 'custom',
        path: ['tokens', 'issuers', i],
        message: 'needs one key source: secrets, public_key_file, jwks_file, jwks_url (or private_key_file); only the token_service issuer may have none (its keys are generated into the store)',
      });
    });
    if (c.token_service && !c.tokens.issuers.some((i) => i.name === c.token_service!.issuer)) {
      ctx.addIssue({
        code: 'custom',
        path: ['token_service', 'issuer'],
        message: `unknown issuer "${c.token_service.issuer}"; defined: ${c.tokens.issuers.map((i) => i.name).join(', ')}`,
      });
    }
    if (c.fallback === 'authenticated' && !c.upstreams.default && !(c.forward_auth && names.length === 0)) {
      ctx.addIssue({ code: 'custom', path: ['fallback'], message: 'fallback: authenticated forwards to upstream "default", which is not defined' });
    }
  });

export type GatewayConfig = z.infer<typeof GatewayConfigSchema>;
export type UpstreamConfig = GatewayConfig['upstreams'][string];
