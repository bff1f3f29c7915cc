/**
 * Redis rate-limit store, so that N replicas share one budget: one Redis (`{ url }`) or a Redis
 * Cluster (`{ cluster: [seed urls] }`, ioredis' Cluster client). One atomic Lua script per hit
 * (count + set expiry in one round trip); concurrent hits of one request (main window and flood
 * window) leave in one write per node thanks to ioredis auto-pipelining.
 *
 * Keys: `${keyPrefix}:{${key}}:${windowStartMs}`. Every script call touches exactly one key, so in
 * a cluster every call goes to the one node that serves that key's slot (ioredis follows MOVED and
 * ASK and refreshes its slot map). The braces are a hash tag: all windows of one limit key share a
 * slot. Each window has its own key, so windows never mix.
 *
 * Failure model: while Redis (or the node serving a key) is unreachable every call rejects within
 * `timeoutMs` (never hangs a request, never queues without bound: commands wait only for the first
 * connection, each at most `timeoutMs`); connection errors go to `onError` and never crash the
 * process; the client reconnects by itself with capped backoff. A cluster failover (a master dies,
 * its replica is promoted) fails the calls for that master's slots until the client has the new
 * slot map (refreshed on failure and every 2 s): those are store errors; increments that were in
 * flight on the dead master are lost, none is replayed (a replay could count twice).
 * `ping()` on a cluster resolves only when all 16384 slots are served and every slot owner answers
 * with `cluster_state:ok`.
 *
 * @example
 *   const store = createRedisStore({ url: 'redis://127.0.0.1:6379', keyPrefix: 'scopegate', timeoutMs: 500,
 *                                    onError: (e) => log.warn({ err: e.message }, 'redis') });
 *   const count = await store.increment('jti:local:abc', windowStart, 300_000, true);
 *   await store.close();
 *
 *   const shared = createRedisStore({ cluster: ['redis://10.0.0.1:6379', 'redis://10.0.0.2:6379'],
 *                                     keyPrefix: 'scopegate', timeoutMs: 500 });
 *   await shared.ping(); // rejects until every slot is served
 */
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { RateLimitStore } from './store.js';

interface CommonOptions {
  /** Prepended to every key as `${keyPrefix}:`; '' for none. */
  keyPrefix: string;
  /** Upper bound, ms, on one store call (command timeout). A slower answer is a store error. */
  timeoutMs: number;
  /** Receives connection-level errors (refused, reset, ...). They are never thrown. */
  onError?: (err: Error) => void;
}

/** One Redis: `url` is redis:// or rediss:// (user, password and db number as usual). */
export interface SingleRedisOptions extends CommonOptions {
  url: string;
  cluster?: undefined;
}

/**
 * A Redis Cluster: seed nodes as redis:// or rediss:// URLs (one scheme for all; user and password
 * from the URLs, which must agree; no db number, a cluster has only db 0). The other nodes are
 * discovered with CLUSTER SLOTS.
 */
export interface ClusterRedisOptions extends CommonOptions {
  cluster: readonly string[];
  url?: undefined;
}

export type RedisStoreOptions = SingleRedisOptions | ClusterRedisOptions;

