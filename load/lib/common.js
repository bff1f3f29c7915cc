// @ts-check
/* global __ENV */
/**
 * Shared helpers of the k6 scripts: environment, token selection, header reading and the rate-budget
 * arithmetic that keeps load tests from measuring 429s instead of latency.
 *
 * @example
 *   import { BASE_URL, parseTokens, tokenAt } from './lib/common.js';
 *   const tokens = new SharedArray('tokens', () => parseTokens(open(TOKENS_FILE)));
 *   http.get(`${BASE_URL}/v2/room`, { headers: { Authorization: `Bearer ${tokenAt(tokens, 0)}` } });
 */

/**
 * One pre-minted token, as written by load/mint-tokens.mjs.
 * @typedef {{ token: string, jti: string }} LoadToken
 */

/** Gateway proxy base URL (no trailing slash). */
export const BASE_URL = stripSlash(__ENV.BASE_URL || 'http://127.0.0.1:8080');
/** Gateway admin base URL: /healthz, /readyz, /metrics. */
export const ADMIN_URL = stripSlash(__ENV.ADMIN_URL || 'http://127.0.0.1:9090');
/** Pre-minted tokens (JSON from mint-tokens.mjs). Pass an absolute path. */
export const TOKENS_FILE = __ENV.TOKENS_FILE || './tokens.json';
/** Authenticated route the load goes to (named TARGET_PATH: k6 also sees the shell's PATH). */
export const TARGET_PATH = __ENV.TARGET_PATH || '/v2/room';

/** @param {string} s */
function stripSlash(s) {
  return s.replace(/\/+$/, '');
}

/**
 * Integer from an environment variable, or the default when unset.
 * @param {string} name
 * @param {number} fallback
 * @returns {number}
 */
export function envInt(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number, got "${raw}"`);
  return n;
}

/**
 * Duration string as k6 accepts it ("90s", "2m", "1h30m") -> seconds.
 * @param {string} d
 * @returns {number}
 */
export function durationSeconds(d) {
  const units = /** @type {Record<string, number>} */ ({ ms: 0.001, s: 1, m: 60, h: 3600 });
  let total = 0;
  let matched = '';
  for (const m of d.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(m[1]) * (units[m[2] ?? 's'] ?? 1);
    matched += m[0];
  }
  if (matched !== d) throw new Error(`not a duration: "${d}" (use e.g. 90s, 2m, 1h30m)`);
  return total;
}

/**
 * Parses the tokens file written by mint-tokens.mjs; fails loudly when it is empty or malformed.
 * @param {string} text
 * @returns {LoadToken[]}
 */
export function parseTokens(text) {
  /** @type {unknown} */
  const doc = JSON.parse(text);
  const list = doc && typeof doc === 'object' && 'tokens' in doc ? /** @type {{tokens: unknown}} */ (doc).tokens : undefined;
  if (!Array.isArray(list) || list.length === 0) {
    throw new Error(`${TOKENS_FILE}: expected {"tokens":[{"token":"...","jti":"..."}]} with at least one token; run load/mint-tokens.mjs`);
  }
  return list.map((t, i) => {
    if (!t || typeof t.token !== 'string' || t.token.split('.').length !== 3) {
      throw new Error(`${TOKENS_FILE}: tokens[${i}] is not a compact JWS`);
    }
    return { token: t.token, jti: String(t.jti ?? i) };
  });
}

/**
 * The i-th token, round robin.
 * @param {ArrayLike<LoadToken>} tokens
 * @param {number} i
 * @returns {string}
 */
export function tokenAt(tokens, i) {
  const t = tokens[i % tokens.length];
  if (!t) throw new Error('no tokens loaded');
  return t.token;
}

/**
 * Response header by name, case-insensitively (k6 canonicalises names, HTTP/2 lower-cases them).
 * @param {{ headers: Record<string, string> }} res
 * @param {string} name
 * @returns {string | undefined}
 */
export function header(res, name) {
  const want = name.toLowerCase();
  for (const k of Object.keys(res.headers)) {
    if (k.toLowerCase() === want) return res.headers[k];
  }
  return undefined;
}

/**
 * Integer header value, or NaN when absent or not a plain non-negative integer.
 * @param {{ headers: Record<string, string> }} res
 * @param {string} name
 * @returns {number}
 */
export function intHeader(res, name) {
  const v = header(res, name);
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : NaN;
}

/**
 * The `reason` field of a gateway error body, or undefined.
 * @param {{ body: unknown }} res
 * @returns {string | undefined}
 */
export function errorReason(res) {
  if (typeof res.body !== 'string') return undefined;
  try {
    const doc = JSON.parse(res.body);
    return doc && doc.error && typeof doc.error.reason === 'string' ? doc.error.reason : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Tokens needed so that `rate` requests/s for `seconds` never exceed `limit` per `windowS` window on
 * any token (round robin; a test shorter than a window only spends its own duration's worth).
 * @param {{ rate: number, seconds: number, limit: number, windowS: number }} p
 * @returns {number}
 */
export function tokensNeeded({ rate, seconds, limit, windowS }) {
  // Fixed windows: one window can see at most min(test length, window) seconds of traffic.
  const perWindow = rate * Math.min(seconds, windowS);
  return Math.ceil(perWindow / limit);
}

/**
 * Window length in seconds from the IETF RateLimit-Policy header (`...;q=500;w=300`), else the
 * WINDOW_S environment variable (default 300).
 * @param {{ headers: Record<string, string> }} res
 * @returns {number}
 */
export function windowSeconds(res) {
  const m = /;\s*w=(\d+)/.exec(header(res, 'RateLimit-Policy') ?? '');
  return m && m[1] ? Number(m[1]) : envInt('WINDOW_S', 300);
}

/**
 * Reads a token's limit and window with an auth_test probe (spends no budget) and aborts the test
 * when the file holds too few tokens for the planned load, which would otherwise measure 429s.
 * @param {{ get: (url: string, params: object) => { status: number, headers: Record<string, string> } }} http
 * @param {ArrayLike<LoadToken>} tokens
 * @param {number} rate requests per second at the peak
 * @param {number} seconds length of the test
 * @returns {{ limit: number, windowS: number }}
 */
export function checkTokenBudget(http, tokens, rate, seconds) {
  const res = http.get(`${BASE_URL}${TARGET_PATH}?auth_test=true`, {
    headers: { Authorization: `Bearer ${tokenAt(tokens, 0)}` },
    tags: { name: 'budget-probe' },
  });
  if (res.status !== 202) {
    throw new Error(`auth_test probe on ${TARGET_PATH} answered ${res.status}, expected 202: check BASE_URL, TARGET_PATH and the tokens' scopes`);
  }
  const limit = intHeader(res, 'X-Ratelimit-Limit');
  const windowS = windowSeconds(res);
  if (Number.isFinite(limit)) {
    const needed = tokensNeeded({ rate, seconds, limit, windowS });
    if (needed > tokens.length) {
      throw new Error(`${rate} req/s for ${seconds}s needs at least ${needed} tokens at ${limit} per ${windowS}s; ${TOKENS_FILE} has ${tokens.length}. Mint more: node load/mint-tokens.mjs --count ${needed * 2}`);
    }
  }
  return { limit, windowS };
}
