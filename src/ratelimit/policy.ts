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
 * The recipient is keyed canonically (`recipientKey`), so one room is one flood window however it
 * is spelled: a numeric value by its integer value (`42`, `042`, `+42`, `42.0`, `4.2e1`, `0x2a`,
 * `４２` are all 42), and a room-bound token's own room name by its room id.
 *
 * No raw token is kept: a token without `jti` is keyed by `principal.tokenHash` (SHA-256,
 * base64url, set by the verifier; the key spells it in hex, as before); only a caller that has no
 * hash passes `token`, which is hashed on the spot and never stored.
 *
 * @example
 *   const limiter = createRateLimiter(cfg.rate_limit, { store, clock: systemClock });
 *   const d = await limiter.check({ principal, route, params, consume: !authTest });
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
  /**
   * Only for principals without `tokenHash` (callers that predate it): the raw bearer token,
   * hashed on the spot when the key needs it (no jti), never stored or logged. Leave it out when
   * the verifier sets `tokenHash`.
   */
  token?: string | undefined;
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

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/**
 * A 32-byte value in unpadded base64url (the verifier's `tokenHash`) as hex, so a jti-less token
 * keeps the key it had when the limiter hashed the token itself; null when `s` is not that form.
 */
function base64urlToHex(s: string): string | null {
  if (!/^[A-Za-z0-9_-]{43}$/.test(s)) return null;
  let bits = 0;
  let acc = 0;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    acc = (acc << 6) | B64URL.indexOf(s[i]!);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += ((acc >> bits) & 0xff).toString(16).padStart(2, '0');
    }
  }
  // 43 characters carry 258 bits: the last 2 must be zero in a canonical encoding.
  return (acc & ((1 << bits) - 1)) === 0 ? out : null;
}

/** Integers with more decimal digits than this are not read as numbers (no room id is that long). */
const MAX_NUMERIC_DIGITS = 1024;
/** Longer values are never numeric: even padded with zeros and underscores they would exceed the bound. */
const MAX_NUMERIC_INPUT = 8 * MAX_NUMERIC_DIGITS;

/** Whitespace as the most lenient common parsers skip it (JS `Number`; Python `int` adds \x1c-\x1f, \x85). */
function isEdgeSpace(c: string): boolean {
  const cp = c.charCodeAt(0);
  return (cp >= 0x1c && cp <= 0x1f) || cp === 0x85 || /\s/.test(c);
}

function trimEdges(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isEdgeSpace(s[a]!)) a++;
  while (b > a && isEdgeSpace(s[b - 1]!)) b--;
  return s.slice(a, b);
}
const ND = /^\p{Nd}$/u;
/** Code point of the zero of each Unicode decimal digit's run, memoised (a few hundred entries). */
const zeroOf = new Map<number, number>();

/** Value 0–9 of a Unicode decimal digit (`\p{Nd}`: ASCII, Arabic-Indic, fullwidth, ...), else -1. */
function decimalDigit(cp: number): number {
  if (cp >= 0x30 && cp <= 0x39) return cp - 0x30;
  if (cp < 0x80) return -1;
  let zero = zeroOf.get(cp);
  if (zero === undefined) {
    if (!ND.test(String.fromCodePoint(cp))) return -1;
    // Unicode assigns decimal digits only in contiguous runs 0..9 (a stability guarantee); runs
    // may abut (U+1D7CE..U+1D7FF is five), so count from the start of the stretch in tens.
    let start = cp;
    while (start > 0 && ND.test(String.fromCodePoint(start - 1))) start--;
    zero = cp - ((cp - start) % 10);
    zeroOf.set(cp, zero);
  }
  return cp - zero;
}

/**
 * Reads `digits` (code points) of `radix` with Python's single underscores between digits; `lead`
 * allows one underscore before the first digit (Python's `0x_2a`). Returns ASCII digits or null.
 */
function readDigits(cps: readonly number[], from: number, to: number, radix: 2 | 8 | 10 | 16, lead = false): string | null {
  let out = '';
  let prevDigit = lead;
  for (let i = from; i < to; i++) {
    const cp = cps[i]!;
    if (cp === 0x5f /* _ */) {
      if (!prevDigit || i === to - 1) return null;
      prevDigit = false;
      continue;
    }
    let v = decimalDigit(cp);
    if (v === -1 && radix === 16) {
      const lower = cp | 0x20;
      if (lower >= 0x61 && lower <= 0x66) v = lower - 0x61 + 10;
    }
    if (v === -1 || v >= radix) return null;
    out += v.toString(16);
    prevDigit = true;
  }
  return out;
}

/** ASCII decimal digits without leading zeros ('' for zero). */
function stripZeros(d: string): string {
  let i = 0;
  while (i < d.length && d.charCodeAt(i) === 0x30) i++;
  return d.slice(i);
}

