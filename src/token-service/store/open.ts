/**
 * Opens `token_service.store` (SPEC §9): a `postgres://` or `postgresql://` URL is the PostgreSQL
 * backend; anything else is a directory for the embedded store, resolved against `baseDir` (the
 * config file's directory) when relative.
 *
 * `attach: true` is for the operator CLI: when a live process (a running `serve`) holds the
 * embedded store's lock, the returned store forwards every call to that process over its control
 * socket (control.ts) instead of failing; when none does, the CLI opens the directory itself for
 * the duration of one command. A server opens without `attach`, so a second server on the same
 * directory fails with the holder's pid.
 *
 * @example
 *   const store = await openTokenStore(config.token_service.store, { baseDir: loaded.baseDir, metrics });
 *   const cliStore = await openTokenStore('./data', { baseDir, attach: true });
 *   describeStoreLocation('postgres://u:pw@db/sg');   // 'postgres://u:***@db/sg' (for logs)
 */
import { resolve } from 'node:path';
import type { TokenStore } from '../store.js';
import { connectControl } from './control.js';
import { openEmbeddedStore, type EmbeddedStoreOptions } from './embedded.js';
import { inspectLock, LockHeldError } from './lock.js';
import { openPostgresStore, type PostgresStoreOptions } from './postgres.js';

export interface OpenStoreDeps extends EmbeddedStoreOptions, PostgresStoreOptions {
  /** Directory a relative embedded-store path resolves against (LoadedConfig.baseDir). Default: cwd. */
  baseDir?: string;
  /** CLI mode: use the running server's control socket when it holds the embedded store. */
  attach?: boolean;
}

const PG_URL = /^postgres(ql)?:\/\//i;

export function isPostgresLocation(location: string): boolean {
  return PG_URL.test(location);
}

/** The location with any password masked, for logs and messages. */
export function describeStoreLocation(location: string): string {
  if (!isPostgresLocation(location)) return location;
  try {
    const u = new URL(location);
    if (u.password) u.password = '***';
    // Query parameters may carry a password too (`?password=`): keep only their names.
    for (const k of [...u.searchParams.keys()]) if (/pass|secret|key/i.test(k)) u.searchParams.set(k, '***');
    return u.toString();
  } catch {
    return 'postgres://(unparseable URL)';
  }
}

/** The embedded store's absolute directory for a non-URL location. */
export function embeddedDir(location: string, baseDir?: string): string {
  return resolve(baseDir ?? process.cwd(), location);
}

export async function openTokenStore(location: string, deps: OpenStoreDeps = {}): Promise<TokenStore> {
  if (typeof location !== 'string' || location.trim() === '') throw new TypeError('openTokenStore: location must be a non-empty string');
  if (isPostgresLocation(location)) return openPostgresStore(location, deps);

  const dir = embeddedDir(location, deps.baseDir);
  if (deps.attach) {
    const cur = await inspectLock(dir, deps.heartbeatMs).catch(() => undefined);
    if (cur?.holder && !cur.stale && cur.holder.socket) return connectControl(cur.holder.socket, { retryMs: 10_000 });
  }
  try {
    return await openEmbeddedStore(dir, deps);
  } catch (e) {
    // Lost a race with a server starting right now: talk to it instead.
    if (deps.attach && e instanceof LockHeldError && e.holder.socket) return connectControl(e.holder.socket, { retryMs: 10_000 });
    throw e;
  }
}
