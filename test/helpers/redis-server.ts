/**
 * A PRIVATE redis-server process on a random port, for tests that kill and restart Redis. It never
 * touches the shared Redis on 6379 that other test files use. No persistence (`--save ""`,
 * no AOF), its own temp dir, bound to 127.0.0.1 only.
 *
 * When the `redis-server` binary is missing, `describeRedisServer` skips its suite with a visible
 * warning locally and fails under CI (`CI` set), so a missing binary never turns CI silently green.
 *
 * @example
 *   import { describeRedisServer, startRedisServer } from '../helpers/redis-server.js';
 *   describeRedisServer('redis outage', () => {
 *     it('recovers', async () => {
 *       const redis = await startRedisServer();       // redis.url = redis://127.0.0.1:<port>
 *       await redis.kill();                            // SIGKILL: a crash, not a clean shutdown
 *       await redis.restart();                         // same port, empty data set
 *       await redis.stop();
 *     });
 *   });
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'vitest';

const BINARY = process.env.REDIS_SERVER_BIN || 'redis-server';

/** true when `redis-server --version` runs. Decided once per test file. */
export const redisServerInstalled: boolean = (() => {
  try {
    return spawnSync(BINARY, ['--version'], { stdio: 'ignore', timeout: 5_000 }).status === 0;
  } catch {
    return false;
  }
})();

/**
 * `describe` when the redis-server binary exists. Otherwise: under CI a suite with one failing
 * test; locally `describe.skip` plus a console warning.
 */
export function describeRedisServer(name: string, fn: () => void): void {
  if (redisServerInstalled) {
    describe(name, fn);
    return;
  }
  if (process.env.CI) {
    describe(name, () => {
      it('needs the redis-server binary (CI is set, so this fails instead of skipping)', () => {
        throw new Error(`"${BINARY}" was not found; install redis-server or set REDIS_SERVER_BIN`);
      });
    });
    return;
  }
  console.warn(`\n[describeRedisServer] SKIPPED "${name}": the "${BINARY}" binary was not found (install redis-server or set REDIS_SERVER_BIN)\n`);
  describe.skip(name, fn);
}

export interface RedisServer {
  /** redis://127.0.0.1:<port> */
  url: string;
  port: number;
  /** true while the process runs. */
  readonly running: boolean;
  /** SIGKILL (a crash: clients see the connection reset) and wait for the exit. */
  kill(): Promise<void>;
  /** Starts redis-server again on the same port (empty data set) and waits until it accepts. */
  restart(): Promise<void>;
  /** Stops the process (if running) and removes its temp dir. */
  stop(): Promise<void>;
}

/** A port that was free a moment ago (bound on 127.0.0.1:0, then released). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** Spawns redis-server on `port`; resolves once it logs that it accepts connections. */
function spawnRedis(port: number, dir: string): Promise<ChildProcess> {
  const child = spawn(
    BINARY,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no', '--loglevel', 'notice'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`redis-server on port ${port} did not become ready within 10 s:\n${out}`));
    }, 10_000);
    const onData = (c: Buffer) => {
      out += c.toString('utf8');
      if (out.includes('Ready to accept connections')) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        child.stdout!.resume(); // keep draining so the pipe never fills
        resolve(child);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code, sig) => {
      clearTimeout(timer);
      reject(new Error(`redis-server on port ${port} exited (${code ?? sig}) before it was ready:\n${out}`));
    });
  });
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Starts a private redis-server on a random free port (retries if another process grabs it). */
export async function startRedisServer(): Promise<RedisServer> {
  const dir = await mkdtemp(join(tmpdir(), 'scopegate-redis-'));
  let child: ChildProcess | undefined;
  let port = 0;
  let lastError: unknown;
  for (let attempt = 0; attempt < 5 && !child; attempt++) {
    port = await freePort();
    try {
      child = await spawnRedis(port, dir);
    } catch (e) {
      lastError = e;
    }
  }
  if (!child) {
    await rm(dir, { recursive: true, force: true });
    throw lastError instanceof Error ? lastError : new Error(String(lastError));
  }
  let current: ChildProcess | undefined = child;
  const isRunning = () => current !== undefined && current.exitCode === null && current.signalCode === null;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get running() {
      return isRunning();
    },
    async kill() {
      if (!current) return;
      const c = current;
      if (isRunning()) c.kill('SIGKILL');
      await waitExit(c);
      current = undefined;
    },
    async restart() {
      if (isRunning()) throw new Error('redis-server is still running; kill() it first');
      current = await spawnRedis(port, dir);
    },
    async stop() {
      if (current) {
        const c = current;
        if (isRunning()) c.kill('SIGTERM');
        await waitExit(c);
        current = undefined;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
