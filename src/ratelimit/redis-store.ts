/**
 * Redis rate-limit store, so that N replicas share one budget. One atomic Lua script per hit
 * (count + set expiry in one round trip); concurrent hits of one request (main window and flood
 * window) leave in one write thanks to ioredis auto-pipelining.
 *
 * Keys: `${keyPrefix}:{${key}}:${windowStartMs}`. The braces are a Redis Cluster hash tag, so all
 * windows of one limit key live in one slot. Each window has its own key, so windows never mix.
 *
 * Failure model: while Redis is unreachable every call rejects within `timeoutMs` (never hangs a
 * request); connection errors go to `onError` and never crash the process; the client reconnects
 * by itself with capped backoff, so service resumes when Redis returns.
 *
 * @example
 *   const store = createRedisStore({ url: 'redis://127.0.0.1:6379', keyPrefix: 'scopegate', timeoutMs: 500,
 *                                    onError: (e) => log.warn({ err: e.message }, 'redis') });
 *   const count = await store.increment('jti:local:abc', windowStart, 300_000, true);
 *   await store.close();
 */
import { Redis } from 'ioredis';
import type { RateLimitStore } from '../types.js';

export interface RedisStoreOptions {
  /** redis:// or rediss:// URL (user, password and db number as usual). */
  url: string;
  /** Prepended to every key as `${keyPrefix}:`; '' for none. */
  keyPrefix: string;
  /** Upper bound, ms, on one store call (command timeout). A slower answer is a store error. */
  timeoutMs: number;
  /** Receives connection-level errors (refused, reset, ...). They are never thrown. */
  onError?: (err: Error) => void;
}

/** The Redis store, plus the key it writes (for tests and diagnostics). */
export interface RedisStore extends RateLimitStore {
  readonly kind: 'redis';
  /** Always a promise: one round trip (auto-pipelined with the other calls of the same tick). */
  increment(key: string, windowStartMs: number, windowMs: number, consume: boolean): Promise<number>;
  /** The Redis key holding (`key`, window starting at `windowStartMs`). */
  redisKey(key: string, windowStartMs: number): string;
}

/**
 * KEYS[1] counter; ARGV[1] amount (0 or 1); ARGV[2] expiry in ms.
 * A read (amount 0) uses GET so that it creates no key. The expiry is set when the key has none
 * (i.e. it was just created), so it is never pushed back by later hits.
 */
const HIT_SCRIPT = `
local add = tonumber(ARGV[1])
if add == 0 then
  return tonumber(redis.call('GET', KEYS[1]) or '0')
end
local n = redis.call('INCRBY', KEYS[1], add)
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return n
`;

type ScriptedRedis = Redis & {
  scopegateHit(key: string, add: number, ttlMs: number): Promise<number>;
};

/** Reconnect delay after the n-th failed attempt: 50 ms doubling, capped at 2 s, with jitter. */
function backoff(attempt: number): number {
  const base = Math.min(2_000, 50 * 2 ** Math.min(attempt, 6));
  return Math.round(base / 2 + Math.random() * (base / 2));
}

/**
 * Creates the Redis-backed store. The connection opens on first use.
 *
 * @example
 *   const store = createRedisStore({ url: cfg.redis_url!, keyPrefix: cfg.key_prefix, timeoutMs: cfg.redis_timeout_ms });
 */
export function createRedisStore(opts: RedisStoreOptions): RedisStore {
  if (!/^rediss?:\/\//.test(opts.url)) throw new TypeError('createRedisStore: url must start with redis:// or rediss://');
  if (!Number.isInteger(opts.timeoutMs) || opts.timeoutMs < 1) {
    throw new TypeError(`createRedisStore: timeoutMs must be a positive integer, got ${String(opts.timeoutMs)}`);
  }
  const prefix = opts.keyPrefix ? `${opts.keyPrefix}:` : '';
  const timeoutMs = opts.timeoutMs;

  const redis = new Redis(opts.url, {
    lazyConnect: true,
    enableAutoPipelining: true,
    commandTimeout: timeoutMs,
    connectTimeout: Math.max(timeoutMs, 1_000),
    // An INCRBY whose reply was lost must not be replayed (it would count twice): fail it instead.
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    // Queue only until the first connection is ready (bounded by commandTimeout); after that a
    // command issued while Redis is away fails at once instead of waiting (see 'ready' below).
    enableOfflineQueue: true,
    retryStrategy: backoff,
  }) as ScriptedRedis;

  redis.defineCommand('scopegateHit', { numberOfKeys: 1, lua: HIT_SCRIPT });
  redis.on('error', (err: Error) => {
    try {
      opts.onError?.(err);
    } catch {
      // A failing error callback must not turn a Redis outage into a crash.
    }
  });
  redis.once('ready', () => {
    redis.options.enableOfflineQueue = false;
  });

  let closed = false;
  const closedError = () => new Error('redis rate-limit store is closed');
  const redisKey = (key: string, windowStartMs: number) => `${prefix}{${key}}:${windowStartMs}`;

  return {
    kind: 'redis',
    redisKey,
    async increment(key, windowStartMs, windowMs, consume) {
      if (closed) throw closedError();
      // Full window length on creation: correct however far this host's clock is from Redis's
      // (the key names its window, so living past the window's end only costs memory, never budget).
      const n = await redis.scopegateHit(redisKey(key, windowStartMs), consume ? 1 : 0, Math.max(1, Math.ceil(windowMs)));
      return Number(n);
    },
    async ping() {
      if (closed) throw closedError();
      await redis.ping();
    },
    async close() {
      if (closed) return;
      closed = true;
      if (redis.status === 'ready') {
        try {
          await redis.quit();
          return;
        } catch {
          // fall through to a hard disconnect
        }
      }
      redis.disconnect();
    },
  };
}
