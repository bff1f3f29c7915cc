/**
 * The embedded store's directory lock. PGlite takes none, and two processes on one data directory
 * corrupt it (pglite issues 327, 709, 1106), so the embedded store holds an exclusive lock file,
 * `<dir>/scopegate.lock`, created with O_EXCL ('wx') and holding JSON:
 *   { pid, host, startedAt, procStart?, socket?, nonce }
 *
 * A lock is stale — and taken over — when its holder is provably gone:
 *   - same host, and `process.kill(pid, 0)` fails with ESRCH (the pid is dead);
 *   - same host, the pid is alive but its /proc start time differs from `procStart` (the pid was
 *     reused, e.g. pid 1 in a restarted container), or the pid is our own and this process does not
 *     hold the lock;
 *   - another host (a shared volume, a rescheduled pod): the holder refreshes the file's mtime every
 *     `heartbeatMs` (5 s); one untouched for 4 heartbeats is stale.
 * Anything else is live: `LockHeldError` names the pid and host. Taking a stale lock over happens
 * under a second O_EXCL file (`scopegate.lock.break`), so two processes racing to take over the same
 * stale lock cannot both win.
 *
 * @example
 *   const lock = await acquireLock('/var/lib/scopegate', { socket: '/var/lib/scopegate/control.sock' });
 *   try { ...open PGlite... } finally { await lock.release(); }
 *   // a second process: LockHeldError "… is locked by pid 4242 on host web-1 (started 2024-…)"
 */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { readFile, stat, unlink, utimes } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { GatewayError } from '../../errors.js';

export const LOCK_FILE = 'scopegate.lock';
const BREAK_FILE = 'scopegate.lock.break';

export interface LockInfo {
  pid: number;
  host: string;
  /** Epoch ms the holder took the lock. */
  startedAt: number;
  /** The holder's start time from /proc/<pid>/stat (clock ticks since boot), where there is /proc. */
  procStart?: string | undefined;
  /** The holder's control socket (the CLI talks to a running server through it). */
  socket?: string | undefined;
  nonce: string;
}

/** A live process holds the lock: `store_unavailable`, naming the holder. */
export class LockHeldError extends GatewayError {
  readonly holder: LockInfo;
  constructor(dir: string, holder: LockInfo) {
    super('store_unavailable', {
      store: 'token',
      why:
        `token store ${dir} is locked by pid ${holder.pid} on host ${holder.host} (since ${new Date(holder.startedAt).toISOString()}); ` +
        'the embedded store serves one process — stop that process, or use a postgres:// store for several',
    });
    this.name = 'LockHeldError';
    this.holder = holder;
  }
}

export interface HeldLock {
  readonly info: LockInfo;
  readonly path: string;
  /** Why a stale lock was taken over to get this one, if it was. */
  readonly tookOver: string | undefined;
  /** Removes the lock file if it is still ours. Idempotent. */
  release(): Promise<void>;
}

/** Directories locked by this process (a second open in-process is refused, not a takeover). */
const heldHere = new Set<string>();

/** Field 22 of /proc/<pid>/stat; undefined where there is no /proc or the pid is gone. */
export function procStartTime(pid: number | 'self'): string | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may hold spaces and parentheses: split after the last ')'. Then [0] is field 3.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return rest[19];
  } catch {
    return undefined;
  }
}

