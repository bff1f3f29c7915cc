/**
 * Token verification (SPEC §1.4): compact JWS only, via jose, against the issuer its unverified
 * `iss` selects; every failure is a GatewayError with a stable code, `tokenPresented: true` and an
 * operator-facing `why` that never contains the token. Successes are cached (token-cache.ts).
 *
 * Order: size/shape/canonical base64url (token_malformed; before the cache, so a re-spelled
 * token is refused, never looked up) → cache → header `alg` (`none`, or allowed by no issuer:
 * algorithm_forbidden) → issuer by `iss` (issuer_unknown) → `alg` in that issuer's allowlist →
 * keys (key_unknown / keys_unavailable) → jwtVerify: signature, exp, nbf, iss, aud, max age →
 * `iat` not in the future → claim mapping (token_malformed when a claim is not exact) → revoked
 * `jti`.
 *
 * The principal carries `tokenHash` (SHA-256 base64url of the token, computed once per
 * verification and also the cache key), so nothing downstream needs the raw token to key it.
 *
 * @example
 *   const verifier = await createTokenVerifier(config.tokens, { clock: Date.now, baseDir, observer });
 *   const principal = await verifier.verify(token);   // throws GatewayError
 *   const status = await verifier.readiness();        // [{ issuer: 'idp', ok: true }]
 */
import { decodeJwt, decodeProtectedHeader, errors, jwtVerify, type JWTPayload, type JWTVerifyOptions, type ProtectedHeaderParameters } from 'jose';
import { GatewayError, type ErrorCode } from '../errors.js';
import { clip as clipBytes } from '../clip.js';
import type { IssuerConfig, TokensConfig } from '../config/schema.js';
import type { Clock, Principal } from '../types.js';
import { mapClaims } from './claims.js';
import { utf8Length } from './extract-token.js';
import { loadIssuerKeys, type IssuerKeys, type StoreKeySource, type VerifyKey } from './keys.js';
import { createTokenCache, tokenHash } from './token-cache.js';

export interface AuthObserver {
  /**
   * One call per `verify` that reaches the cache: hit, miss, or cache disabled (`max_entries: 0`).
   * A token refused by its shape alone (size, not compact JWS, non-canonical base64url) never
   * reaches it and is not counted.
   */
  tokenCache?(result: 'hit' | 'miss' | 'disabled'): void;
  /**
   * One `success` or `error` per JWKS fetch; additionally `stale` each time a failed refresh is
   * answered with the last good keys.
   */
  jwksRefresh?(issuer: string, result: 'success' | 'error' | 'stale'): void;
}

export interface TokenVerifier {
  /** The token's Principal, or a GatewayError (401 codes, or 503 keys_unavailable). */
  verify(token: string): Promise<Principal>;
  /**
   * The principal of an already verified, unexpired token, synchronously (a cache hit, counted as
   * one), else undefined: the request path skips a promise per request when the cache answers.
   * Keyed by the hash of the exact string: a spelling `verify` refuses is never stored, so it
   * never answers here either.
   */
  cached(token: string): Principal | undefined;
  /** Per issuer: are its keys available (a remote JWKS never fetched is tried once). */
  readiness(): Promise<Array<{ issuer: string; ok: boolean; error?: string }>>;
  /** The token cache's entry count and estimated bytes (for tests, the memory bench and ops). */
  cacheStats(): { entries: number; bytes: number };
}

export interface VerifierDeps {
  clock: Clock;
  /** Directory relative key files resolve against (the config file's directory). */
  baseDir?: string | undefined;
  observer?: AuthObserver | undefined;
  /** Keys of the token service's issuer, read from its store (SPEC §9). */
  storeKeys?: StoreKeySource | undefined;
}

interface IssuerEntry {
  config: IssuerConfig;
  keys: IssuerKeys;
  revoked: ReadonlySet<string>;
}

