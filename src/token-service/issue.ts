/**
 * Signing the token service's access tokens (SPEC §9): JWTs the gateway verifies locally, written
 * in the claim names of `token_service.issuer` (its `claims` config, reverse-mapped through any
 * value maps, as `scopegate mint` writes them), plus `client_id`, `jti`, `iat`, `exp`, the
 * issuer's `issuer` as `iss` and its first `audience` as `aud`.
 *
 * Key material, in this order: the issuer's first HMAC secret (its first allowed HS algorithm),
 * its `private_key_file` (the first allowed algorithm the key fits; `kid` from the JWK file or its
 * RFC 7638 thumbprint), else the store's ES256 key ring (`kid` in the header; the issuer must
 * allow ES256). An issuer with only public keys cannot sign: a ConfigError at start-up.
 *
 * @example
 *   const signer = await createTokenSigner(issuer, { keyRing, baseDir, configPath: 'token_service.issuer' });
 *   const { token, exp } = await signer.sign(
 *     { subject: 'cl_1', clientType: 'group', scopes: ['send_notification'], clientId: 'cl_1', group: '42' },
 *     { jti: 'at_x', nowMs: Date.now(), ttlS: 3600 });
 *   await signer.publicJwks(); // { keys: [...] } — [] for an HMAC issuer
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, SignJWT, type JWK, type JWTPayload } from 'jose';
import { ConfigError } from '../errors.js';
import { HMAC_ALGORITHMS, type ClaimRefConfig, type IssuerConfig } from '../config/schema.js';
import { claimMap, claimName, clientTypeMap } from '../auth/claims.js';
import { algorithmsForKey, loadPrivateKey } from '../auth/keys.js';
import type { ServiceClientType } from './store.js';

/** What the key ring (keys.ts) offers the signer; sync or async answers both work. */
export interface KeyRingSource {
  signingKey(): Promise<{ kid: string; alg: 'ES256'; key: SignKey }> | { kid: string; alg: 'ES256'; key: SignKey };
  publicJwks(): Promise<{ keys: JWK[] }> | { keys: JWK[] };
}

/** A key jose's SignJWT accepts. */
export type SignKey = Parameters<SignJWT['sign']>[0];

/** The identity one access token carries (canonical values; the signer maps them to claims). */
export interface TokenClaims {
  subject: string;
  clientType: ServiceClientType;
  /** In the order they should appear in the space-separated scope claim. */
  scopes: readonly string[];
  clientId: string;
  room?: string | undefined;
  roomName?: string | undefined;
  group?: string | undefined;
}

export interface SignOptions {
  jti: string;
  nowMs: number;
  /** Lifetime in seconds (exp = iat + ttlS). */
  ttlS: number;
}

export interface TokenSigner {
  /** Where the signing key comes from. */
  readonly source: 'secrets' | 'private_key_file' | 'store';
  readonly alg: string;
  /** Signs one access token; `exp` in epoch seconds. */
  sign(claims: TokenClaims, opts: SignOptions): Promise<{ token: string; exp: number }>;
  /** The public keys to publish (/.well-known/jwks.json); none for an HMAC issuer. */
  publicJwks(): Promise<{ keys: JWK[] }>;
}

export interface SignerOptions {
  keyRing?: KeyRingSource | undefined;
  /** Directory a relative private_key_file resolves against. */
  baseDir?: string | undefined;
  /** YAML path named in ConfigErrors (e.g. `token_service.issuer`). */
  configPath: string;
}

/** Claims the signer sets itself; a claim mapping may not write them. */
const RESERVED = new Set(['iss', 'aud', 'iat', 'exp', 'nbf', 'jti', 'client_id']);

/** The raw claim value that maps to `value` under `map` (reverse of a `{claim, map}`). */
function unmap(value: string, map: Readonly<Record<string, string>>): string | undefined {
  const raw = Object.keys(map).find((k) => map[k] === value);
  if (raw !== undefined) return raw;
  // `value` written raw would be read back as map[value]: not representable.
  if (Object.hasOwn(map, value)) return undefined;
  return value;
}