function parseLock(text: string): LockInfo | undefined {
  try {
    const v = JSON.parse(text) as Partial<LockInfo>;
    if (!Number.isInteger(v.pid) || (v.pid as number) <= 0 || typeof v.host !== 'string' || typeof v.nonce !== 'string') return undefined;
    return {
      pid: v.pid as number,
      host: v.host,
      // Within Date's range, or 0: the holder's message formats it.
      startedAt: Number.isFinite(v.startedAt) && Math.abs(v.startedAt as number) <= 8.64e15 ? (v.startedAt as number) : 0,
      procStart: typeof v.procStart === 'string' ? v.procStart : undefined,
      socket: typeof v.socket === 'string' ? v.socket : undefined,
      nonce: v.nonce,
    };
  } catch {
    return undefined;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: alive, owned by someone else.
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

export interface LockOptions {
  socket?: string | undefined;
  /** How often the holder refreshes the lock's mtime, ms. Default 5000. */
  heartbeatMs?: number;
}

/** Why a lock is stale, or undefined when its holder may be alive. */
export function staleReason(dir: string, holder: LockInfo | undefined, mtimeMs: number, now: number, heartbeatMs: number): string | undefined {
  if (!holder) return 'unreadable lock file';
  if (holder.host !== hostname()) {
    return now - mtimeMs > 4 * heartbeatMs ? `holder on host ${holder.host} stopped refreshing the lock` : undefined;
  }
  if (holder.pid === process.pid) return heldHere.has(dir) ? undefined : 'our own pid from an earlier run';
  if (!pidAlive(holder.pid)) return `pid ${holder.pid} is not running`;
  const start = procStartTime(holder.pid);
  if (start !== undefined && holder.procStart !== undefined && start !== holder.procStart) return `pid ${holder.pid} was reused by another process`;
  return undefined;
}

/** Reads the current lock, if any: its holder and whether it is stale. */
export async function inspectLock(dir: string, heartbeatMs = 5_000): Promise<{ holder: LockInfo | undefined; stale: string | undefined } | undefined> {
  const path = join(dir, LOCK_FILE);
  let text: string;
  let mtimeMs: number;
  try {
    [text, mtimeMs] = await Promise.all([readFile(path, 'utf8'), stat(path).then((s) => s.mtimeMs)]);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const holder = parseLock(text);
  return { holder, stale: staleReason(dir, holder, mtimeMs, Date.now(), heartbeatMs) };
}

function createExclusive(path: string, content: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
  return true;
}

/**
 * Takes the lock or throws `LockHeldError` (live holder). `dir` must exist and be absolute.
 * Call `release()` on close; a crashed holder leaves a stale lock the next open takes over.
 */
export async function acquireLock(dir: string, opts: LockOptions = {}): Promise<HeldLock> {
  const heartbeatMs = opts.heartbeatMs ?? 5_000;
  const path = join(dir, LOCK_FILE);
  if (heldHere.has(dir)) {
    const cur = await inspectLock(dir, heartbeatMs);
    throw new LockHeldError(dir, cur?.holder ?? { pid: process.pid, host: hostname(), startedAt: Date.now(), nonce: '' });
  }
  const info: LockInfo = {
    pid: process.pid,
    host: hostname(),
    startedAt: Date.now(),
    procStart: procStartTime('self'),
    socket: opts.socket,
    nonce: randomBytes(12).toString('base64url'),
  };
  const content = `${JSON.stringify(info)}\n`;

  let tookOver: string | undefined;
  for (let attempt = 0; attempt < 5; attempt++) {
    if (createExclusive(path, content)) return held(dir, path, info, heartbeatMs, tookOver);
    const cur = await inspectLock(dir, heartbeatMs);
    if (!cur) continue; // released meanwhile: try again
    if (!cur.stale) throw new LockHeldError(dir, cur.holder!);
    await breakStale(dir, path, cur.holder);
    tookOver = cur.stale;
  }
  throw new Error(`token store ${dir}: could not take the lock (it kept changing hands)`);
}

/** Removes a stale lock under the break file, re-checking it is still the same stale lock. */
async function breakStale(dir: string, path: string, seen: LockInfo | undefined): Promise<void> {
  const breakPath = join(dir, BREAK_FILE);
  if (!createExclusive(breakPath, String(process.pid))) {
    // Someone else is breaking it; a break file left by a crash mid-break is removed after 10 s.
    try {
      if (Date.now() - (await stat(breakPath)).mtimeMs > 10_000) await unlink(breakPath);
    } catch {
      /* gone already */
    }
    await new Promise((r) => setTimeout(r, 50));
    return;
  }
  try {
    let text: string | undefined;
    try {
      text = await readFile(path, 'utf8');
    } catch {
      return; // removed meanwhile
    }
    const now = parseLock(text);
    // Still the lock we judged stale (same nonce, or both unreadable)?
    if ((now?.nonce ?? null) === (seen?.nonce ?? null)) await unlink(path).catch(() => {});
  } finally {
    await unlink(breakPath).catch(() => {});
  }
}

function held(dir: string, path: string, info: LockInfo, heartbeatMs: number, tookOver: string | undefined): HeldLock {
  heldHere.add(dir);
  let released = false;
  const beat = setInterval(() => {
    const t = new Date();
    utimes(path, t, t).catch(() => {});
  }, heartbeatMs);
  beat.unref();
  return {
    info,
    path,
    tookOver,
    async release() {
      if (released) return;
      released = true;
      clearInterval(beat);
      heldHere.delete(dir);
      try {
        const cur = parseLock(await readFile(path, 'utf8'));
        if (cur?.nonce === info.nonce) await unlink(path);
      } catch {
        /* already gone */
      }
    },
  };
}
