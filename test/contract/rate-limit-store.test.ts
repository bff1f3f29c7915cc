/**
 * One contract for every RateLimitStore (SPEC.md §4): the same assertions run against the memory
 * store (with an injected clock), a real Redis, and a real three-master Redis Cluster (private,
 * started by test/helpers/redis-cluster.ts). Store-specific behaviour (memory bound, Redis outage
 * and recovery, option validation) follows the contract; cluster failover is in
 * test/integration/redis-cluster.test.ts.
 */
import net from 'node:net';
import { Cluster } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createMemoryStore, type MemoryStore } from '../../src/ratelimit/memory-store.js';
import { createRedisStore, type RedisStore } from '../../src/ratelimit/redis-store.js';
import type { RateLimitStore } from '../../src/types.js';
import { deleteKeys, describeRedis, redisClient, redisUrl, uniqueKeyPrefix } from '../helpers/redis.js';
import { describeRedisCluster, startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.js';

const W = 60_000;
/** A window-aligned instant; tests move `clock.now` from here. */
const T0 = Math.floor(1_700_000_000_000 / W) * W;

interface TestClock {
  now: number;
  read: () => number;
}
function testClock(): TestClock {
  const c: TestClock = { now: T0 + 1_000, read: () => c.now };
  return c;
}
const windowStart = (now: number, w = W) => Math.floor(now / w) * w;

interface Harness {
  /** A fresh store; the memory store reads `clock`, Redis is told window starts explicitly. */
  make(clock: TestClock): RateLimitStore;
  /** Time left before (key, window) expires, ms; 0 when no entry exists. */
  ttlMs(store: RateLimitStore, key: string, windowStartMs: number): Promise<number>;
}

function storeContract(h: Harness): void {
  const open: RateLimitStore[] = [];
  const make = (clock = testClock()) => {
    const s = h.make(clock);
    open.push(s);
    return { store: s, clock };
  };
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
  });

  it('counts hits within one window: 1, 2, 3', async () => {
    const { store, clock } = make();
    const start = windowStart(clock.now);
    const counts = [];
    for (let i = 0; i < 3; i++) counts.push(await store.increment('count', start, W, true));
    expect(counts).toEqual([1, 2, 3]);
  });

  it('reads without adding when consume is false', async () => {
    const { store, clock } = make();
    const start = windowStart(clock.now);
    expect(await store.increment('read', start, W, false)).toBe(0);
    await store.increment('read', start, W, true);
    await store.increment('read', start, W, true);
    expect(await store.increment('read', start, W, false)).toBe(2);
    expect(await store.increment('read', start, W, false)).toBe(2);
    expect(await store.increment('read', start, W, true)).toBe(3);
  });

  it('creates no entry for a read of an unknown key', async () => {
    const { store, clock } = make();
    const start = windowStart(clock.now);
    await store.increment('never-spent', start, W, false);
    expect(await h.ttlMs(store, 'never-spent', start)).toBe(0);
  });

  it('starts a new window at 0', async () => {
    const { store, clock } = make();
    const start = windowStart(clock.now);
    for (let i = 0; i < 5; i++) await store.increment('roll', start, W, true);
    clock.now += W;
    const next = windowStart(clock.now);
    expect(next).toBe(start + W);
    expect(await store.increment('roll', next, W, false)).toBe(0);
    expect(await store.increment('roll', next, W, true)).toBe(1);
  });

  it('puts the last millisecond of a window in that window and the next millisecond in the next', async () => {
    const { store, clock } = make();
    clock.now = T0 + W - 1; // last ms of window [T0, T0+W)
    const first = windowStart(clock.now);
    expect(first).toBe(T0);
    expect(await store.increment('edge', first, W, true)).toBe(1);
    expect(await store.increment('edge', first, W, true)).toBe(2);
    clock.now = T0 + W; // first ms of the next window
    const second = windowStart(clock.now);
    expect(second).toBe(T0 + W);
    expect(await store.increment('edge', second, W, true)).toBe(1);
  });

  it('keeps distinct keys independent', async () => {
    const { store, clock } = make();
    const start = windowStart(clock.now);
    await store.increment('a', start, W, true);
    await store.increment('a', start, W, true);
    expect(await store.increment('b', start, W, true)).toBe(1);
    expect(await store.increment('a', start, W, false)).toBe(2);
  });

  it('gives 100 concurrent increments exactly the counts 1..100', async () => {
    const { store, clock } = make();
    const start = windowStart(clock.now);
    const counts = await Promise.all(Array.from({ length: 100 }, () => store.increment('burst', start, W, true)));
    expect([...counts].sort((x, y) => x - y)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
  });

  it('expires a counter no later than one window after it was created', async () => {
    const { store, clock } = make();
    const start = windowStart(clock.now);
    await store.increment('expiry', start, W, true);
    const ttl = await h.ttlMs(store, 'expiry', start);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(W);
  });

  it('answers ping while healthy', async () => {
    const { store } = make();
    await expect(store.ping()).resolves.toBeUndefined();
  });
}