/** The Redis store, plus the key it writes (for tests and diagnostics). */
export interface RedisStore extends RateLimitStore {
  readonly kind: 'redis';
  /** `single` for `{ url }`, `cluster` for `{ cluster }`. */
  readonly topology: 'single' | 'cluster';
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

interface Scripted {
  scopegateHit(key: string, add: number, ttlMs: number): Promise<number>;
}

/** Slots of a Redis Cluster (CLUSTER KEYSLOT is CRC16 mod 16384). */
const CLUSTER_SLOTS = 16384;

/** Reconnect delay after the n-th failed attempt: 50 ms doubling, capped at 2 s, with jitter. */
function backoff(attempt: number): number {
  const base = Math.min(2_000, 50 * 2 ** Math.min(attempt, 6));
  return Math.round(base / 2 + Math.random() * (base / 2));
}

const URL_PATTERN = /^rediss?:\/\//;

function checkCommon(opts: CommonOptions): void {
  if (!Number.isInteger(opts.timeoutMs) || opts.timeoutMs < 1) {
    throw new TypeError(`createRedisStore: timeoutMs must be a positive integer, got ${String(opts.timeoutMs)}`);
  }
  if (typeof opts.keyPrefix !== 'string') throw new TypeError('createRedisStore: keyPrefix must be a string');
}

/** Passes an error to `onError`; a failing callback must not turn a Redis outage into a crash. */
function reporter(onError: CommonOptions['onError']): (err: Error) => void {
  return (err) => {
    try {
      onError?.(err);
    } catch {
      // swallowed on purpose
    }
  };
}

/**
 * Creates the Redis-backed store from `{ url }` (one Redis) or `{ cluster }` (seed nodes of a Redis
 * Cluster), validating the options once. The connection opens on first use.
 *
 * @example
 *   const r = cfg.rate_limit;
 *   const store = createRedisStore({ ...(r.redis_cluster ? { cluster: r.redis_cluster } : { url: r.redis_url! }),
 *                                    keyPrefix: r.key_prefix, timeoutMs: r.redis_timeout_ms });
 */
export function createRedisStore(opts: RedisStoreOptions): RedisStore {
  checkCommon(opts);
  if (opts.url !== undefined && opts.cluster !== undefined) {
    throw new TypeError('createRedisStore: give url or cluster, not both');
  }
  if (opts.cluster !== undefined) return createClusterStore(opts);
  if (typeof opts.url !== 'string' || !URL_PATTERN.test(opts.url)) {
    throw new TypeError('createRedisStore: url must start with redis:// or rediss://');
  }
  return createSingleStore(opts);
}

function createSingleStore(opts: SingleRedisOptions): RedisStore {
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
  }) as Redis & Scripted;

  redis.defineCommand('scopegateHit', { numberOfKeys: 1, lua: HIT_SCRIPT });
  redis.on('error', reporter(opts.onError));
  redis.once('ready', () => {
    redis.options.enableOfflineQueue = false;
  });

  let closed = false;
  const closedError = () => new Error('redis rate-limit store is closed');
  const redisKey = (key: string, windowStartMs: number) => `${prefix}{${key}}:${windowStartMs}`;

  return {
    kind: 'redis',
    topology: 'single',
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

interface Seed {
  host: string;
  port: number;
}

/** Seeds, credentials and TLS from the cluster URLs; throws a TypeError naming the bad entry. */
function parseSeeds(urls: readonly string[]): { seeds: Seed[]; node: RedisOptions } {
  if (!Array.isArray(urls) || urls.length === 0) throw new TypeError('createRedisStore: cluster needs at least one seed URL');
  const seeds: Seed[] = [];
  let scheme: string | undefined;
  let auth: string | undefined;
  let node: RedisOptions = {};
  urls.forEach((raw, i) => {
    const where = `createRedisStore: cluster[${i}]`;
    if (typeof raw !== 'string' || !URL_PATTERN.test(raw)) throw new TypeError(`${where} must start with redis:// or rediss://`);
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      throw new TypeError(`${where} is not a valid URL`);
    }
    if (!u.hostname) throw new TypeError(`${where} has no host`);
    if (u.pathname !== '' && u.pathname !== '/' && u.pathname !== '/0') {
      throw new TypeError(`${where}: a Redis Cluster has only database 0 (got path "${u.pathname}")`);
    }
    const userInfo = `${u.username}:${u.password}`;
    if (scheme !== undefined && (u.protocol !== scheme || userInfo !== auth)) {
      throw new TypeError(`${where}: every seed must use the same scheme and credentials as cluster[0]`);
    }
    scheme = u.protocol;
    auth = userInfo;
    const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
    seeds.push({ host, port: u.port ? Number(u.port) : 6379 });
    if (i === 0) {
      node = {
        ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
        ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
        ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
      };
    }
  });
  return { seeds, node };
}

/** `key: value` lines of CLUSTER INFO. */
function parseInfo(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0) out.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return out;
}

type SlotRange = [number, number, ...Array<[string, number, ...unknown[]]>];

/** The slot owners ("host:port") of a CLUSTER SLOTS reply; throws unless all 16384 slots are assigned. */
function slotOwners(reply: unknown): string[] {
  if (!Array.isArray(reply)) throw new Error('CLUSTER SLOTS answered no slot table');
  const ranges = (reply as SlotRange[])
    .map((r) => ({ start: Number(r[0]), end: Number(r[1]), owner: r[2] }))
    .sort((a, b) => a.start - b.start);
  const owners = new Set<string>();
  let next = 0;
  for (const r of ranges) {
    if (r.start !== next || r.end < r.start || !Array.isArray(r.owner)) break;
    owners.add(`${String(r.owner[0])}:${String(r.owner[1])}`);
    next = r.end + 1;
  }
  if (next !== CLUSTER_SLOTS) {
    const served = ranges.reduce((n, r) => n + Math.max(0, r.end - r.start + 1), 0);
    throw new Error(`redis cluster serves ${served} of ${CLUSTER_SLOTS} slots (first unserved: ${next})`);
  }
  return [...owners];
}

