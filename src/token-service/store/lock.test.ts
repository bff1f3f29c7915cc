import { spawn } from 'node:child_process';
import fc from 'fast-check';
import { mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GatewayError } from '../../errors.js';
import { acquireLock, inspectLock, LOCK_FILE, LockHeldError, procStartTime } from './lock.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sg-lock-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const lockPath = () => join(dir, LOCK_FILE);
const write = (v: unknown) => writeFile(lockPath(), typeof v === 'string' ? v : JSON.stringify(v));

/** A live process that is not us (and not our child's zombie once it exits). */
function sleeper(): Promise<{ pid: number; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  return new Promise((resolve) =>
    child.once('spawn', () => resolve({ pid: child.pid!, stop: async () => { child.kill('SIGKILL'); await exited; } })),
  );
}

describe('acquireLock', () => {
  it('writes pid, host, start time and socket, refuses a second holder in-process, and releases', async () => {
    const lock = await acquireLock(dir, { socket: '/x/control.sock' });
    const info = JSON.parse(await readFile(lockPath(), 'utf8'));
    expect(info).toMatchObject({ pid: process.pid, host: hostname(), socket: '/x/control.sock' });
    expect(lock.tookOver).toBeUndefined();
    const err = await acquireLock(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LockHeldError);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as LockHeldError).detail.why).toContain(`pid ${process.pid}`);
    await lock.release();
    await expect(stat(lockPath())).rejects.toThrow();
    await lock.release(); // idempotent
    (await acquireLock(dir)).release();
  });

  it('a live holder in another process is an error naming its pid', async () => {
    const s = await sleeper();
    try {
      await write({ pid: s.pid, host: hostname(), startedAt: Date.now(), procStart: procStartTime(s.pid), nonce: 'n1' });
      const err = await acquireLock(dir).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LockHeldError);
      expect((err as LockHeldError).holder.pid).toBe(s.pid);
      expect((err as LockHeldError).message).toMatch(new RegExp(`pid ${s.pid} on host`));
      expect(JSON.parse(await readFile(lockPath(), 'utf8')).nonce).toBe('n1'); // untouched
    } finally {
      await s.stop();
    }
  });

  it('takes over the lock of a dead pid', async () => {
    const s = await sleeper();
    await s.stop();
    await write({ pid: s.pid, host: hostname(), startedAt: Date.now(), nonce: 'dead' });
    const lock = await acquireLock(dir);
    expect(lock.tookOver).toMatch(/not running/);
    expect(JSON.parse(await readFile(lockPath(), 'utf8')).pid).toBe(process.pid);
    await lock.release();
  });

  it('takes over when the pid is alive but was reused (start time differs), or is our own pid from an earlier run', async () => {
    const s = await sleeper();
    try {
      if (procStartTime(s.pid) !== undefined) {
        await write({ pid: s.pid, host: hostname(), startedAt: 1, procStart: '1', nonce: 'reused' });
        const l = await acquireLock(dir);
        expect(l.tookOver).toMatch(/reused/);
        await l.release();
      }
      await write({ pid: process.pid, host: hostname(), startedAt: 1, nonce: 'earlier-run' });
      const l2 = await acquireLock(dir);
      expect(l2.tookOver).toMatch(/own pid/);
      await l2.release();
    } finally {
      await s.stop();
    }
  });

  it('a holder on another host is live while it refreshes the lock, stale after four missed heartbeats', async () => {
    await write({ pid: 1, host: 'some-other-host', startedAt: Date.now(), nonce: 'remote' });
    await expect(acquireLock(dir, { heartbeatMs: 1000 })).rejects.toThrow(/some-other-host/);
    const old = new Date(Date.now() - 4_500);
    await utimes(lockPath(), old, old);
    const l = await acquireLock(dir, { heartbeatMs: 1000 });
    expect(l.tookOver).toMatch(/stopped refreshing/);
    await l.release();
  });

  it('the holder refreshes its mtime every heartbeat', async () => {
    const l = await acquireLock(dir, { heartbeatMs: 50 });
    const old = new Date(Date.now() - 60_000);
    await utimes(lockPath(), old, old);
    await new Promise((r) => setTimeout(r, 200));
    expect(Date.now() - (await stat(lockPath())).mtimeMs).toBeLessThan(30_000);
    await l.release();
  });

  it('property: whatever a lock file holds, acquiring never throws anything but LockHeldError, and an unreadable one is taken over', async () => {
    const content = fc.oneof(
      fc.string(),
      fc.json(),
      fc.record({ pid: fc.oneof(fc.integer(), fc.string(), fc.constant(process.pid)), host: fc.oneof(fc.constant(hostname()), fc.string()), nonce: fc.string(), startedAt: fc.anything() }).map((o) => JSON.stringify(o)),
    );
    await fc.assert(
      fc.asyncProperty(content, async (text) => {
        await write(text);
        try {
          const l = await acquireLock(dir);
          expect(JSON.parse(await readFile(lockPath(), 'utf8')).nonce).toBe(l.info.nonce);
          await l.release();
        } catch (e) {
          expect(e).toBeInstanceOf(LockHeldError);
        }
        await rm(lockPath(), { force: true });
      }),
      { numRuns: 150 },
    );
  });

  it('inspectLock reports no lock, a live one and a stale one', async () => {
    expect(await inspectLock(dir)).toBeUndefined();
    const l = await acquireLock(dir);
    expect((await inspectLock(dir))!.stale).toBeUndefined();
    await l.release();
    await write('not json');
    expect((await inspectLock(dir))!.stale).toBe('unreadable lock file');
  });
});