/**
 * The integer a path value stands for, as a canonical decimal string (`-?(0|[1-9][0-9]*)`), or null
 * when it is not a whole number. Deliberately lenient, because the danger is an upstream that reads
 * a spelling as room 42 while the limiter counts it apart: after trimming whitespace, an optional
 * sign and either decimal digits (any script's, Python-style `_` between them) with an optional
 * all-zero fraction and exponent (`42`, `042`, `+42`, `42.0`, `42.`, `4.2e1`, `4_2`, `４２`), or a
 * `0x` / `0o` / `0b` literal. `-0` is `0`; a negative value keeps its sign. Huge values are exact
 * (digit strings, never `Number`); beyond 1024 digits a value is not numeric. Never throws.
 *
 * Not numeric (compared as text): prefixes such as `42abc` (parseInt would read 42, but in HipChat's
 * API that is a room name), `Infinity`, `NaN`, legacy octal (`042` is 42, as in SPEC §4).
 *
 * @example
 *   canonicalInteger('+042.00'); // '42'
 *   canonicalInteger('-0');      // '0'
 *   canonicalInteger('ops');     // null
 */
export function canonicalInteger(value: string): string | null {
  if (value.length === 0 || value.length > MAX_NUMERIC_INPUT) return null;
  const s = trimEdges(value);
  if (s.length === 0) return null;
  const cps = Array.from(s, (c) => c.codePointAt(0)!);
  let i = 0;
  let negative = false;
  if (cps[0] === 0x2b /* + */ || cps[0] === 0x2d /* - */) {
    negative = cps[0] === 0x2d;
    i = 1;
  }
  let magnitude: string | null;
  const prefix = cps[i] === 0x30 && cps.length > i + 2 ? cps[i + 1]! | 0x20 : 0;
  if (prefix === 0x78 /* x */ || prefix === 0x6f /* o */ || prefix === 0x62 /* b */) {
    const radix = prefix === 0x78 ? 16 : prefix === 0x6f ? 8 : 2;
    const digits = readDigits(cps, i + 2, cps.length, radix, true);
    if (digits === null || digits.length === 0 || digits.length > MAX_NUMERIC_DIGITS) return null;
    magnitude = stripZeros(BigInt(`0${String.fromCharCode(prefix)}${digits}`).toString(10));
  } else {
    magnitude = decimalMagnitude(cps, i);
  }
  if (magnitude === null) return null;
  if (magnitude === '') return '0';
  if (magnitude.length > MAX_NUMERIC_DIGITS) return null;
  return negative ? `-${magnitude}` : magnitude;
}

/** `int[.frac][e±exp]` from `from` to the end: the integer's digits without leading zeros, or null. */
function decimalMagnitude(cps: readonly number[], from: number): string | null {
  let dot = -1;
  let exp = -1;
  for (let j = from; j < cps.length; j++) {
    const cp = cps[j]!;
    if (cp === 0x2e /* . */ && dot === -1 && exp === -1) dot = j;
    else if ((cp | 0x20) === 0x65 /* e */ && exp === -1) exp = j;
  }
  const intEnd = dot !== -1 ? dot : exp !== -1 ? exp : cps.length;
  const fracEnd = exp !== -1 ? exp : cps.length;
  const intDigits = readDigits(cps, from, intEnd, 10);
  const fracDigits = dot !== -1 ? readDigits(cps, dot + 1, fracEnd, 10) : '';
  if (intDigits === null || fracDigits === null || intDigits.length + fracDigits.length === 0) return null;
  let shift = 0;
  if (exp !== -1) {
    let k = exp + 1;
    let expNegative = false;
    if (cps[k] === 0x2b || cps[k] === 0x2d) {
      expNegative = cps[k] === 0x2d;
      k++;
    }
    const expDigits = readDigits(cps, k, cps.length, 10);
    if (expDigits === null || expDigits.length === 0) return null;
    const e = stripZeros(expDigits);
    // An exponent this large either overflows the digit bound or leaves a fraction (or is zero).
    shift = e.length > 6 ? (expNegative ? -Infinity : Infinity) : (expNegative ? -1 : 1) * Number(e || '0');
  }
  const all = intDigits + fracDigits;
  const lead = all.length - stripZeros(all).length;
  const digits = all.slice(lead);
  if (digits === '') return ''; // zero, whatever the exponent
  // Position of the decimal point within `digits`.
  const point = intDigits.length - lead + shift;
  if (point > MAX_NUMERIC_DIGITS) return null;
  if (point < digits.length) {
    if (point <= 0 || !/^0*$/.test(digits.slice(point))) return null; // a fraction remains
    return digits.slice(0, point);
  }
  return digits + '0'.repeat(point - digits.length);
}

