/**
 * What every door builds from one configuration, whatever runtime it serves on: the verifier,
 * the rate-limit store and limiter, the decision, the trusted-proxy list — one "generation",
 * swapped whole on reload (in-flight requests finish on the one they started with). A door adds
 * its own parts (the Node door: an undici forwarder; the Bun door: a fetch forwarder).
 *
 * Also here: readiness (SPEC §6 /readyz) and the reload queue, both door-agnostic.
 *
 * @example
 *   const core = await buildCoreGeneration(loaded, previous, { clock, logger, metrics });
 *   const d = await core.decider.decide(facts);
 *   const checks = await readinessOf(core);   // [{ name: 'config', ok: true }, { name: 'keys:local', ok: true }]
 */
import type { ReadinessCheck } from '../admin.js';
import { createTokenVerifier, type TokenVerifier } from '../auth/verify-token.js';
import type { LoadedConfig } from '../config/load.js';
import type { GatewayConfig } from '../config/schema.js';
import { createDecider, type Decider } from '../core/decide.js';
import { createForwardAuth, type ForwardAuth } from '../doors/forward-auth/handler.js';
import { compileCidrs, type CidrList } from '../net/cidr.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { createMemoryStore } from '../ratelimit/memory-store.js';
import { createRateLimiter, type RateLimiter } from '../ratelimit/policy.js';
import { createRedisStore } from '../ratelimit/redis-store.js';
import type { RateLimitStore } from '../ratelimit/store.js';
import { createTokenService, type TokenService } from '../token-service/service.js';
import type { Clock } from '../types.js';
import type { TokenServiceHost } from './token-service-host.js';

export interface CoreDeps {
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  /** The token service's store and keys, when the config has `token_service` (opened once per process). */
  host?: TokenServiceHost | undefined;
}

/** One configuration's worth of door-independent request-handling state. */
export interface CoreGeneration {
  loaded: LoadedConfig;
  verifier: TokenVerifier;
  store: RateLimitStore;
  /** Which store this is; a reload keeps the store (and its counters) while this is unchanged. */
  storeKey: string;
  limiter: RateLimiter;
  decider: Decider;
  trusted: CidrList;
  /** The token endpoint, JWKS and metadata (SPEC §9), served before the route table. */
  tokenService: TokenService | undefined;
  /** The forward-auth endpoint (SPEC §8), when `forward_auth` is configured. */
  forwardAuth: ForwardAuth | undefined;
}

function storeIdentity(cfg: GatewayConfig): string {
  const r = cfg.rate_limit;
  // The memory store is kept across every reload (counters survive); a new max_keys applies on restart.
  if (r.store !== 'redis') return 'memory';
  const where = r.redis_cluster ? `cluster:${r.redis_cluster.join(',')}` : r.redis_url;
  return `redis|${where}|${r.key_prefix}|${r.redis_timeout_ms}`;
}

function makeStore(cfg: GatewayConfig, deps: CoreDeps): RateLimitStore {
  const r = cfg.rate_limit;
  if (r.store === 'redis') {
    return createRedisStore({
      ...(r.redis_cluster ? { cluster: r.redis_cluster } : { url: r.redis_url! }),
      keyPrefix: r.key_prefix,
      timeoutMs: r.redis_timeout_ms,
      onError: (err: Error) => deps.logger.warn({ err: err.message }, 'redis rate-limit store error'),
    });
  }
  return createMemoryStore({ maxKeys: r.max_keys, clock: deps.clock });
}

