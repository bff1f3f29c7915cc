/**
 * Failed-attempt limiter for the password grant (RFC 6749 §4.3.2: "protect the endpoint against
 * brute force attacks"). One fixed window per key, started by the key's first failure: after
 * `maxFailures` failures within `windowMs`, `blocked(key)` is true until that window has passed,
 * and the caller refuses without checking the password. The service keys it twice, per client
 * (`client:<id>`) and per username (`user:<name>`), each with its own limit.
 *
 * In memory, per replica: N replicas allow N × maxFailures per window in the worst case. Bounded
 * by `maxKeys` (least recently used keys go first, so a flood of random usernames cannot grow it,
 * at worst evicting an older key's count). Time comes from the injected clock only.
 *
 * @example
 *   const users = createAttemptLimiter({ maxFailures: 10, windowMs: 300_000, maxKeys: 10_000, clock: Date.now });
 *   if (users.blocked('user:alice')) refuse();
 *   else if (!(await checkPassword())) users.fail('user:alice');
 *   else users.succeed('user:alice');
 */
import { LRUCache } from 'lru-cache';
import type { Clock } from '../types.js';

export interface AttemptLimiterOptions {
  /** Failures allowed per window; the next attempt is refused (positive integer). */
  maxFailures: number;
  /** Window length, ms, counted from the key's first failure (positive integer). */
  windowMs: number;
  /** Keys remembered at most (positive integer). */
  maxKeys: number;
  clock: Clock;
}

export interface AttemptLimiter {
  /** true while `key` has used up its failures in its current window. */
  blocked(key: string): boolean;
  /** Counts one failure of `key`. */
  fail(key: string): void;
  /** Forgets `key`'s failures (a correct password for that username). */
  succeed(key: string): void;
  /** Keys currently held (never more than maxKeys). */
  readonly size: number;
}

interface Entry {
  startMs: number;
  failures: number;
}

function positiveInt(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
    throw new TypeError(`createAttemptLimiter: ${name} must be a positive integer, got ${String(v)}`);
  }
  return v;
}

export function createAttemptLimiter(opts: AttemptLimiterOptions): AttemptLimiter {
  const maxFailures = positiveInt('maxFailures', opts.maxFailures);
  const windowMs = positiveInt('windowMs', opts.windowMs);
  const maxKeys = positiveInt('maxKeys', opts.maxKeys);
  if (typeof opts.clock !== 'function') throw new TypeError('createAttemptLimiter: clock must be a function');
  const clock = opts.clock;
  const entries = new LRUCache<string, Entry>({ max: maxKeys });

  const live = (key: string, now: number): Entry | undefined => {
    const e = entries.get(key);
    if (e && now - e.startMs >= windowMs) {
      entries.delete(key);
      return undefined;
    }
    return e;
  };

  return {
    blocked(key) {
      const e = live(key, clock());
      return e !== undefined && e.failures >= maxFailures;
    },
    fail(key) {
      const now = clock();
      const e = live(key, now);
      if (e) e.failures++;
      else entries.set(key, { startMs: now, failures: 1 });
    },
    succeed(key) {
      entries.delete(key);
    },
    get size() {
      return entries.size;
    },
  };
}