/**
 * The flood-control key of a recipient (SPEC §4): `n:<integer>` for a numeric value (see
 * `canonicalInteger`), `s:<value>` for any other value, compared exactly (no case folding or
 * Unicode normalisation: the SPEC does not say room names are case-insensitive, and authorization
 * compares them exactly too). A token bound to a room (room id and room name claims) that addresses
 * its room by name gets the key of its room id, so `/room/ops` and `/room/42` are one window;
 * a value made only of digits is never read as a room name (SPEC §3). Only the token's own room is
 * known to the gateway: another room's name and id stay two keys. Never throws.
 *
 * @example
 *   recipientKey('042', p);                                   // 'n:42'
 *   recipientKey('ops', { ...p, room: '42', roomName: 'ops' }); // 'n:42'
 *   recipientKey('ops', p);                                    // 's:ops'
 */
export function recipientKey(value: string, p: Pick<Principal, 'room' | 'roomName'>): string {
  if (p.room !== undefined && p.roomName !== undefined && value === p.roomName && !/^[0-9]+$/.test(value)) {
    return valueKey(p.room);
  }
  return valueKey(value);
}

function valueKey(value: string): string {
  const n = canonicalInteger(value);
  return n !== null ? `n:${n}` : `s:${value}`;
}

const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Escapes separators and Redis hash-tag braces, then bounds the length. Never throws: a string with
 * a lone surrogate (a JSON claim may carry one; encodeURIComponent would throw) is hashed from its
 * JSON form, which keeps every UTF-16 unit distinct, under its own marker.
 */
function keyPart(s: string): string {
  if (LONE_SURROGATE.test(s)) return `#u${sha256hex(JSON.stringify(s))}`;
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

/** Store key of a token's budget, and its log form (a hash only by prefix). */
interface BaseKey {
  storeKey: string;
  logKey: string;
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

  // Principals come from the token cache, so one token's key is derived once, not on every
  // request. The cache holds keys only, and only keys that the principal alone determines (jti,
  // subject, tokenHash): no token string is kept, and a principal reused with another token can
  // never be handed the first token's key.
  const baseKeys = new WeakMap<Principal, BaseKey>();
  function baseKey(p: Principal, token: string | undefined): BaseKey {
    const hit = baseKeys.get(p);
    if (hit) return hit;
    const own = principalKey(p);
    if (own) {
      baseKeys.set(p, own);
      return own;
    }
    if (token === undefined) {
      throw new TypeError('rate limiter: a principal without tokenId or tokenHash needs the token to derive its key');
    }
    return hashKey(sha256hex(token));
  }

  /** The key the principal determines by itself, or null when only the token can tell. */
  function principalKey(p: Principal): BaseKey | null {
    if (cfg.key === 'subject' && p.subject) {
      const k = `sub:${keyPart(p.issuerName)}:${keyPart(p.subject)}`;
      return { storeKey: k, logKey: k };
    }
    if (p.tokenId) {
      const k = `jti:${keyPart(p.issuerName)}:${keyPart(p.tokenId)}`;
      return { storeKey: k, logKey: k };
    }
    return p.tokenHash ? hashKey(base64urlToHex(p.tokenHash) ?? sha256hex(p.tokenHash)) : null;
  }

  /** Store key of a jti-less token's budget (SHA-256 of the token, hex), and its log form (a prefix). */
  function hashKey(hex: string): BaseKey {
    return { storeKey: `tok:${hex}`, logKey: `tok:${hex.slice(0, 16)}` };
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

  function floodPlan(base: string, p: Principal, route: CompiledRoute | null, params: Readonly<Record<string, string>>): WindowPlan | null {
    const fc = route?.config.flood_control;
    if (!route || !fc) return null;
    // matchRoute already returns decoded parameters; decoding again would merge %2541 with %41.
    const recipient = recipientKey(params[fc.param] ?? '', p);
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
    const flood = floodPlan(base, input.principal, input.route, input.params);
    const plans: WindowPlan[] = flood ? [main, flood] : [main];
    const consume = input.consume;
    try {
      // Issued together so the Redis store's auto-pipelining sends them in one round trip.
      const c0 = store.increment(main.storeKey, Math.floor(now / main.windowMs) * main.windowMs, main.windowMs, consume);
      const c1 = flood ? store.increment(flood.storeKey, Math.floor(now / flood.windowMs) * flood.windowMs, flood.windowMs, consume) : 0;
      if (c0 instanceof Promise || c1 instanceof Promise) {
        return Promise.all(flood ? [c0, c1] : [c0]).then(
          (n) => decide(plans, n, now, consume, logKey),
          (e: unknown) => storeFailure(e, logKey),
        );
      }
      return decide(plans, flood ? [c0, c1] : [c0], now, consume, logKey);
    } catch (e) {
      return storeFailure(e, logKey);
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
