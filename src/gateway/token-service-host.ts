/**
 * What the token service needs for the life of the process (SPEC §9), whatever door serves it:
 * the store (opened once; an embedded store is locked to this process), the key ring shared by
 * the signer and the verifier, and the first ES256 key when the issuer has no key source of its
 * own. Each config generation builds its own TokenService on top (gateway/generation.ts).
 *
 * @example
 *   const host = await openTokenServiceHost(loaded, { clock, logger, metrics });
 *   const verifier = await createTokenVerifier(cfg.tokens, { clock, storeKeys: host?.storeKeys });
 *   await host?.close();
 */
import type { StoreKeySource } from '../auth/keys.js';
import type { LoadedConfig } from '../config/load.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { createKeyRing, maxTokenLifetimeMs, type KeyRing } from '../token-service/keys.js';
import type { TokenStore } from '../token-service/store.js';
import { describeStoreLocation, openTokenStore } from '../token-service/store/open.js';
import type { Clock } from '../types.js';

export interface TokenServiceHost {
  /** Where the store lives (passwords masked), for logs. */
  location: string;
  /** The `token_service.store` value it was opened with: a reload naming another store needs a restart. */
  configured: string;
  store: TokenStore;
  keyRing: KeyRing;
  /** The verifier's key source for the service's issuer, when it signs with the store's keys. */
  storeKeys: StoreKeySource | undefined;
  close(): Promise<void>;
}

const KEY_SOURCES = ['secrets', 'public_key_file', 'jwks_file', 'jwks_url', 'private_key_file'] as const;

export async function openTokenServiceHost(
  loaded: LoadedConfig,
  deps: { clock: Clock; logger: Logger; metrics: Metrics },
): Promise<TokenServiceHost | undefined> {
  const ts = loaded.config.token_service;
  if (!ts) return undefined;
  const store = await openTokenStore(ts.store, {
    baseDir: loaded.baseDir,
    metrics: { storeErrors: deps.metrics.storeErrors },
    logger: { warn: (obj: object, msg: string) => deps.logger.warn(obj, msg) },
    // A CLI command may hold an embedded store's lock for a moment: wait it out instead of failing.
    lockWaitMs: 10_000,
  });
  const keyRing = createKeyRing(store, { clock: deps.clock, maxLifetimeMs: maxTokenLifetimeMs(ts, loaded.config.tokens.clock_tolerance_s) });
  const issuer = loaded.config.tokens.issuers.find((i) => i.name === ts.issuer)!;
  const ownKeys = KEY_SOURCES.some((k) => issuer[k] !== undefined);
  let storeKeys: StoreKeySource | undefined;
  if (!ownKeys) {
    // Replicas starting together on one database end with one key (addKey onlyIfNone).
    await keyRing.ensureKey();
    storeKeys = { issuer: issuer.name, publicJwks: () => keyRing.publicJwks(), invalidate: () => keyRing.invalidate() };
  }
  const location = describeStoreLocation(ts.store);
  deps.logger.info({ store: location, kind: store.kind, signing: ownKeys ? 'issuer keys' : 'store ES256 keys' }, 'token service store open');
  return { location, configured: ts.store, store, keyRing, storeKeys, close: () => store.close() };
}
