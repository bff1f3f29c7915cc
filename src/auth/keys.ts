/**
 * Key sources of one issuer (SPEC §3, §1.4): HMAC `secrets`, `public_key_file` (PEM SPKI, X.509
 * certificate or public JWK), `private_key_file` (PEM PKCS#8 or private JWK; its public half
 * verifies), `jwks_file` (local JWKS) and `jwks_url` (jose's remote JWKS: timeout, cooldown and
 * cache age from `issuer.jwks`). Files are read once, at build; a bad file is a ConfigError
 * naming `tokens.issuers[i].<key>`.
 *
 * A remote JWKS is jose's own cache (not wrapped in another one) plus stale-if-error: the last JWKS
 * fetched successfully keeps serving when a refresh fails, for `cooldown_ms` before the next try.
 * Keys never obtained → GatewayError('keys_unavailable') (503), never a 401.
 *
 * Key files need Node's crypto (KeyObject, X.509) and file system: they are taken from the runtime
 * (`process.getBuiltinModule`, src/builtin.ts) when an issuer names a file, not imported, so the
 * Hono middleware's bundle has no `node:` import and runs where there is none — with `secrets`
 * or `jwks_url` (Web Crypto, through jose) — and a key file there is a ConfigError saying why.
 *
 * @example
 *   const keys = await loadIssuerKeys(cfg.tokens.issuers[0], 0, { baseDir, observer });
 *   const candidates = await keys.keysFor({ alg: 'RS256', kid: 'k1' }); // try each in order
 *   await keys.readiness(); // { ok: true } once keys are available
 */
import type * as NodeCrypto from 'node:crypto';
import type { JsonWebKey, KeyObject } from 'node:crypto';
import type * as NodeFs from 'node:fs/promises';
import type * as NodePath from 'node:path';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  errors,
  type CryptoKey,
  type FetchImplementation,
  type JSONWebKeySet,
  type JWK,
  type JWSHeaderParameters,
} from 'jose';
import { nodeBuiltin } from '../builtin.js';
import { ConfigError, GatewayError } from '../errors.js';
import { HMAC_ALGORITHMS, type IssuerConfig } from '../config/schema.js';
import type { AuthObserver } from './verify-token.js';
import { clip as clipBytes } from '../clip.js';

/** A key jose's `jwtVerify` accepts. */
export type VerifyKey = Uint8Array | KeyObject | CryptoKey;

export type KeySourceKind = 'secrets' | 'public_key_file' | 'private_key_file' | 'jwks_file' | 'jwks_url' | 'token_store';

/**
 * The token service's own keys (SPEC §9): an issuer with no key source of its own verifies with
 * the public keys the token store publishes (the same set /.well-known/jwks.json serves).
 */
export interface StoreKeySource {
  /** The issuer (a tokens.issuers name) these keys belong to: token_service.issuer. */
  issuer: string;
  publicJwks(): Promise<JSONWebKeySet>;
  /** Forgets a cached key list, so a key rotated in on another replica is seen at once. */
  invalidate(): void;
}

export interface IssuerKeys {
  readonly issuerName: string;
  readonly source: KeySourceKind;
  /**
   * Keys that may verify a token with this protected header, in the order to try them (several
   * only for HMAC rotation or a JWKS with several matching keys). Throws GatewayError
   * `key_unknown` (no key for this kid/alg) or `keys_unavailable` (remote keys never obtained).
   */
  keysFor(header: JWSHeaderParameters): Promise<readonly VerifyKey[]>;
  /** Whether keys are available; for a remote set that never answered, tries one fetch. */
  readiness(): Promise<{ ok: boolean; error?: string }>;
}

export interface LoadKeysOptions {
  /** Directory relative key file paths resolve against (the config file's directory). */
  baseDir?: string | undefined;
  observer?: AuthObserver | undefined;
  /** Keys of the token service's issuer, read from its store. */
  storeKeys?: StoreKeySource | undefined;
}

/**
 * Builds the key resolver of `issuer` (the `index`-th entry of `tokens.issuers`, used in error
 * paths). Throws ConfigError for a missing, unreadable or unusable key file.
 */
