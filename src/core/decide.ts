/**
 * The decision (SPEC §1 steps 1–7, §8): the one place where the pipeline order is written.
 * Plain request facts in; `forward`, `answer` (auth_test's 202) or `deny` out. Synchronous
 * whenever nothing has to wait (a cached token, the memory store); a promise otherwise.
 * No Node, Hono, undici or ioredis import: every door — the Node proxy, the Bun proxy, forward
 * auth, the Hono middleware, `explain` — runs this function and only translates.
 *
 *   1 target safety → 2 route → 3 token → 4 verify → 5 authorize → 6 auth_test → 7 rate limit
 *
 * @example
 *   const decider = createDecider(loaded, { clock, verifier, limiter });
 *   const d = await decider.decide({ method: 'GET', target: '/v2/room/42?expand=x', authorization: ['Bearer …'],
 *     hostCount: 1, httpVersion: '1.1', clientIp: '10.0.0.7' });
 *   if (d.kind === 'forward') … d.upstream, d.pathAndQuery, d.principal, d.responseHeaders
 *   else { const r = decider.render(d); … r.status, r.headers, r.body }
 */
import { extractToken, type ExtractOptions } from '../auth/extract-token.js';
import type { TokenVerifier } from '../auth/verify-token.js';
import { authorize } from '../authz/authorize.js';
import type { LoadedConfig } from '../config/load.js';
import { GatewayError, renderError, type RenderOptions, type RenderedError } from '../errors.js';
import { authTestMode, stripParams } from '../http/raw-query.js';
import type { LimitDecision, RateLimiter } from '../ratelimit/policy.js';
import { createRouteMatcher } from '../routing/match-route.js';
import { checkTarget } from '../routing/path-safety.js';
import { NOT_REVOKED_AT, type Clock, type CompiledRoute, type MatchResult, type Principal } from '../types.js';

export const AUTH_TEST_BODY = JSON.stringify({
  success: { code: 202, message: 'This auth_token has access to use this method.', type: 'Accepted' },
});

/** What a door knows about a request, as plain values. */
export interface RequestFacts {
  method: string;
  /** The request target exactly as received (origin-form: path and `?query`, still percent-encoded). */
  target: string;
  /** Every Authorization value as sent (repeated headers kept apart where the door can). */
  authorization: readonly string[] | undefined;
  /** How many Host headers the request carried (HTTP/1.x); undefined where the door cannot tell. */
  hostCount?: number | undefined;
  /** '1.0', '1.1', '2'…; HTTP/1.1 requires exactly one Host. */
  httpVersion?: string | undefined;
  clientIp: string;
}

/** Why a forward happens: a verified token, or a public route. */
export type ForwardOutcome = 'allowed' | 'public';

interface DecisionBase {
  route: CompiledRoute | null;
  principal: Principal | undefined;
  /** The rate-limit key, for the access line (a jti, subject or a hash prefix; never a token). */
  limitKey: string | undefined;
  /** Rate-limit headers: on every response that passed authentication, upstream's included. */
  responseHeaders: Record<string, string>;
}

export interface ForwardDecision extends DecisionBase {
  kind: 'forward';
  outcome: ForwardOutcome;
  route: CompiledRoute;
  upstream: string;
  /** Path and query to send upstream: the path byte for byte, the query minus auth_token/auth_test. */
  pathAndQuery: string;
  /** The verified token (for `forward_token`); undefined on public routes. Never stored. */
  token: string | undefined;
}

export interface AnswerDecision extends DecisionBase {
  kind: 'answer';
  status: 202;
  body: string;
}

export interface DenyDecision extends DecisionBase {
  kind: 'deny';
  error: GatewayError;
}

export type Decision = ForwardDecision | AnswerDecision | DenyDecision;

/** Steps `explain` reports; a door never needs them. */
export type TraceStep = 'path_safety' | 'route' | 'token' | 'verify' | 'authorize' | 'auth_test' | 'rate_limit';

/** Structured facts about one step, for `explain`'s trace (formatting lives there). */
export interface TraceEvent {
  step: TraceStep;
  ok: boolean;
  error?: GatewayError | undefined;
  match?: MatchResult | undefined;
  fallback?: boolean | undefined;
  principal?: Principal | undefined;
  tokenSource?: 'header' | 'query' | undefined;
  token?: string | undefined;
  /** auth_test: the probe; rate_limit: the limiter's answer. */
  limit?: LimitDecision | undefined;
  probe?: boolean | undefined;
}

export type Tracer = (e: TraceEvent) => void;

