/**
 * The rate limiter (SPEC.md §4): which window a request counts in, the arithmetic of allowed /
 * remaining / reset, the response headers, and the error when a window is exhausted. Plain values
 * in, plain values out; the only effect is the store call.
 *
 * Windows are fixed and aligned to the epoch (`start = floor(now / w) * w`), so every replica
 * agrees on their boundaries. The main window is the token's default window (limit from the
 * client-type override or `default`), or the route's own window when the route sets `rate_limit`.
 * Flood control adds a second window per (token, route, recipient). Both are counted in parallel.
 *
 * @example
 *   const limiter = createRateLimiter(cfg.rate_limit, { store, clock: systemClock });
 *   const d = await limiter.check({ principal, token, route, params, consume: !authTest });
 *   for (const [k, v] of Object.entries(d.headers)) res.headers.set(k, v);
 *   if (d.storeError) metrics.storeErrors.inc({ store: limiter.store.kind });
 *   if (d.error) throw d.error; // rate_limited | flood_limited | store_unavailable
 */
import { sha256 } from '../hash.js';
import type { RateLimitConfig } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import type { Clock, CompiledRoute, Principal, RateLimitStore, WindowState } from '../types.js';

export interface LimitInput {
  principal: Principal;
  /** The raw bearer token: hashed for the key when there is no jti, never stored or logged. */
  token: string;
  /** The matched route; null for `fallback: authenticated` requests. */
  route: CompiledRoute | null;
  /** Path parameters of the match (flood control reads its recipient from here). */
  params: Readonly<Record<string, string>>;
  /** false for auth_test: read the windows without spending budget. */
  consume: boolean;
}

export interface LimitDecision {
  /** Headers to put on the response (the gateway's or the upstream's). */
  headers: Record<string, string>;
  /** rate_limited | flood_limited | store_unavailable. */
  error?: GatewayError;
  /** Set whenever the store failed (with `on_store_error: open` the request goes on). */
  storeError?: Error;
  /** Which window denied. */
  limited?: 'rate' | 'flood';
  /** The limit key, for logs: `jti:<issuer>:<jti>`, `sub:<issuer>:<subject>` or `tok:<hash prefix>`. */
  key: string;
}

export interface RateLimiter {
  /** Synchronous when the store is (memory); a promise when it is remote (Redis). */
  check(input: LimitInput): LimitDecision | Promise<LimitDecision>;
  readonly store: RateLimitStore;
}

/** Header names, in canonical case (SPEC.md §4; draft-ietf-httpapi-ratelimit-headers). */
export const RATE_LIMIT_HEADERS = {
  limit: 'X-Ratelimit-Limit',
  remaining: 'X-Ratelimit-Remaining',
  reset: 'X-Ratelimit-Reset',
  floodLimit: 'X-FloodControl-Limit',
  floodRemaining: 'X-FloodControl-Remaining',
  floodReset: 'X-FloodControl-Reset',
  ietfPolicy: 'RateLimit-Policy',
  ietf: 'RateLimit',
} as const;

/** Identity parts longer than this are hashed, so keys (and the memory store) stay small. */
const MAX_KEY_PART = 128;

function sha256hex(s: string): string {
  return sha256(s, 'hex');
}

/** Escapes separators and Redis hash-tag braces, then bounds the length. */
function keyPart(s: string): string {
  const enc = encodeURIComponent(s);
  return enc.length > MAX_KEY_PART ? `#${sha256hex(s)}` : enc;
}

const sfCache = new Map<string, string>();

/** Structured-field sf-string (RFC 9651 §3.3.3): printable ASCII, `"` and `\` escaped. */
function sfString(s: string): string {
  let out = sfCache.get(s);
  if (out === undefined) {
    out = `"${s.replace(/[^\x20-\x7e]/g, '?').replace(/["\\]/g, '\\$&')}"`;
    // Policy names come from config (route ids, client types): a small, bounded set.
    if (sfCache.size < 10_000) sfCache.set(s, out);
  }
  return out;
}

interface WindowPlan {
  storeKey: string;
  limit: number;
  windowMs: number;
  /** Name in the IETF fields. */
  policy: string;
}

function evaluate(plan: WindowPlan, count: number, now: number, consume: boolean): WindowState {
  const startMs = Math.floor(now / plan.windowMs) * plan.windowMs;
  return {
    limit: plan.limit,
    count,
    remaining: Math.max(0, plan.limit - count),
    resetMs: startMs + plan.windowMs,
    windowS: plan.windowMs / 1000,
    // A consuming hit is included in `count`; a read asks whether one more hit would pass.
    allowed: consume ? count <= plan.limit : count < plan.limit,
  };
}

/** Whole seconds from `now` until `resetMs` (never negative). */
function secondsUntil(resetMs: number, now: number): number {
  return Math.max(0, Math.ceil((resetMs - now) / 1000));
}

/**
 * Builds the limiter from the validated `rate_limit` config, a store and a clock (epoch ms; give
 * the memory store the same clock).
 *
 * @example
 *   const limiter = createRateLimiter(cfg.rate_limit, { store: createMemoryStore({ maxKeys: cfg.rate_limit.max_keys, clock }), clock });
 */