export async function loadIssuerKeys(issuer: IssuerConfig, index: number, opts: LoadKeysOptions = {}): Promise<IssuerKeys> {
  const path = (key: string) => `tokens.issuers[${index}].${key}`;
  if (issuer.secrets) return secretKeys(issuer);
  if (issuer.jwks_url) return remoteKeys(issuer, opts.observer);
  if (issuer.jwks_file) {
    const text = await readKeyFile(issuer.jwks_file, path('jwks_file'), opts.baseDir);
    return localJwksKeys(issuer, text, path('jwks_file'));
  }
  if (issuer.public_key_file) {
    const text = await readKeyFile(issuer.public_key_file, path('public_key_file'), opts.baseDir);
    return singleKey(issuer, 'public_key_file', parsePublicKey(text, path('public_key_file')), path('public_key_file'));
  }
  if (issuer.private_key_file) {
    const text = await readKeyFile(issuer.private_key_file, path('private_key_file'), opts.baseDir);
    const priv = parsePrivateKey(text, path('private_key_file'));
    return singleKey(issuer, 'private_key_file', fileModules(path('private_key_file')).crypto.createPublicKey(priv.key), path('private_key_file'));
  }
  if (opts.storeKeys && opts.storeKeys.issuer === issuer.name) return tokenStoreKeys(issuer, opts.storeKeys);
  // The schema guarantees one source (or the token service's store); reaching here is a programming error.
  throw new TypeError(`issuer "${issuer.name}" has no key source`);
}

/** A private key read from `private_key_file`, for signing (`mint`). */
export interface SigningKey {
  key: KeyObject;
  /** `kid` of a JWK file, when it has one. */
  kid?: string | undefined;
}

/** Reads and parses an issuer's `private_key_file`. Throws ConfigError on a bad file. */
export async function loadPrivateKey(file: string, configPath: string, baseDir?: string): Promise<SigningKey> {
  return parsePrivateKey(await readKeyFile(file, configPath, baseDir), configPath);
}

/**
 * The JWS algorithms (of `allowed`, in that order) that `key` can sign or verify:
 * RSA → RS*, PS*; EC P-256/384/521 → ES256/384/512; Ed25519 → EdDSA, Ed25519.
 */
export function algorithmsForKey(key: KeyObject, allowed: readonly string[]): string[] {
  const type = key.asymmetricKeyType;
  const fits = (alg: string): boolean => {
    switch (type) {
      case 'rsa':
        return /^(RS|PS)(256|384|512)$/.test(alg);
      case 'rsa-pss':
        return /^PS(256|384|512)$/.test(alg);
      case 'ec': {
        const curve = key.asymmetricKeyDetails?.namedCurve;
        return (
          (alg === 'ES256' && curve === 'prime256v1') ||
          (alg === 'ES384' && curve === 'secp384r1') ||
          (alg === 'ES512' && curve === 'secp521r1')
        );
      }
      case 'ed25519':
        return alg === 'EdDSA' || alg === 'Ed25519';
      default:
        return false;
    }
  };
  return allowed.filter(fits);
}

// ---------------------------------------------------------------------------------------------

function keyUnknown(why: string): GatewayError {
  return new GatewayError('key_unknown', { tokenPresented: true, why });
}

function describeKey(key: KeyObject): string {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  return `${key.asymmetricKeyType ?? 'unknown'}${curve ? ` (${curve})` : ''} key`;
}

/** What key files need of Node; the runtime's own modules, asked for only when a file is named. */
interface FileModules {
  crypto: typeof NodeCrypto;
  fs: typeof NodeFs;
  path: typeof NodePath;
}

/** The message for a key file on a runtime without Node's modules (also options.ts's, for the Hono middleware). */
export const NO_KEY_FILE_RUNTIME =
  "is a key file, which needs a runtime with Node's file system and crypto (process.getBuiltinModule); this one has none — use secrets or jwks_url";