describe('rate-limit store contract: memory', () => {
  storeContract({
    make: (clock) => createMemoryStore({ maxKeys: 10_000, clock: clock.read }),
    ttlMs: async (store, key) => (store as MemoryStore).remainingTtlMs(key),
  });
});

describeRedis('rate-limit store contract: redis', () => {
  const prefix = uniqueKeyPrefix('contract');
  const client = redisClient();
  let n = 0;
  afterAll(async () => {
    await deleteKeys(client, prefix);
    client.disconnect();
  });
  storeContract({
    // A fresh sub-prefix per store so tests never see each other's counters.
    make: () => createRedisStore({ url: redisUrl(), keyPrefix: `${prefix}:${++n}`, timeoutMs: 1_000 }),
    ttlMs: async (store, key, start) => Math.max(0, await client.pttl((store as RedisStore).redisKey(key, start))),
  });
});

describeRedisCluster('rate-limit store contract: redis cluster', () => {
  let cluster: RedisCluster;
  let client: Cluster;
  let n = 0;
  beforeAll(async () => {
    cluster = await startRedisCluster();
    client = new Cluster(cluster.seeds.map((u) => ({ host: '127.0.0.1', port: Number(new URL(u).port) })), { lazyConnect: true });
    client.on('error', () => {});
  }, 60_000);
  afterAll(async () => {
    client?.disconnect();
    await cluster?.stop();
  });
  storeContract({
    make: () => createRedisStore({ cluster: cluster.seeds, keyPrefix: `contract:${++n}`, timeoutMs: 2_000 }),
    ttlMs: async (store, key, start) => Math.max(0, await client.pttl((store as RedisStore).redisKey(key, start))),
  });

  it('spreads keys over every master: one store answers for all of them', async () => {
    const store = createRedisStore({ cluster: cluster.seeds.slice(0, 1), keyPrefix: 'spread', timeoutMs: 2_000 });
    try {
      const masters = new Set<number>();
      for (let i = 0; i < 30; i++) {
        const key = `k${i}`;
        expect(await store.increment(key, T0, W, true)).toBe(1);
        masters.add(await cluster.masterOf(store.redisKey(key, T0)));
      }
      expect(masters.size).toBe(3);
    } finally {
      await store.close();
    }
  });
});

describe('redis store options', () => {
  it.each([
    ['url and cluster together', { url: 'redis://x', cluster: ['redis://y'] }],
    ['an empty cluster list', { cluster: [] }],
    ['a seed that is not a redis URL', { cluster: ['http://x:1'] }],
    ['a database number in a cluster seed', { cluster: ['redis://x:1/2'] }],
    ['seeds with different schemes', { cluster: ['redis://x:1', 'rediss://y:1'] }],
    ['seeds with different credentials', { cluster: ['redis://a:p@x:1', 'redis://b:p@y:1'] }],
  ])('rejects %s loudly', (_name, over) => {
    expect(() => createRedisStore({ keyPrefix: '', timeoutMs: 100, ...over } as Parameters<typeof createRedisStore>[0])).toThrow(TypeError);
  });

  it('names its topology', async () => {
    const single = createRedisStore({ url: 'redis://127.0.0.1:1', keyPrefix: '', timeoutMs: 100 });
    const multi = createRedisStore({ cluster: ['redis://127.0.0.1:1'], keyPrefix: '', timeoutMs: 100 });
    expect([single.topology, multi.topology]).toEqual(['single', 'cluster']);
    await Promise.all([single.close(), multi.close()]);
  });

  it('a cluster store whose seeds are all down rejects increment and ping within its timeout, and reports errors', async () => {
    const errors: Error[] = [];
    const store = createRedisStore({ cluster: [`redis://127.0.0.1:${await closedPort()}`], keyPrefix: 'down', timeoutMs: 200, onError: (e) => errors.push(e) });
    try {
      await expect(settlesWithin(store.increment('k', T0, W, true), 5_000)).rejects.toThrow(/not ready|closed|available|timed out/i);
      await expect(settlesWithin(store.ping(), 5_000)).rejects.toThrow();
      expect(errors.length).toBeGreaterThan(0);
    } finally {
      await store.close();
    }
    await expect(store.increment('k', T0, W, true)).rejects.toThrow(/closed/);
  });
});