export function createRateLimiter(cfg: RateLimitConfig, deps: { store: RateLimitStore; clock: Clock }): RateLimiter {
  const { store, clock } = deps;
  const enabled = cfg.enabled !== false;
  const ietf = cfg.ietf_headers !== false;
  const closed = cfg.on_store_error === 'closed';

  // Principals come from the token cache, so one token's key is derived (and its token hashed)
  // once, not on every request.
  // The token is kept beside its key so a principal reused with another token is never trusted.
  const baseKeys = new WeakMap<Principal, { token: string; key: { storeKey: string; logKey: string } }>();
  function baseKey(p: Principal, token: string): { storeKey: string; logKey: string } {
    const hit = baseKeys.get(p);
    if (hit && hit.token === token) return hit.key;
    const key = deriveBaseKey(p, token);
    baseKeys.set(p, { token, key });
    return key;
  }

  /** Store key of the token's budget, and its log form (a hash only by prefix). */
  function deriveBaseKey(p: Principal, token: string): { storeKey: string; logKey: string } {
    if (cfg.key === 'subject' && p.subject) {
      const k = `sub:${keyPart(p.issuerName)}:${keyPart(p.subject)}`;
      return { storeKey: k, logKey: k };
    }
    if (p.tokenId) {
      const k = `jti:${keyPart(p.issuerName)}:${keyPart(p.tokenId)}`;
      return { storeKey: k, logKey: k };
    }
    const h = sha256hex(token);
    return { storeKey: `tok:${h}`, logKey: `tok:${h.slice(0, 16)}` };
  }

  function mainPlan(base: string, p: Principal, route: CompiledRoute | null): WindowPlan {
    const own = route?.config.rate_limit;
    if (route && own) {
      return { storeKey: `${base}|route:${keyPart(route.id)}`, limit: own.limit, windowMs: own.window_s * 1000, policy: route.id };
    }
    // Own-property lookup: a client type such as "constructor" must not reach Object.prototype.
    const types = cfg.client_types as Partial<Record<string, { limit: number; window_s: number }>>;
    const override = Object.hasOwn(types, p.clientType) ? types[p.clientType] : undefined;
    const w = override ?? cfg.default;
    return { storeKey: base, limit: w.limit, windowMs: w.window_s * 1000, policy: override ? p.clientType : 'default' };
  }

  function floodPlan(base: string, route: CompiledRoute | null, params: Readonly<Record<string, string>>): WindowPlan | null {
    const fc = route?.config.flood_control;
    if (!route || !fc) return null;
    // matchRoute already returns decoded parameters; decoding again would merge %2541 with %41.
    const recipient = params[fc.param] ?? '';
    return {
      storeKey: `${base}|flood:${keyPart(route.id)}:${keyPart(recipient)}`,
      limit: fc.limit,
      windowMs: fc.window_s * 1000,
      policy: 'flood',
    };
  }

  function check(input: LimitInput): LimitDecision | Promise<LimitDecision> {
    const { storeKey: base, logKey } = baseKey(input.principal, input.token);
    if (!enabled) return { headers: {}, key: logKey };

    const now = clock();
    const main = mainPlan(base, input.principal, input.route);
    const flood = floodPlan(base, input.route, input.params);
    const plans: WindowPlan[] = flood ? [main, flood] : [main];
    const failed = (e: unknown) => storeFailure(e, logKey);
    try {
      const hit = (w: WindowPlan) => store.increment(w.storeKey, Math.floor(now / w.windowMs) * w.windowMs, w.windowMs, input.consume);
      // Issued together so the Redis store's auto-pipelining sends them in one round trip.
      const counts = plans.map(hit);
      if (counts.some((c) => c instanceof Promise)) {
        return Promise.all(counts).then((n) => decide(plans, n, now, input.consume, logKey), failed);
      }
      return decide(plans, counts as number[], now, input.consume, logKey);
    } catch (e) {
      return failed(e);
    }
  }

  function storeFailure(e: unknown, logKey: string): LimitDecision {
    const storeError = e instanceof Error ? e : new Error(String(e));
    if (!closed) return { headers: {}, storeError, key: logKey };
    return {
      headers: {},
      storeError,
      error: new GatewayError('store_unavailable', { why: `rate-limit store (${store.kind}) failed: ${storeError.message}` }),
      key: logKey,
    };
  }

  function decide(plans: WindowPlan[], counts: readonly number[], now: number, consume: boolean, logKey: string): LimitDecision {
    const flood = plans.length > 1;
    const states = plans.map((w, i) => evaluate(w, counts[i] ?? 0, now, consume));
    const main = states[0]!;
    const floodState = flood ? states[1] : undefined;

    const headers: Record<string, string> = {
      [RATE_LIMIT_HEADERS.limit]: String(main.limit),
      [RATE_LIMIT_HEADERS.remaining]: String(main.remaining),
      [RATE_LIMIT_HEADERS.reset]: String(Math.ceil(main.resetMs / 1000)),
    };
    if (floodState) {
      headers[RATE_LIMIT_HEADERS.floodLimit] = String(floodState.limit);
      headers[RATE_LIMIT_HEADERS.floodRemaining] = String(floodState.remaining);
      headers[RATE_LIMIT_HEADERS.floodReset] = String(Math.ceil(floodState.resetMs / 1000));
    }
    if (ietf) {
      headers[RATE_LIMIT_HEADERS.ietfPolicy] = plans
        .map((w, i) => `${sfString(w.policy)};q=${states[i]!.limit};w=${states[i]!.windowS}`)
        .join(', ');
      headers[RATE_LIMIT_HEADERS.ietf] = plans
        .map((w, i) => `${sfString(w.policy)};r=${states[i]!.remaining};t=${secondsUntil(states[i]!.resetMs, now)}`)
        .join(', ');
    }

    if (!main.allowed) {
      return {
        headers,
        limited: 'rate',
        error: new GatewayError('rate_limited', { retryAfter: secondsUntil(main.resetMs, now) }),
        key: logKey,
      };
    }
    if (floodState && !floodState.allowed) {
      return {
        headers,
        limited: 'flood',
        error: new GatewayError('flood_limited', { retryAfter: secondsUntil(floodState.resetMs, now) }),
        key: logKey,
      };
    }
    return { headers, key: logKey };
  }

  return { check, store };
}