function fileModules(configPath: string): FileModules {
  const crypto = nodeBuiltin<typeof NodeCrypto>('node:crypto');
  const fs = nodeBuiltin<typeof NodeFs>('node:fs/promises');
  const path = nodeBuiltin<typeof NodePath>('node:path');
  if (!crypto || !fs || !path) throw new ConfigError([{ path: configPath, message: NO_KEY_FILE_RUNTIME }]);
  return { crypto, fs, path };
}

async function readKeyFile(file: string, configPath: string, baseDir?: string): Promise<string> {
  const { fs, path } = fileModules(configPath);
  const abs = baseDir === undefined ? path.resolve(file) : path.resolve(baseDir, file);
  try {
    return await fs.readFile(abs, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    throw new ConfigError([{ path: configPath, message: `cannot read key file ${abs}: ${code}` }]);
  }
}

function parseJson(text: string, configPath: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new ConfigError([{ path: configPath, message: 'starts like JSON but is not valid JSON' }]);
  }
}

function parsePublicKey(text: string, configPath: string): KeyObject {
  const { createPublicKey, X509Certificate } = fileModules(configPath).crypto;
  const t = text.trim();
  try {
    if (t.startsWith('{')) {
      const jwk = parseJson(t, configPath) as JWK;
      return createPublicKey({ key: publicJwk(jwk) as JsonWebKey, format: 'jwk' });
    }
    if (t.includes('-----BEGIN CERTIFICATE-----')) return new X509Certificate(t).publicKey;
    if (t.includes('PRIVATE KEY-----')) {
      throw new ConfigError([{ path: configPath, message: 'holds a private key; put a public key (PEM SPKI or X.509 certificate) here, or use private_key_file' }]);
    }
    return createPublicKey(t);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError([{ path: configPath, message: `is not a PEM public key (SPKI), X.509 certificate or public JWK: ${(e as Error).message}` }]);
  }
}

function parsePrivateKey(text: string, configPath: string): SigningKey {
  const { createPrivateKey } = fileModules(configPath).crypto;
  const t = text.trim();
  try {
    if (t.startsWith('{')) {
      const jwk = parseJson(t, configPath) as JWK;
      if (jwk.kty === 'oct') throw new ConfigError([{ path: configPath, message: 'is a symmetric (oct) JWK; HMAC keys go in `secrets`' }]);
      if (jwk.d === undefined) throw new ConfigError([{ path: configPath, message: 'is a public JWK; a private key (with "d") is needed here' }]);
      const key = createPrivateKey({ key: jwk as JsonWebKey, format: 'jwk' });
      return { key, kid: typeof jwk.kid === 'string' ? jwk.kid : undefined };
    }
    if (!t.includes('PRIVATE KEY-----')) {
      throw new ConfigError([{ path: configPath, message: 'is not a PEM private key (PKCS#8 "BEGIN PRIVATE KEY") or private JWK' }]);
    }
    return { key: createPrivateKey(t) };
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError([{ path: configPath, message: `is not a usable private key (PEM PKCS#8 or JWK): ${(e as Error).message}` }]);
  }
}

/** Drops private members so a JWK can only verify. */
function publicJwk(jwk: JWK): JWK {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, oth: _oth, k: _k, ...pub } = jwk as JWK & { oth?: unknown };
  return pub;
}

function secretKeys(issuer: IssuerConfig): IssuerKeys {
  const enc = new TextEncoder();
  // Newest first: the current secret is tried first, older ones keep verifying during rotation.
  const keys = (issuer.secrets ?? []).map((s) => enc.encode(s));
  return {
    issuerName: issuer.name,
    source: 'secrets',
    keysFor: async (header) => {
      if (typeof header.alg !== 'string' || !HMAC_ALGORITHMS.includes(header.alg)) {
        throw keyUnknown(`issuer "${issuer.name}" has only HMAC secrets; no key for alg ${String(header.alg)}`);
      }
      return keys;
    },
    readiness: async () => ({ ok: true }),
  };
}