describe('memory store', () => {
  it('stays bounded by maxKeys however many keys arrive (10,000 keys, maxKeys 100)', async () => {
    const clock = testClock();
    const store = createMemoryStore({ maxKeys: 100, clock: clock.read });
    const start = windowStart(clock.now);
    for (let i = 0; i < 10_000; i++) await store.increment(`k${i}`, start, W, true);
    expect(store.size).toBeLessThanOrEqual(100);
    // The most recent keys are the ones kept.
    expect(await store.increment('k9999', start, W, false)).toBe(1);
    expect(await store.increment('k0', start, W, false)).toBe(0);
  });

  it('decides expiry by the injected clock, not real time', async () => {
    const clock = testClock();
    const store = createMemoryStore({ maxKeys: 10, clock: clock.read });
    const start = windowStart(clock.now);
    await store.increment('t', start, W, true);
    expect(store.remainingTtlMs('t')).toBe(start + W - clock.now);
    clock.now = start + W - 1;
    expect(store.remainingTtlMs('t')).toBe(1);
    expect(await store.increment('t', start, W, true)).toBe(2);
    clock.now = start + W + 1;
    expect(store.remainingTtlMs('t')).toBe(0);
  });

  it('rejects a non-positive maxKeys loudly', () => {
    expect(() => createMemoryStore({ maxKeys: 0, clock: () => 0 })).toThrow(TypeError);
  });
});

/** A TCP hop in front of the real Redis that the test can cut and restore. */
async function redisProxy(): Promise<{ url: string; stop(): Promise<void>; start(): Promise<void> }> {
  const target = new URL(redisUrl());
  const sockets = new Set<net.Socket>();
  const server = net.createServer((down) => {
    const up = net.connect(Number(target.port || 6379), target.hostname);
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        down.destroy();
        up.destroy();
      });
    }
    down.pipe(up).pipe(down);
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  await listen(0);
  const port = (server.address() as net.AddressInfo).port;
  const url = new URL(target.href);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.href,
    async stop() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
    start: () => listen(port),
  };
}

/** Resolves with `p`'s outcome, or rejects when it is still pending after `ms` (a hang). */
function settlesWithin<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms);
  });
  return Promise.race([p, hang]).finally(() => clearTimeout(timer));
}

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('redis store when Redis is down', () => {
  it('rejects increment and ping instead of hanging, and reports errors to onError', async () => {
    const errors: Error[] = [];
    const store = createRedisStore({
      url: `redis://127.0.0.1:${await closedPort()}`,
      keyPrefix: 'scopegate-test-down',
      timeoutMs: 200,
      onError: (e) => errors.push(e),
    });
    try {
      // The bound is generous on purpose: this proves "no hang", not a latency.
      await expect(settlesWithin(store.increment('k', T0, W, true), 5_000)).rejects.toThrow(/ECONNREFUSED|closed|writeable|retries|timed out/i);
      await expect(settlesWithin(store.increment('k', T0, W, false), 5_000)).rejects.toThrow(/ECONNREFUSED|closed|writeable|retries|timed out/i);
      await expect(settlesWithin(store.ping(), 5_000)).rejects.toThrow();
      expect(errors.length).toBeGreaterThan(0);
      expect(errors[0]!.message).toMatch(/ECONNREFUSED/);
    } finally {
      await store.close();
    }
  });

  it('rejects calls after close', async () => {
    const store = createRedisStore({ url: 'redis://127.0.0.1:1', keyPrefix: 'x', timeoutMs: 100 });
    await store.close();
    await expect(store.increment('k', T0, W, true)).rejects.toThrow(/closed/);
  });

  it('rejects a bad url or timeout loudly', () => {
    expect(() => createRedisStore({ url: 'http://x', keyPrefix: '', timeoutMs: 100 })).toThrow(TypeError);
    expect(() => createRedisStore({ url: 'redis://x', keyPrefix: '', timeoutMs: 0 })).toThrow(TypeError);
  });
});

describeRedis('redis store outage and recovery', () => {
  const prefix = uniqueKeyPrefix('outage');
  const client = redisClient();
  afterAll(async () => {
    await deleteKeys(client, prefix);
    client.disconnect();
  });

  it('fails calls while the connection is cut and counts on, unaided, when Redis is back', async () => {
    const proxy = await redisProxy();
    const store = createRedisStore({ url: proxy.url, keyPrefix: prefix, timeoutMs: 500, onError: () => {} });
    try {
      expect(await store.increment('r', T0, W, true)).toBe(1);
      await proxy.stop();
      await expect(settlesWithin(store.increment('r', T0, W, true), 5_000)).rejects.toThrow();
      await expect(settlesWithin(store.ping(), 5_000)).rejects.toThrow();
      await proxy.start();
      // Reconnection is automatic (capped backoff); wait for it without touching the store.
      const deadline = Date.now() + 15_000;
      for (;;) {
        try {
          await store.ping();
          break;
        } catch (e) {
          if (Date.now() > deadline) throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      expect(await store.increment('r', T0, W, true)).toBe(2);
    } finally {
      await store.close();
      await proxy.stop().catch(() => {});
    }
  });
});
