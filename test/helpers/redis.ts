/**
 * Real Redis for tests: where it is, whether it answers, and a `describeRedis` that runs a suite
 * only when it does. Locally an unreachable Redis skips the suite with a visible warning; under CI
 * (`CI` set) it fails instead, so a missing service can never turn the suite silently green.
 *
 * @example
 *   import { describeRedis, redisUrl, uniqueKeyPrefix } from '../helpers/redis.js';
 *   describeRedis('redis store', () => {
 *     const prefix = uniqueKeyPrefix('contract');
 *     it('counts', async () => { ... createRedisStore({ url: redisUrl(), keyPrefix: prefix, timeoutMs: 500 }) ... });
 *   });
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { describe, it } from 'vitest';

/** REDIS_URL, else the local default. */
export function redisUrl(): string {
  return process.env.REDIS_URL || 'redis://127.0.0.1:6379';
}

/** Resolves true when Redis at `url` answers PING within `timeoutMs`; never rejects. */
export async function redisAvailable(url = redisUrl(), timeoutMs = 1_000): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  client.on('error', () => {}); // the answer is the boolean below
  let timer: NodeJS.Timeout | undefined;
  try {
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timeout')), timeoutMs);
    });
    await Promise.race([client.connect().then(() => client.ping()), deadline]);
    return true;
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}

/** Decided once per test file, before any suite is registered. */
const available = await redisAvailable();

/**
 * `describe` when Redis answers. Otherwise: under CI a suite with one failing test naming the URL;
 * locally `describe.skip` plus a console warning, so the skip is visible.
 */
export function describeRedis(name: string, fn: () => void): void {
  if (available) {
    describe(name, fn);
    return;
  }
  if (process.env.CI) {
    describe(name, () => {
      it('needs a reachable Redis (CI is set, so this fails instead of skipping)', () => {
        throw new Error(`Redis is not reachable at ${redisUrl()}; start it or set REDIS_URL`);
      });
    });
    return;
  }
  console.warn(`\n[describeRedis] SKIPPED "${name}": Redis is not reachable at ${redisUrl()} (set REDIS_URL or start redis)\n`);
  describe.skip(name, fn);
}

/** A key prefix no other test run (or parallel worker) uses. */
export function uniqueKeyPrefix(label = 'test'): string {
  return `scopegate-test:${label}:${process.pid}:${randomUUID().slice(0, 8)}`;
}

/** A plain client for assertions (PTTL, cleanup). Call `.disconnect()` when done. */
export function redisClient(): Redis {
  const client = new Redis(redisUrl(), { maxRetriesPerRequest: 0, lazyConnect: true });
  client.on('error', () => {});
  return client;
}

/** Deletes every key under `prefix` (SCAN, so safe on a shared Redis). */
export async function deleteKeys(client: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
    cursor = next;
    if (keys.length) await client.del(...keys);
  } while (cursor !== '0');
}