function singleKey(issuer: IssuerConfig, source: KeySourceKind, key: KeyObject, configPath: string): IssuerKeys {
  const usable = algorithmsForKey(key, issuer.algorithms);
  if (usable.length === 0) {
    throw new ConfigError([
      {
        path: configPath,
        message: `holds an ${describeKey(key)}, which can verify none of the issuer's algorithms (${issuer.algorithms.join(', ')})`,
      },
    ]);
  }
  return {
    issuerName: issuer.name,
    source,
    keysFor: async (header) => {
      if (typeof header.alg !== 'string' || !usable.includes(header.alg)) {
        throw keyUnknown(`the ${describeKey(key)} of issuer "${issuer.name}" cannot verify alg ${String(header.alg)}`);
      }
      return [key];
    },
    readiness: async () => ({ ok: true }),
  };
}

type LocalSet = ReturnType<typeof createLocalJWKSet>;

/** Resolves candidates from a jose key set; maps "no key" to key_unknown, tries every match. */
async function fromSet(resolve: (h: JWSHeaderParameters) => Promise<CryptoKey>, header: JWSHeaderParameters, issuerName: string): Promise<VerifyKey[]> {
  try {
    return [await resolve(header)];
  } catch (e) {
    if (e instanceof errors.JWKSNoMatchingKey) {
      throw keyUnknown(
        `issuer "${issuerName}" has no key for ${header.kid !== undefined ? `kid "${clip(String(header.kid))}"` : 'a token without kid'} and alg ${String(header.alg)}`,
      );
    }
    if (e instanceof errors.JWKSMultipleMatchingKeys) {
      // jwtVerify does not iterate several matches itself; collect them and let the caller try each.
      const keys: VerifyKey[] = [];
      const iterable = e as unknown as AsyncIterable<CryptoKey>;
      if (typeof iterable[Symbol.asyncIterator] === 'function') for await (const k of iterable) keys.push(k);
      if (keys.length) return keys;
      throw keyUnknown(`issuer "${issuerName}" has several keys matching the token header, none usable`);
    }
    if (e instanceof errors.JOSENotSupported || e instanceof errors.JWKInvalid || e instanceof errors.JWKSInvalid) {
      throw keyUnknown(`issuer "${issuerName}": ${e.message}`);
    }
    throw e;
  }
}

function clip(s: string): string {
  return clipBytes(s, 64);
}

function localJwksKeys(issuer: IssuerConfig, text: string, configPath: string): IssuerKeys {
  let set: LocalSet;
  try {
    set = createLocalJWKSet(JSON.parse(text) as JSONWebKeySet);
  } catch (e) {
    throw new ConfigError([{ path: configPath, message: `is not a JSON Web Key Set ({"keys": [...]}): ${(e as Error).message}` }]);
  }
  return {
    issuerName: issuer.name,
    source: 'jwks_file',
    keysFor: (header) => fromSet(set, header, issuer.name),
    readiness: async () => ({ ok: true }),
  };
}

/** Minimum time between two re-reads of the store's keys triggered by an unknown kid, ms. */
const STORE_KEYS_COOLDOWN_MS = 1_000;

function tokenStoreKeys(issuer: IssuerConfig, src: StoreKeySource): IssuerKeys {
  let set: LocalSet | undefined;
  let lastRead = 0;
  const read = async (): Promise<LocalSet> => {
    lastRead = Date.now();
    set = createLocalJWKSet(await src.publicJwks());
    return set;
  };
  return {
    issuerName: issuer.name,
    source: 'token_store',
    async keysFor(header) {
      let current: LocalSet;
      try {
        current = set ?? (await read());
      } catch (e) {
        throw new GatewayError('keys_unavailable', { tokenPresented: true, why: `token store keys of issuer "${issuer.name}": ${(e as Error).message}` });
      }
      try {
        return await fromSet(current, header, issuer.name);
      } catch (e) {
        // A kid rotated in on another replica: re-read once (bounded by the cooldown).
        if (!(e instanceof GatewayError) || e.code !== 'key_unknown' || Date.now() - lastRead < STORE_KEYS_COOLDOWN_MS) throw e;
        src.invalidate();
        return fromSet(await read(), header, issuer.name);
      }
    },
    async readiness() {
      try {
        const jwks = await src.publicJwks();
        return jwks.keys.length > 0 ? { ok: true } : { ok: false, error: 'the token store has no signing key yet' };
      } catch (e) {
        return { ok: false, error: `token store keys: ${(e as Error).message}` };
      }
    },
  };
}