/** Three base64url parts; the signature may be empty (so `alg: none` is reported as such). */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const B64URL_ONLY = /^[A-Za-z0-9_-]*$/;

/**
 * True when `s` is base64url (no padding) in its one canonical spelling: a length that is not
 * 1 mod 4, and zero in the unused low bits of the last character (2 bits when 3 characters
 * remain, 4 when 2 remain). Decoders ignore those bits, so without this check one signature has
 * 4 (HS256) to 16 (RS/ES) spellings that all verify, each its own cache entry and budget.
 *
 * @example
 *   isCanonicalBase64url('YQ');   // true  ('a')
 *   isCanonicalBase64url('YR');   // false (also decodes to 'a')
 */
export function isCanonicalBase64url(s: string): boolean {
  if (!B64URL_ONLY.test(s)) return false;
  const rest = s.length % 4;
  if (rest === 0) return true;
  if (rest === 1) return false;
  const last = B64URL.indexOf(s[s.length - 1]!);
  return (last & (rest === 2 ? 0x0f : 0x03)) === 0;
}

/**
 * The checks that need nothing but the string (size, compact JWS, canonical base64url in each
 * part), as `token_malformed`; they run before the cache is consulted.
 */
export function checkTokenShape(token: string, maxTokenBytes: number): GatewayError | null {
  if (token.length > maxTokenBytes) return tooLong(maxTokenBytes);
  if (!COMPACT_JWS.test(token)) {
    // A compact JWS is ASCII, its length its byte count: UTF-8 is counted only for the strings
    // refused here, to name the size when that is what they break (no Buffer: every runtime).
    if (utf8Length(token) > maxTokenBytes) return tooLong(maxTokenBytes);
    return fail('token_malformed', 'not a compact JWS (three base64url parts separated by dots)');
  }
  const parts = token.split('.');
  for (let i = 0; i < 3; i++) {
    if (!isCanonicalBase64url(parts[i]!)) {
      return fail('token_malformed', `the ${PART_NAMES[i]} is not canonical base64url (non-zero unused bits or impossible length)`);
    }
  }
  return null;
}

const PART_NAMES = ['protected header', 'payload', 'signature'] as const;

function tooLong(maxTokenBytes: number): GatewayError {
  return fail('token_malformed', `token is longer than ${maxTokenBytes} bytes`);
}

/**
 * Builds the verifier: reads every issuer's key files once (ConfigError on a bad one) and sets up
 * remote JWKS resolvers (fetched lazily, on first use or `readiness()`).
 */
