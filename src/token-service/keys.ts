/**
 * The token service's own signing keys (SPEC §9 "Keys"): ES256 key pairs generated into the token
 * store, so every replica sharing the store signs with the same key and publishes the same JWKS.
 *
 * - `ensureKey()` generates a first key when the store has no current one. It adds it with
 *   `onlyIfNone`, so replicas starting together on one database end with ONE key.
 * - `signingKey()` is the newest non-retired key, imported once per kid and cached; the store is
 *   re-read at most every `refreshMs` (default 5 s), so a rotation on another replica (or by
 *   `scopegate keys rotate`) is picked up within that time.
 * - `publicJwks()` lists every key still published (publishUntil unset or in the future), with
 *   `kid`, `alg` and `use: 'sig'` — what /.well-known/jwks.json serves.
 * - `rotate()` adds a new key; the old one stays published until `retiredAt + maxLifetimeMs`, i.e.
 *   until the last token it signed has expired.
 *
 * kid = RFC 7638 thumbprint of the public JWK, so a kid names exactly one key on every replica.
 *
 * @example
 *   const ring = createKeyRing(store, { clock: Date.now, maxLifetimeMs: maxTokenLifetimeMs(config.token_service, 60) });
 *   await ring.ensureKey();
 *   const { kid, key } = await ring.signingKey();
 *   const jwt = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid }).sign(key);
 *   app.get('/.well-known/jwks.json', async (c) => c.json(await ring.publicJwks()));
 */
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import type { KeyObject } from 'node:crypto';
import { GatewayError } from '../errors.js';
import type { KeyRecord, TokenStore } from './store.js';

export interface SigningKey {
  kid: string;
  alg: 'ES256';
  key: CryptoKey | KeyObject;
}

export interface KeyRing {
  /** Generates the first key unless the store has a current (non-retired) one. */
  ensureKey(): Promise<void>;
  /** The newest non-retired key; rejects with GatewayError('keys_unavailable') when there is none (call ensureKey first). */
  signingKey(): Promise<SigningKey>;
  /** Every still-published public key, newest first. */
  publicJwks(): Promise<{ keys: JWK[] }>;
  /** Adds a new signing key and retires the current one; resolves with the new kid. */
  rotate(): Promise<string>;
  /** Forgets the cached key list, so the next call re-reads the store. */
  invalidate(): void;
}

export interface KeyRingOptions {
  /** Epoch milliseconds. */
  clock: () => number;
  /** Longest time a token signed by a key can stay valid after the key is retired, ms (see maxTokenLifetimeMs). */
  maxLifetimeMs: number;
  /** How long the key list read from the store is trusted, ms. Default 5000. */
  refreshMs?: number;
}

/**
 * The longest lifetime of a JWT the service signs, plus the verifiers' clock tolerance: how long a
 * retired key must stay published. Refresh tokens are opaque (not signed), so refresh_s is not in it.
 */
export function maxTokenLifetimeMs(
  ts: { lifetimes: { access_s: number; user_s: number; personal_s: number } },
  clockToleranceS = 60,
): number {
  const { access_s, user_s, personal_s } = ts.lifetimes;
  return (Math.max(access_s, user_s, personal_s) + clockToleranceS) * 1000;
}

/** A fresh ES256 key pair as a KeyRecord (kid = RFC 7638 thumbprint). */
export async function generateKeyRecord(now: number): Promise<KeyRecord> {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const privateJwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(publicJwk, 'sha256');
  return {
    kid,
    alg: 'ES256',
    privateJwk: JSON.stringify({ ...privateJwk, kid, alg: 'ES256' }),
    publicJwk: JSON.stringify({ ...publicJwk, kid, alg: 'ES256', use: 'sig' }),
    createdAt: now,
  };
}

/** Current = not retired; the newest current key signs. */
function newestCurrent(keys: readonly KeyRecord[]): KeyRecord | undefined {
  let best: KeyRecord | undefined;
  for (const k of keys) {
    if (k.retiredAt !== undefined) continue;
    if (!best || k.createdAt > best.createdAt || (k.createdAt === best.createdAt && k.kid > best.kid)) best = k;
  }
  return best;
}

export function createKeyRing(store: TokenStore, opts: KeyRingOptions): KeyRing {
  const { clock, maxLifetimeMs } = opts;
  const refreshMs = opts.refreshMs ?? 5_000;
  if (typeof clock !== 'function') throw new TypeError('createKeyRing: clock must be a function returning epoch ms');
  if (!Number.isFinite(maxLifetimeMs) || maxLifetimeMs < 0) {
    throw new TypeError(`createKeyRing: maxLifetimeMs must be a non-negative number of milliseconds, got ${maxLifetimeMs}`);
  }
  if (!Number.isFinite(refreshMs) || refreshMs < 0) {
    throw new TypeError(`createKeyRing: refreshMs must be a non-negative number of milliseconds, got ${refreshMs}`);
  }

  let cached: { at: number; keys: KeyRecord[] } | undefined;
  let loading: Promise<KeyRecord[]> | undefined;
  const imported = new Map<string, Promise<CryptoKey | KeyObject>>();

  async function keys(): Promise<KeyRecord[]> {
    const now = clock();
    if (cached && now - cached.at < refreshMs && now >= cached.at) return cached.keys;
    // One store read however many requests arrive at once.
    loading ??= store
      .listKeys()
      .then((ks) => {
        cached = { at: clock(), keys: ks };
        return ks;
      })
      .finally(() => {
        loading = undefined;
      });
    return loading;
  }

  function importKey(k: KeyRecord): Promise<CryptoKey | KeyObject> {
    let p = imported.get(k.kid);
    if (!p) {
      p = importJWK(JSON.parse(k.privateJwk) as JWK, 'ES256') as Promise<CryptoKey | KeyObject>;
      p.catch(() => imported.delete(k.kid));
      imported.set(k.kid, p);
    }
    return p;
  }

  return {
    async ensureKey() {
      if (newestCurrent(await keys())) return;
      const now = clock();
      const rec = await generateKeyRecord(now);
      await store.addKey(rec, { now, maxLifetimeMs, onlyIfNone: true });
      cached = undefined;
    },

    async signingKey() {
      const current = newestCurrent(await keys());
      if (!current) throw new GatewayError('keys_unavailable', { why: 'the token store holds no current signing key; ensureKey() must run at start-up' });
      return { kid: current.kid, alg: 'ES256', key: await importKey(current) };
    },

    async publicJwks() {
      const now = clock();
      const published = (await keys())
        .filter((k) => k.publishUntil === undefined || k.publishUntil > now)
        .sort((a, b) => b.createdAt - a.createdAt);
      return {
        keys: published.map((k) => {
          const jwk = JSON.parse(k.publicJwk) as JWK;
          // Only public members leave the store, whatever the row holds.
          return { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, kid: k.kid, alg: 'ES256', use: 'sig' } as JWK;
        }),
      };
    },

    async rotate() {
      const now = clock();
      const rec = await generateKeyRecord(now);
      await store.addKey(rec, { now, maxLifetimeMs });
      cached = undefined;
      return rec.kid;
    },

    invalidate() {
      cached = undefined;
    },
  };
}