function isJwkSet(v: unknown): v is JSONWebKeySet {
  return (
    typeof v === 'object' &&
    v !== null &&
    Array.isArray((v as { keys?: unknown }).keys) &&
    (v as { keys: unknown[] }).keys.every((k) => typeof k === 'object' && k !== null && !Array.isArray(k))
  );
}

function remoteKeys(issuer: IssuerConfig, observer: AuthObserver | undefined): IssuerKeys {
  const name = issuer.name;
  const report = (result: 'success' | 'error' | 'stale') => observer?.jwksRefresh?.(name, result);
  let lastGood: LocalSet | undefined;
  /** Date.now() before which a failed refresh is not retried (stale keys serve meanwhile). */
  let staleUntil = 0;
  let lastError: string | undefined;

  // Observes every fetch jose makes (jose's own cache decides when to fetch). Validates the body
  // here so success is reported only for a usable set; a bad body is handed on for jose to reject.
  const fetchImpl: FetchImplementation = async (url, init) => {
    let res: Response;
    try {
      res = await fetch(url, init);
    } catch (e) {
      lastError = (e as Error).name === 'TimeoutError' ? `JWKS fetch timed out after ${issuer.jwks.timeout_ms} ms` : `JWKS fetch failed: ${describeFetchError(e)}`;
      report('error');
      throw e;
    }
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => {});
      lastError = `JWKS endpoint answered HTTP ${res.status}`;
      report('error');
      return res; // jose rejects any status but 200
    }
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      lastError = `JWKS body could not be read: ${describeFetchError(e)}`;
      report('error');
      throw e;
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (!isJwkSet(json)) {
      lastError = 'JWKS endpoint did not return a JSON Web Key Set';
      report('error');
    } else {
      try {
        lastGood = createLocalJWKSet(json);
        lastError = undefined;
        staleUntil = 0;
        report('success');
      } catch (e) {
        lastError = `JWKS is malformed: ${(e as Error).message}`;
        report('error');
      }
    }
    return new Response(text, { status: 200, headers: { 'content-type': 'application/json' } });
  };

  const remote = createRemoteJWKSet(new URL(issuer.jwks_url!), {
    timeoutDuration: issuer.jwks.timeout_ms,
    cooldownDuration: issuer.jwks.cooldown_ms,
    cacheMaxAge: issuer.jwks.cache_max_age_ms,
    [customFetch]: fetchImpl,
  });

  const isKeySelectionError = (e: unknown) =>
    e instanceof errors.JWKSNoMatchingKey || e instanceof errors.JWKSMultipleMatchingKeys || e instanceof errors.JOSENotSupported;

  const resolveKey = async (header: JWSHeaderParameters): Promise<CryptoKey> => {
    if (lastGood && Date.now() < staleUntil) return lastGood(header);
    try {
      return await remote(header);
    } catch (e) {
      if (isKeySelectionError(e)) throw e;
      if (lastGood) {
        // Stale-if-error: the refresh failed, the keys we had still serve until the next try.
        staleUntil = Date.now() + issuer.jwks.cooldown_ms;
        report('stale');
        return lastGood(header);
      }
      throw new GatewayError('keys_unavailable', {
        tokenPresented: true,
        why: `issuer "${name}": no signing keys obtained yet from ${issuer.jwks_url} (${lastError ?? (e as Error).message})`,
      });
    }
  };

  return {
    issuerName: name,
    source: 'jwks_url',
    keysFor: (header) => fromSet(resolveKey, header, name),
    readiness: async () => {
      if (lastGood) return { ok: true };
      try {
        await remote.reload();
      } catch {
        // lastError says why
      }
      return lastGood ? { ok: true } : { ok: false, error: `issuer "${name}": JWKS not available from ${issuer.jwks_url} (${lastError ?? 'unknown error'})` };
    },
  };
}

function describeFetchError(e: unknown): string {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  return err.cause?.code ?? err.cause?.message ?? err.message ?? String(e);
}