export async function createTokenVerifier(cfg: TokensConfig, deps: VerifierDeps): Promise<TokenVerifier> {
  const { clock, observer } = deps;
  const entries: IssuerEntry[] = await Promise.all(
    cfg.issuers.map(async (config, i) => ({
      config,
      keys: await loadIssuerKeys(config, i, { baseDir: deps.baseDir, observer, storeKeys: deps.storeKeys }),
      revoked: new Set(config.revoked_jti),
    })),
  );
  const byIss = new Map<string, IssuerEntry>();
  let withoutIss: IssuerEntry | undefined;
  for (const e of entries) {
    if (e.config.issuer !== undefined) byIss.set(e.config.issuer, e);
    else withoutIss = e;
  }
  const anyAllowed = new Set<string>(entries.flatMap((e) => e.config.algorithms));
  const tolerance = cfg.clock_tolerance_s;
  const cache = createTokenCache({ maxEntries: cfg.cache.max_entries, maxBytes: cfg.cache.max_bytes, clock });

  /** Everything after the shape check and the cache: header, issuer, keys, jose, claims. */
  async function verifyUncached(token: string): Promise<{ principal: Principal; cacheUntilMs?: number }> {
    let header: ProtectedHeaderParameters;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw fail('token_malformed', 'the protected header is not base64url-encoded JSON');
    }
    const alg = header.alg;
    if (typeof alg !== 'string' || alg === '') throw fail('token_malformed', 'the protected header has no "alg"');
    if (alg.toLowerCase() === 'none') throw fail('algorithm_forbidden', 'unsecured token (alg "none")');
    if (!anyAllowed.has(alg)) throw fail('algorithm_forbidden', `alg "${clip(alg)}" is allowed by no issuer`);

    let claims: JWTPayload;
    try {
      claims = decodeJwt(token);
    } catch {
      throw fail('token_malformed', 'the payload is not a base64url-encoded JSON object');
    }
    const iss = claims.iss;
    const entry = (typeof iss === 'string' ? byIss.get(iss) : undefined) ?? withoutIss;
    if (!entry) {
      throw fail('issuer_unknown', typeof iss === 'string' ? `iss "${clip(iss)}" matches no configured issuer` : 'the token has no string "iss" and every issuer requires one');
    }
    const issuer = entry.config;
    if (!issuer.algorithms.includes(alg as IssuerConfig['algorithms'][number])) {
      throw fail('algorithm_forbidden', `alg "${alg}" is not allowed for issuer "${issuer.name}" (allowed: ${issuer.algorithms.join(', ')})`);
    }

    const keys = await entry.keys.keysFor(header);
    const now = clock();
    const options: JWTVerifyOptions = {
      algorithms: [...issuer.algorithms],
      clockTolerance: tolerance,
      currentDate: new Date(now),
      requiredClaims: issuer.require_exp ? ['exp'] : [],
    };
    if (issuer.issuer !== undefined) options.issuer = issuer.issuer;
    if (issuer.audience !== undefined) options.audience = issuer.audience;
    if (issuer.max_token_age_s !== undefined) options.maxTokenAge = issuer.max_token_age_s;

    let payload: JWTPayload | undefined;
    let lastError: unknown;
    for (const key of keys) {
      try {
        payload = (await jwtVerify(token, key as VerifyKey, options)).payload;
        break;
      } catch (e) {
        lastError = e;
        // Another secret (rotation) or another matching JWK may still verify the signature.
        if (e instanceof errors.JWSSignatureVerificationFailed || e instanceof TypeError) continue;
        throw mapJoseError(e, issuer, now, tolerance);
      }
    }
    if (!payload) throw mapJoseError(lastError, issuer, now, tolerance);

    const nowS = Math.floor(now / 1000);
    if (typeof payload.iat === 'number' && payload.iat > nowS + tolerance) {
      throw fail('token_not_yet_valid', `iat ${payload.iat} is more than ${tolerance}s after now (${nowS})`);
    }
    const principal = mapClaims(payload, issuer.claims, issuer.name);
    for (const id of [payload.jti, principal.tokenId]) {
      if (typeof id === 'string' && entry.revoked.has(id)) {
        throw fail('token_revoked', `jti "${clip(id)}" is revoked for issuer "${issuer.name}"`);
      }
    }
    const cacheUntilMs =
      issuer.max_token_age_s !== undefined && typeof payload.iat === 'number' ? (payload.iat + issuer.max_token_age_s) * 1000 : undefined;
    return { principal, cacheUntilMs };
  }

  return {
    cached(token) {
      if (!cache.enabled) return undefined;
      const hit = cache.get(tokenHash(token));
      if (hit) observer?.tokenCache?.('hit');
      return hit;
    },
    async verify(token) {
      const bad = checkTokenShape(token, cfg.max_token_bytes);
      if (bad) throw bad;
      const key = tokenHash(token);
      if (!cache.enabled) {
        observer?.tokenCache?.('disabled');
      } else {
        const hit = cache.get(key);
        if (hit) {
          observer?.tokenCache?.('hit');
          return hit;
        }
        observer?.tokenCache?.('miss');
      }
      const { principal, cacheUntilMs } = await verifyUncached(token);
      principal.tokenHash = key;
      cache.set(key, principal, cacheUntilMs);
      return principal;
    },
    cacheStats() {
      return { entries: cache.size, bytes: cache.bytes };
    },
    async readiness() {
      return Promise.all(
        entries.map(async (e) => {
          const r = await e.keys.readiness();
          return r.ok ? { issuer: e.config.name, ok: true } : { issuer: e.config.name, ok: false, error: r.error ?? 'keys unavailable' };
        }),
      );
    },
  };
}