export async function buildCoreGeneration(loaded: LoadedConfig, previous: CoreGeneration | undefined, deps: CoreDeps): Promise<CoreGeneration> {
  const { clock, logger, metrics } = deps;
  const cfg = loaded.config;
  const verifier = await createTokenVerifier(cfg.tokens, {
    clock,
    baseDir: loaded.baseDir,
    observer: {
      tokenCache: (result) => metrics.countTokenCache(result),
      jwksRefresh: (issuer, result) => metrics.jwksRefresh.inc({ issuer, result }),
    },
    storeKeys: deps.host?.storeKeys,
  });
  // Counters survive reloads: the store is kept unless its identity (kind, url, prefix) changed.
  const storeKey = storeIdentity(cfg);
  const store = previous && previous.storeKey === storeKey ? previous.store : makeStore(cfg, deps);
  const limiter = createRateLimiter(cfg.rate_limit, { store, clock });
  // The token service is built after the decision (it verifies with the same verifier); the
  // decision asks its denylist after every verification, cached tokens included.
  let tokenService: TokenService | undefined;
  const decider = createDecider(loaded, {
    clock,
    verifier,
    limiter,
    isRevoked: cfg.token_service ? (jti: string) => tokenService?.denylist.has(jti) ?? false : undefined,
    // -1 (never a version) until the service exists: nothing is stamped before its denylist is.
    revocationVersion: cfg.token_service ? () => tokenService?.denylist.version() ?? -1 : undefined,
    observer: {
      storeError: (err, refused) => {
        metrics.rateLimitStoreErrors.inc({ store: store.kind });
        logger.warn(
          { err: err.message },
          refused ? 'rate-limit store error; refusing (on_store_error: closed)' : 'rate-limit store error; forwarding (on_store_error: open)',
        );
      },
      rateLimited: (route, kind) => metrics.rateLimited.inc({ route, kind }),
    },
  });
  const host = deps.host;
  if (cfg.token_service && host) {
    if (cfg.token_service.store !== host.configured) {
      logger.warn({ store: host.location }, 'token_service.store changed: the running store is kept until a restart');
    }
    tokenService = await createTokenService(loaded, {
      store: host.store,
      clock,
      logger,
      metrics,
      keyRing: host.keyRing,
      verify: (token: string) => verifier.verify(token),
    } as Parameters<typeof createTokenService>[1]);
  }
  const trusted = compileCidrs(cfg.trusted_proxies);
  const forwardAuth = cfg.forward_auth ? createForwardAuth(loaded, decider, trusted) : undefined;
  return { loaded, verifier, store, storeKey, limiter, decider, trusted, tokenService, forwardAuth };
}

/** SPEC §6 /readyz: config loaded, every issuer's keys obtainable, Redis when it is required. */
export async function readinessOf(g: CoreGeneration): Promise<ReadinessCheck[]> {
  const checks: ReadinessCheck[] = [{ name: 'config', ok: true }];
  for (const r of await g.verifier.readiness()) {
    checks.push({ name: `keys:${r.issuer}`, ok: r.ok, ...(r.error ? { error: r.error } : {}) });
  }
  const rl = g.loaded.config.rate_limit;
  if (g.tokenService) {
    const r = await g.tokenService.readiness().catch((e: unknown) => ({ ok: false, error: (e as Error).message }));
    checks.push({ name: 'token_store', ok: r.ok, ...(r.ok ? {} : { error: r.error ?? 'token store unavailable' }) });
  }
  if (rl.enabled && rl.store === 'redis') {
    const required = rl.on_store_error === 'closed' || rl.redis_cluster !== undefined;
    try {
      await g.store.ping();
      checks.push({ name: 'redis', ok: true });
    } catch (e) {
      // With on_store_error: open a dead single Redis degrades limits but does not stop traffic; a
      // cluster with unserved slots is reported (SPEC §4: /readyz checks every slot is served).
      checks.push({ name: 'redis', ok: !required, error: (e as Error).message });
    }
  }
  return checks;
}

export interface Reloader<G> {
  current(): G;
  /** Re-reads the config (or takes `next`), builds a generation, swaps atomically; false keeps the old one. */
  reload(next?: LoadedConfig): Promise<boolean>;
}

/**
 * Serialised, atomic reloads: one at a time, a failure keeps the running generation (logged,
 * counted in scopegate_config_reloads_total{result="error"}), the replaced one is retired.
 */
export function createReloader<G extends CoreGeneration>(opts: {
  initial: G;
  load: () => Promise<LoadedConfig>;
  build: (loaded: LoadedConfig, previous: G) => Promise<G>;
  /** Releases what the old generation held that the new one does not share. */
  retire: (old: G, next: G) => void;
  metrics: Metrics;
  logger: Logger;
}): Reloader<G> {
  let gen = opts.initial;
  let queue: Promise<boolean> = Promise.resolve(true);
  return {
    current: () => gen,
    reload(next) {
      queue = queue.then(async () => {
        try {
          const loaded = next ?? (await opts.load());
          const old = gen;
          gen = await opts.build(loaded, old);
          if (old.store !== gen.store) void old.store.close().catch(() => undefined);
          if (old.tokenService && old.tokenService !== gen.tokenService) void old.tokenService.close().catch(() => undefined);
          opts.retire(old, gen);
          opts.metrics.configReloads.inc({ result: 'success' });
          opts.logger.info({ routes: loaded.routes.routes.length, file: loaded.file }, 'config reloaded');
          return true;
        } catch (e) {
          opts.metrics.configReloads.inc({ result: 'error' });
          opts.logger.error({ err: (e as Error).message }, 'config reload failed; keeping the running config');
          return false;
        }
      });
      return queue;
    },
  };
}