/** Side effects the decision reports, as callbacks (the doors turn them into metrics and logs). */
export interface DecisionObserver {
  /** The rate-limit store failed; `refused` when on_store_error: closed turned it into a 503. */
  storeError?(err: Error, refused: boolean): void;
  rateLimited?(routeId: string, kind: 'rate' | 'flood'): void;
}

export interface DeciderDeps {
  clock: Clock;
  verifier: TokenVerifier;
  limiter: RateLimiter;
  observer?: DecisionObserver | undefined;
  /**
   * The token service's denylist (SPEC §9): true when the token was revoked. Asked after every
   * verification, a cache hit included, so it must be a synchronous in-memory lookup.
   */
  isRevoked?: ((tokenId: string) => boolean) | undefined;
  /**
   * The denylist's version (Denylist.version): while it is unchanged, a principal already found
   * not revoked at it is not looked up again. Without it every decision asks `isRevoked`.
   */
  revocationVersion?: (() => number) | undefined;
}

export interface Decider {
  decide(facts: RequestFacts, trace?: Tracer): Decision | Promise<Decision>;
  /** The status, headers and body a door sends for a deny or answer (rate-limit headers included). */
  render(d: DenyDecision | AnswerDecision): RenderedError;
  readonly loaded: LoadedConfig;
}

const FALLBACK_ROUTE_ID = 'fallback';
const NO_PARAMS: Record<string, string> = Object.freeze({}) as Record<string, string>;
const NO_HEADERS: Record<string, string> = Object.freeze({}) as Record<string, string>;