function fail(code: ErrorCode, why: string): GatewayError {
  return new GatewayError(code, { tokenPresented: true, why });
}

function clip(s: string): string {
  return clipBytes(s, 64);
}

/** Maps a jose (or key-resolution) failure to our code. Only jose's messages are used: they never hold the token. */
function mapJoseError(e: unknown, issuer: IssuerConfig, nowMs: number, tolerance: number): GatewayError {
  if (e instanceof GatewayError) return e;
  const nowS = Math.floor(nowMs / 1000);
  const who = `issuer "${issuer.name}"`;
  if (e instanceof errors.JWTExpired) {
    if (e.claim === 'iat') {
      return fail('token_too_old', `iat ${String(e.payload.iat)} is older than max_token_age_s ${issuer.max_token_age_s} (+${tolerance}s tolerance) at ${nowS}`);
    }
    return fail('token_expired', `exp ${String(e.payload.exp)} is not after now (${nowS}) minus ${tolerance}s tolerance`);
  }
  if (e instanceof errors.JWTClaimValidationFailed) {
    const invalid = e.reason === 'invalid';
    switch (e.claim) {
      case 'nbf':
        return invalid
          ? fail('token_malformed', '"nbf" is not a number')
          : fail('token_not_yet_valid', `nbf ${String(e.payload.nbf)} is more than ${tolerance}s after now (${nowS})`);
      case 'aud':
        return fail('audience_mismatch', e.reason === 'missing' ? `the token has no "aud"; ${who} expects ${fmtAud(issuer.audience)}` : `aud does not include ${fmtAud(issuer.audience)}`);
      case 'iss':
        return fail('issuer_unknown', `iss does not match ${who}`);
      case 'iat':
        if (e.reason === 'missing') return fail('token_too_old', `the token has no "iat"; ${who} sets max_token_age_s`);
        if (invalid) return fail('token_malformed', '"iat" is not a number');
        return fail('token_not_yet_valid', `iat ${String(e.payload.iat)} is more than ${tolerance}s after now (${nowS})`);
      case 'exp':
        return fail('token_malformed', e.reason === 'missing' ? `the token has no "exp" and ${who} requires one (require_exp)` : '"exp" is not a number');
      default:
        return fail('token_malformed', `claim "${clip(e.claim)}" failed validation (${e.reason})`);
    }
  }
  if (e instanceof errors.JWSSignatureVerificationFailed) return fail('signature_invalid', `signature does not verify with the keys of ${who}`);
  if (e instanceof errors.JOSEAlgNotAllowed) return fail('algorithm_forbidden', `alg not allowed for ${who}`);
  if (e instanceof errors.JWKSNoMatchingKey) return fail('key_unknown', `no key of ${who} matches the token header`);
  if (e instanceof errors.JWKSTimeout) return new GatewayError('keys_unavailable', { tokenPresented: true, why: `JWKS of ${who} timed out` });
  if (e instanceof errors.JWSInvalid || e instanceof errors.JWTInvalid || e instanceof errors.JOSENotSupported) {
    return fail('token_malformed', e.message);
  }
  if (e instanceof TypeError) return fail('signature_invalid', `the key of ${who} cannot verify this token: ${e.message}`);
  return fail('signature_invalid', `verification failed: ${(e as Error)?.message ?? String(e)}`);
}

function fmtAud(aud: string | string[] | undefined): string {
  return Array.isArray(aud) ? aud.map((a) => `"${a}"`).join(' or ') : `"${aud ?? ''}"`;
}