function createClusterStore(opts: ClusterRedisOptions): RedisStore {
  const { seeds, node } = parseSeeds(opts.cluster);
  const prefix = opts.keyPrefix ? `${opts.keyPrefix}:` : '';
  const timeoutMs = opts.timeoutMs;
  const report = reporter(opts.onError);

  const options: ClusterOptions = {
    lazyConnect: true,
    enableAutoPipelining: true,
    // Nothing waits in ioredis' unbounded offline queue: until the cluster is ready each call
    // waits here (`ready()`, at most timeoutMs); afterwards a call to a node that is down fails.
    enableOfflineQueue: false,
    enableReadyCheck: true,
    clusterRetryStrategy: backoff,
    // A command whose connection closed may have run: never resend it (it could count twice).
    retryDelayOnFailover: 0,
    // CLUSTERDOWN / TRYAGAIN / MOVED / ASK mean "not run": retried, within the redirection budget.
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    maxRedirections: Math.max(4, Math.ceil(timeoutMs / 100) + 1),
    slotsRefreshTimeout: Math.max(timeoutMs, 1_000),
    slotsRefreshInterval: 2_000,
    redisOptions: {
      ...node,
      commandTimeout: timeoutMs,
      connectTimeout: Math.max(timeoutMs, 1_000),
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
    },
    scripts: { scopegateHit: { numberOfKeys: 1, lua: HIT_SCRIPT } },
  };
  const cluster = new Cluster(seeds, options) as Cluster & Scripted;
  cluster.on('error', report);
  cluster.on('node error', (err: unknown) => report(err instanceof Error ? err : new Error(String(err))));

  let closed = false;
  const closedError = () => new Error('redis rate-limit store is closed');
  const redisKey = (key: string, windowStartMs: number) => `${prefix}{${key}}:${windowStartMs}`;

  /** One shared wait for the next 'ready' (a cluster that is connecting or reconnecting). */
  let readyWait: Promise<void> | undefined;
  function ready(): Promise<void> | undefined {
    if (cluster.status === 'ready') return undefined;
    if (closed) return Promise.reject(closedError());
    if (cluster.status === 'wait') cluster.connect().catch(() => {}); // errors arrive as events
    readyWait ??= new Promise<void>((resolve) => {
      cluster.once('ready', () => {
        readyWait = undefined;
        resolve();
      });
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`redis cluster not ready within ${timeoutMs} ms (status ${cluster.status})`)), timeoutMs);
    });
    return Promise.race([readyWait, timeout]).finally(() => clearTimeout(timer));
  }

  /** After a failure, fetch the slot map again now rather than at the next 2 s refresh. */
  let lastRefresh = 0;
  function refreshSoon(): void {
    const now = Date.now();
    if (now - lastRefresh < 250 || cluster.status !== 'ready') return;
    lastRefresh = now;
    cluster.refreshSlotsCache();
  }

  async function hit(key: string, add: number, ttlMs: number): Promise<number> {
    try {
      return Number(await cluster.scopegateHit(key, add, ttlMs));
    } catch (e) {
      refreshSoon();
      throw e;
    }
  }

  /** Every slot served, every slot owner reachable and reporting cluster_state:ok. */
  async function checkSlots(): Promise<void> {
    const known = new Map(cluster.nodes('all').map((n) => [`${n.options.host}:${n.options.port}`, n]));
    let reply: unknown;
    let lastError: unknown = new Error('no redis cluster node is connected');
    for (const n of cluster.nodes('master')) {
      try {
        reply = await n.cluster('SLOTS');
        break;
      } catch (e) {
        lastError = e;
      }
    }
    if (reply === undefined) throw lastError instanceof Error ? lastError : new Error(String(lastError));
    const owners = slotOwners(reply);
    const missing = owners.filter((o) => !known.has(o));
    if (missing.length) {
      refreshSoon();
      throw new Error(`redis cluster slot owner(s) ${missing.join(', ')} not connected yet (slot map refreshing)`);
    }
    await Promise.all(
      owners.map(async (o) => {
        const info = parseInfo(String(await known.get(o)!.cluster('INFO')));
        const state = info.get('cluster_state');
        const assigned = info.get('cluster_slots_assigned');
        const ok = info.get('cluster_slots_ok');
        if (state !== 'ok' || assigned !== String(CLUSTER_SLOTS) || ok !== String(CLUSTER_SLOTS)) {
          throw new Error(`redis cluster node ${o}: cluster_state:${state ?? '?'}, slots assigned ${assigned ?? '?'}, ok ${ok ?? '?'}`);
        }
      }),
    ).catch((e: unknown) => {
      refreshSoon();
      throw e;
    });
  }

  return {
    kind: 'redis',
    topology: 'cluster',
    redisKey,
    increment(key, windowStartMs, windowMs, consume) {
      if (closed) return Promise.reject(closedError());
      // Full window length on creation (see the single-node store).
      const k = redisKey(key, windowStartMs);
      const add = consume ? 1 : 0;
      const ttl = Math.max(1, Math.ceil(windowMs));
      const wait = ready();
      return wait ? wait.then(() => hit(k, add, ttl)) : hit(k, add, ttl);
    },
    async ping() {
      if (closed) throw closedError();
      await ready();
      await checkSlots();
    },
    async close() {
      if (closed) return;
      closed = true;
      if (cluster.status === 'ready') {
        try {
          await cluster.quit();
          return;
        } catch {
          // fall through to a hard disconnect
        }
      }
      cluster.disconnect();
    },
  };
}