export function createDecider(loaded: LoadedConfig, deps: DeciderDeps): Decider {
  const { config, routes } = loaded;
  const matchRouteOf = createRouteMatcher(routes);
  const { verifier, limiter, observer, isRevoked, revocationVersion } = deps;
  const renderOpts: RenderOptions = { realm: config.realm, docsUrl: config.docs_url };
  const extractOpts: ExtractOptions = {
    sources: config.tokens.sources,
    queryParam: config.tokens.query_param,
    maxTokenBytes: config.tokens.max_token_bytes,
  };
  const stripNames: readonly string[] = [config.tokens.query_param, 'auth_test'];
  const fallbackRoute: CompiledRoute | null =
    config.fallback === 'authenticated'
      ? { id: FALLBACK_ROUTE_ID, config: { path: '/*', public: false }, methods: null, params: [], upstream: 'default', index: -1 }
      : null;

  const deny = (error: GatewayError, route: CompiledRoute | null = null, principal?: Principal, limit?: LimitDecision): DenyDecision => ({
    kind: 'deny',
    error,
    route,
    principal,
    limitKey: limit?.key,
    responseHeaders: limit?.headers ?? NO_HEADERS,
  });

  /** isRevoked, skipped for a principal found not revoked at the denylist's current version. */
  function revoked(p: Principal, tokenId: string): boolean {
    const v = revocationVersion?.();
    if (v !== undefined && p[NOT_REVOKED_AT] === v) return false;
    if (isRevoked!(tokenId)) return true;
    if (v !== undefined) p[NOT_REVOKED_AT] = v;
    return false;
  }

  function decide(facts: RequestFacts, trace?: Tracer): Decision | Promise<Decision> {
    // ── 1: the request target and Host ──
    const target = facts.target;
    const q = target.indexOf('?');
    const rawPath = q === -1 ? target : target.slice(0, q);
    const rawQuery = q === -1 ? '' : target.slice(q + 1);
    const unsafe = checkTarget(target) ?? hostProblem(facts);
    if (unsafe) {
      const error = new GatewayError('bad_request', { why: unsafe });
      trace?.({ step: 'path_safety', ok: false, error });
      return deny(error);
    }
    trace?.({ step: 'path_safety', ok: true });

    // ── 2: route ──
    const m = matchRouteOf(facts.method, rawPath);
    let route: CompiledRoute;
    let params = NO_PARAMS;
    if (m.kind === 'match') {
      route = m.route;
      params = m.params;
    } else if (fallbackRoute) {
      route = fallbackRoute;
    } else {
      const error = m.kind === 'method_not_allowed' ? new GatewayError('method_not_allowed', { allow: m.allow }) : new GatewayError('route_not_found');
      trace?.({ step: 'route', ok: false, match: m, error });
      return deny(error);
    }
    trace?.({ step: 'route', ok: true, match: m, fallback: route === fallbackRoute });
    const query = rawQuery === '' ? '' : stripParams(rawQuery, stripNames);
    const pathAndQuery = query ? `${rawPath}?${query}` : rawPath;
    if (route.config.public) {
      return { kind: 'forward', outcome: 'public', route, upstream: route.upstream, pathAndQuery, token: undefined, principal: undefined, limitKey: undefined, responseHeaders: NO_HEADERS };
    }

    // ── 3: token ──
    let token: string;
    let source: 'header' | 'query';
    try {
      ({ token, source } = extractToken(facts.authorization, rawQuery, extractOpts));
    } catch (e) {
      const error = asGatewayError(e);
      trace?.({ step: 'token', ok: false, error });
      return deny(error, route);
    }
    trace?.({ step: 'token', ok: true, tokenSource: source, token });

    // ── 4: verify (synchronous for a cached token) ──
    const cached = verifier.cached(token);
    if (cached) return afterVerify(cached);
    return verifier.verify(token).then(afterVerify, (e: unknown) => {
      const error = asGatewayError(e);
      trace?.({ step: 'verify', ok: false, error });
      return deny(error, route);
    });

    function afterVerify(principal: Principal): Decision | Promise<Decision> {
      if (isRevoked !== undefined && principal.tokenId !== undefined && revoked(principal, principal.tokenId)) {
        const error = new GatewayError('token_revoked', { tokenPresented: true, why: 'the token was revoked (token service denylist)' });
        trace?.({ step: 'verify', ok: false, error });
        return deny(error, route);
      }
      trace?.({ step: 'verify', ok: true, principal });
      // ── 5: client type, scopes, room; a refusal still spends one unit of budget ──
      const denied = route === fallbackRoute ? null : authorize(route, principal, params);
      trace?.({ step: 'authorize', ok: !denied, error: denied ?? undefined, principal, match: m });
      if (denied) return limited(principal, true, (l) => deny(denied, route, principal, l), true);

      // ── 6: auth_test: answered here, reading the budget without spending it ──
      let probe: boolean;
      try {
        probe = authTestMode(rawQuery) === 'probe';
      } catch (e) {
        const error = asGatewayError(e);
        trace?.({ step: 'auth_test', ok: false, error });
        return deny(error, route, principal);
      }
      trace?.({ step: 'auth_test', ok: true, probe });
      if (probe) {
        return limited(principal, false, (l) => ({ kind: 'answer', status: 202, body: AUTH_TEST_BODY, route, principal, limitKey: l?.key, responseHeaders: l?.headers ?? NO_HEADERS }));
      }

      // ── 7: rate limit ──
      return limited(principal, true, (l) => ({
        kind: 'forward',
        outcome: 'allowed',
        route,
        upstream: route.upstream,
        pathAndQuery,
        token,
        principal,
        limitKey: l?.key,
        responseHeaders: l?.headers ?? NO_HEADERS,
      }));
    }

    /**
     * Counts (consume) or reads the request's windows, then continues with `next`; a window that
     * is exhausted (or a closed store) turns the outcome into a deny — except for a request that
     * is refused already (`refusing`), which keeps its own error and only spends.
     */
    function limited(principal: Principal, consume: boolean, next: (l: LimitDecision) => Decision, refusing = false): Decision | Promise<Decision> {
      const apply = (l: LimitDecision): Decision => {
        if (l.storeError) observer?.storeError?.(l.storeError, !refusing && !!l.error && !l.limited);
        if (!refusing) trace?.({ step: 'rate_limit', ok: !l.error, limit: l, error: l.error });
        if (!refusing && l.error) {
          if (l.limited) observer?.rateLimited?.(route.id, l.limited);
          return deny(l.error, route, principal, l);
        }
        return next(l);
      };
      const d = limiter.check({ principal, token, route: route === fallbackRoute ? null : route, params, consume });
      return d instanceof Promise ? d.then(apply) : apply(d);
    }
  }

  function render(d: DenyDecision | AnswerDecision): RenderedError {
    if (d.kind === 'answer') return { status: 202, headers: { 'content-type': 'application/json', ...d.responseHeaders }, body: d.body };
    const r = renderError(d.error, renderOpts);
    return { status: r.status, headers: d.responseHeaders === NO_HEADERS ? r.headers : { ...r.headers, ...d.responseHeaders }, body: r.body };
  }

  return { decide, render, loaded };
}

/** HTTP/1.1 needs exactly one Host (RFC 9112 §3.2); HTTP/1.0 may omit it; two are never allowed. */
function hostProblem(f: RequestFacts): string | null {
  if (f.hostCount === undefined) return null;
  if (f.hostCount > 1) return 'more than one Host header';
  if (f.hostCount === 0 && f.httpVersion === '1.1') return 'no Host header (required by HTTP/1.1)';
  return null;
}

function asGatewayError(e: unknown): GatewayError {
  if (e instanceof GatewayError) return e;
  throw e;
}