/** Builds the signer once; throws ConfigError when the issuer cannot sign the service's tokens. */
export async function createTokenSigner(issuer: IssuerConfig, opts: SignerOptions): Promise<TokenSigner> {
  const problem = (message: string) => new ConfigError([{ path: opts.configPath, message: `issuer "${issuer.name}" ${message}` }]);
  const c = issuer.claims;
  const refs: Array<[keyof typeof c, ClaimRefConfig]> = [
    ['subject', c.subject],
    ['client_type', c.client_type],
    ['scopes', c.scopes],
    ['room', c.room],
    ['room_name', c.room_name],
    ['group', c.group],
    ['token_id', c.token_id],
  ];
  for (const [field, ref] of refs) {
    const name = claimName(ref);
    if (RESERVED.has(name) && !(field === 'token_id' && name === 'jti')) {
      throw problem(`maps claims.${field} onto "${name}", which the token service sets itself; choose another claim name`);
    }
  }
  const typeMap = clientTypeMap(c);
  for (const t of ['group', 'room', 'user'] as const) {
    if (unmap(t, typeMap) === undefined) throw problem(`cannot write client type "${t}": its client_type map turns "${t}" into "${typeMap[t]}"`);
  }

  let source: TokenSigner['source'];
  let alg: string;
  let getKey: () => Promise<{ key: SignKey; kid?: string | undefined }>;
  let jwks: () => Promise<{ keys: JWK[] }>;

  const secret = issuer.secrets?.[0];
  if (secret !== undefined) {
    const hs = issuer.algorithms.find((a) => HMAC_ALGORITHMS.includes(a));
    if (hs === undefined) throw problem('has secrets but allows no HS algorithm');
    const key = new TextEncoder().encode(secret);
    source = 'secrets';
    alg = hs;
    getKey = async () => ({ key });
    jwks = async () => ({ keys: [] });
  } else if (issuer.private_key_file !== undefined) {
    const { key, kid: fileKid } = await loadPrivateKey(issuer.private_key_file, `${opts.configPath} (issuer "${issuer.name}" private_key_file)`, opts.baseDir);
    const fits = algorithmsForKey(key, issuer.algorithms)[0];
    if (fits === undefined) throw problem(`has a private key (${key.asymmetricKeyType ?? 'unknown'}) that fits none of its algorithms (${issuer.algorithms.join(', ')})`);
    const pub = await exportJWK(createPublicKey(key as KeyObject));
    const kid = fileKid ?? (await calculateJwkThumbprint(pub));
    const published: JWK = { ...pub, kid, alg: fits, use: 'sig' };
    source = 'private_key_file';
    alg = fits;
    getKey = async () => ({ key, kid });
    jwks = async () => ({ keys: [published] });
  } else if (issuer.public_key_file !== undefined || issuer.jwks_file !== undefined || issuer.jwks_url !== undefined) {
    throw problem('has only public keys; the token service signs with secrets, private_key_file or (with no key source at all) keys generated into its store');
  } else {
    const ring = opts.keyRing;
    if (!ring) throw problem('has no key source, and no key ring was given to sign with');
    if (!issuer.algorithms.includes('ES256')) throw problem(`signs with the store's ES256 keys, so its algorithms must include ES256 (has ${issuer.algorithms.join(', ')})`);
    source = 'store';
    alg = 'ES256';
    getKey = async () => {
      const k = await ring.signingKey();
      return { key: k.key, kid: k.kid };
    };
    jwks = async () => {
      const set = await ring.publicJwks();
      return { keys: [...set.keys] };
    };
  }

  const aud = Array.isArray(issuer.audience) ? issuer.audience[0] : issuer.audience;

  return {
    source,
    alg,
    publicJwks: jwks,
    async sign(t, o) {
      const iat = Math.floor(o.nowMs / 1000);
      const exp = iat + o.ttlS;
      const payload: JWTPayload = {};
      if (issuer.issuer !== undefined) payload.iss = issuer.issuer;
      if (aud !== undefined) payload.aud = aud;
      payload.iat = iat;
      payload.exp = exp;
      payload.jti = o.jti;
      payload['client_id'] = t.clientId;
      const put = (ref: ClaimRefConfig, value: string | undefined, map: Readonly<Record<string, string>> = claimMap(ref)) => {
        if (value === undefined) return;
        const raw = unmap(value, map);
        if (raw === undefined) throw new TypeError(`value "${value}" cannot be written to claim "${claimName(ref)}" (the issuer's map rewrites it)`);
        payload[claimName(ref)] = raw;
      };
      put(c.subject, t.subject);
      put(c.client_type, t.clientType, typeMap);
      const scopeMap = claimMap(c.scopes);
      payload[claimName(c.scopes)] = t.scopes.map((s) => unmap(s, scopeMap) ?? s).join(' ');
      put(c.room, t.room);
      put(c.room_name, t.roomName);
      put(c.group, t.group);
      put(c.token_id, o.jti);
      const { key, kid } = await getKey();
      const token = await new SignJWT(payload).setProtectedHeader({ alg, typ: 'JWT', ...(kid !== undefined ? { kid } : {}) }).sign(key);
      return { token, exp };
    },
  };
}
