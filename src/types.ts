/**
 * Plain values passed between the pipeline stages. No stage imports another stage's internals;
 * they meet here. Nothing in this file imports Hono, undici or ioredis.
 */
import type { ClientType, HttpMethod, RouteConfig, WindowConfig } from './config/schema.js';

/** Milliseconds since the epoch. Injected everywhere time matters so tests can freeze it. */
export type Clock = () => number;
export const systemClock: Clock = () => Date.now();

/**
 * The decision's revocation stamp on a principal (core/decide.ts): the denylist version it was
 * last found not revoked at. Every principal is created with it (as undefined), so stamping a
 * cached principal does not change its hidden class: the code reading principals stays
 * monomorphic. A symbol, so it is in no JSON, log line or header.
 */
export const NOT_REVOKED_AT: unique symbol = Symbol('scopegate.notRevokedAt');

/** What a verified token says about its bearer, after the issuer's claim mapping. */
export interface Principal {
  /** Configured issuer name (e.g. "local"). */
  issuerName: string;
  /** The token's `iss` claim, if any (forwarded as X-Auth-Issuer). */
  iss?: string | undefined;
  subject?: string | undefined;
  /** Mapped client type: group | room | user, or whatever else the token said ('' when absent);
   *  an unknown value is authentic but no route allows it (403 client_type_forbidden). */
  clientType: ClientType | (string & {});
  scopes: readonly string[];
  room?: string | undefined;
  roomName?: string | undefined;
  group?: string | undefined;
  tokenId?: string | undefined;
  /** `exp` in epoch seconds, when the token has one (bounds the token cache entry). */
  exp?: number | undefined;
  /**
   * SHA-256 of the token (base64url), computed once at verification (it is also the token cache's
   * key): what the rate limiter keys a token without `jti` by. The raw token is never kept.
   */
  tokenHash?: string | undefined;
  [NOT_REVOKED_AT]?: number | undefined;
}

/** A route after compilation: the config plus what matching and limiting need precomputed. */
export interface CompiledRoute {
  /** `config.id` or the path pattern. Used as the metrics/log label. */
  id: string;
  config: RouteConfig;
  /** Methods served, GET implying HEAD; null = every method. */
  methods: ReadonlySet<HttpMethod> | null;
  /** Parameter names in path order. */
  params: readonly string[];
  /** Upstream name (`config.upstream ?? 'default'`). */
  upstream: string;
  /** Index in the YAML `routes` list (for messages). */
  index: number;
}

export type MatchResult =
  | { kind: 'match'; route: CompiledRoute; params: Record<string, string> }
  | { kind: 'method_not_allowed'; allow: string[] }
  | { kind: 'not_found' };

/** Result of one rate-limit window check. */
export interface WindowState {
  limit: number;
  /** Requests counted in this window, including this one when it consumed. */
  count: number;
  remaining: number;
  /** Window end, epoch ms. */
  resetMs: number;
  windowS: number;
  allowed: boolean;
}

export type { RateLimitStore } from './ratelimit/store.js';

export type { ClientType, HttpMethod, WindowConfig };
