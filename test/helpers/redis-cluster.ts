/**
 * A PRIVATE, real Redis Cluster for tests: six `redis-server --cluster-enabled yes` processes on
 * free ports (3 masters + 3 replicas, joined with `redis-cli --cluster create … --cluster-replicas
 * 1`), no persistence, one temp dir, bound to 127.0.0.1, a short `cluster-node-timeout` so a
 * failover takes seconds. Tests can kill a master (SIGKILL), wait for its replica's promotion, and
 * restart the dead node (it rejoins as a replica). `stop()` kills every process and removes the dir.
 *
 * When `redis-server` or `redis-cli` is missing, `describeRedisCluster` skips its suite with a
 * visible warning locally and fails under CI (`CI` set), as test/helpers/redis-server.ts does.
 *
 * @example
 *   import { describeRedisCluster, startRedisCluster } from '../helpers/redis-cluster.js';
 *   describeRedisCluster('cluster store', () => {
 *     it('survives a failover', async () => {
 *       const c = await startRedisCluster();            // c.seeds: redis://127.0.0.1:<port> × 6
 *       const dead = await c.killMasterOf('some-key');  // SIGKILL the master serving that key's slot
 *       await c.waitForPromotion(dead);                 // its replica now serves those slots
 *       await c.stop();
 *     });
 *   });
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { describe, it } from 'vitest';

const SERVER = process.env.REDIS_SERVER_BIN || 'redis-server';
const CLI = process.env.REDIS_CLI_BIN || 'redis-cli';

function runs(bin: string): boolean {
  try {
    return spawnSync(bin, ['--version'], { stdio: 'ignore', timeout: 5_000 }).status === 0;
  } catch {
    return false;
  }
}

/** true when both binaries run. Decided once per test file. */
export const redisClusterToolsInstalled: boolean = runs(SERVER) && runs(CLI);

/**
 * `describe` when redis-server and redis-cli exist. Otherwise: under CI a suite with one failing
 * test; locally `describe.skip` plus a console warning.
 */
export function describeRedisCluster(name: string, fn: () => void): void {
  if (redisClusterToolsInstalled) {
    describe(name, fn);
    return;
  }
  const why = `"${SERVER}" or "${CLI}" was not found (install redis-server and redis-tools, or set REDIS_SERVER_BIN / REDIS_CLI_BIN)`;
  if (process.env.CI) {
    describe(name, () => {
      it('needs redis-server and redis-cli (CI is set, so this fails instead of skipping)', () => {
        throw new Error(why);
      });
    });
    return;
  }
  console.warn(`\n[describeRedisCluster] SKIPPED "${name}": ${why}\n`);
  describe.skip(name, fn);
}

export interface ClusterNode {
  port: number;
  /** redis://127.0.0.1:<port> */
  url: string;
  readonly running: boolean;
}

export interface RedisCluster {
  /** Seed URLs of all six nodes. */
  seeds: string[];
  nodes: ClusterNode[];
  /** A plain (non-cluster) client to one node; the caller disconnects it. */
  client(node: ClusterNode): Redis;
  /** Port of the master currently serving `key`'s slot (asks a live node). */
  masterOf(key: string): Promise<number>;
  /** SIGKILLs the master serving `key`'s slot; resolves with the dead node once it has exited. */
  killMasterOf(key: string): Promise<ClusterNode>;
  /** Resolves once the live nodes agree that every slot is served again without `dead`. */
  waitForPromotion(dead: ClusterNode, timeoutMs?: number): Promise<void>;
  /** Starts a killed node again (same port, same nodes.conf: it rejoins as a replica). */
  restart(node: ClusterNode): Promise<void>;
  /** Resolves once every running node reports cluster_state:ok with all slots ok. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Kills every process and removes the temp dir. */
  stop(): Promise<void>;
}

/** Binds `n` servers on 127.0.0.1:0 at once (so the ports differ), then releases them. */
async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = createServer();
      servers.push(s);
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => resolve());
      });
    }
    return servers.map((s) => (s.address() as AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms${last ? `: ${String(last)}` : ''}`);
    await sleep(100);
  }
}

interface Proc {
  node: ClusterNode;
  busPort: number;
  child?: ChildProcess | undefined;
}

function alive(c: ChildProcess | undefined): c is ChildProcess {
  return c !== undefined && c.exitCode === null && c.signalCode === null;
}

function waitExit(child: ChildProcess): Promise<void> {
  if (!alive(child)) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

function spawnNode(p: Proc, dir: string, nodeTimeoutMs: number): Promise<ChildProcess> {
  const port = p.node.port;
  const child = spawn(
    SERVER,
    [
      '--port', String(port),
      // Chosen explicitly: the default (port + 10000) may be above 65535 or taken.
      '--cluster-port', String(p.busPort),
      '--bind', '127.0.0.1',
      '--cluster-enabled', 'yes',
      '--cluster-config-file', join(dir, `nodes-${port}.conf`),
      '--cluster-node-timeout', String(nodeTimeoutMs),
      '--save', '',
      '--appendonly', 'no',
      '--dir', dir,
      '--daemonize', 'no',
      '--loglevel', 'notice',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`redis-server (cluster) on port ${port} not ready within 10 s:\n${out}`));
    }, 10_000);
    const onData = (c: Buffer) => {
      out += c.toString('utf8');
      if (out.includes('Ready to accept connections')) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        child.stdout!.resume();
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
      reject(new Error(`redis-server (cluster) on port ${port} exited (${code ?? sig}) before it was ready:\n${out}`));
    });
  });
}

function runCli(args: string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(CLI, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${CLI} ${args.join(' ')} exited ${code}:\n${out}`));
    });
  });
}

function plainClient(port: number): Redis {
  const c = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1_000, commandTimeout: 2_000 });
  c.on('error', () => {});
  return c;
}

/** Runs one command on one node with a throwaway connection. */
async function onNode<T>(port: number, fn: (c: Redis) => Promise<T>): Promise<T> {
  const c = plainClient(port);
  try {
    await c.connect();
    return await fn(c);
  } finally {
    c.disconnect();
  }
}

function infoOk(text: string): boolean {
  return /cluster_state:ok/.test(text) && /cluster_slots_assigned:16384/.test(text) && /cluster_slots_ok:16384/.test(text);
}

/**
 * Starts the cluster and waits until every node reports `cluster_state:ok` and every replica is
 * in sync with its master (so a failover can happen). `nodeTimeoutMs` is cluster-node-timeout.
 */
export async function startRedisCluster(opts: { nodeTimeoutMs?: number } = {}): Promise<RedisCluster> {
  const nodeTimeoutMs = opts.nodeTimeoutMs ?? 2_000;
  const dir = await mkdtemp(join(tmpdir(), 'scopegate-redis-cluster-'));
  const procs: Proc[] = [];
  const stop = async () => {
    await Promise.all(
      procs.map(async (p) => {
        if (alive(p.child)) p.child.kill('SIGKILL');
        if (p.child) await waitExit(p.child);
        p.child = undefined;
      }),
    );
    await rm(dir, { recursive: true, force: true });
  };

  try {
    const ports = await freePorts(12);
    for (let i = 0; i < 6; i++) {
      const port = ports[i]!;
      const p: Proc = {
        busPort: ports[i + 6]!,
        node: {
          port,
          url: `redis://127.0.0.1:${port}`,
          get running() {
            return alive(p.child);
          },
        },
      };
      procs.push(p);
    }
    await Promise.all(procs.map(async (p) => (p.child = await spawnNode(p, dir, nodeTimeoutMs))));
    await runCli(['--cluster', 'create', ...procs.map((p) => `127.0.0.1:${p.node.port}`), '--cluster-replicas', '1', '--cluster-yes']);
  } catch (e) {
    await stop();
    throw e;
  }

  const running = () => procs.filter((p) => alive(p.child));
  const byPort = (port: number) => procs.find((p) => p.node.port === port)!;

  const waitHealthy = async (timeoutMs = 20_000) => {
    await until('cluster_state:ok on every node', timeoutMs, async () => {
      for (const p of running()) {
        if (!infoOk(await onNode(p.node.port, (c) => c.cluster('INFO')))) return undefined;
      }
      return true;
    });
    // Every replica linked to its master (a failover needs one in sync).
    await until('every replica in sync', timeoutMs, async () => {
      for (const p of running()) {
        const info = await onNode(p.node.port, (c) => c.info('replication'));
        if (/role:slave/.test(info) && !/master_link_status:up/.test(info)) return undefined;
      }
      return true;
    });
  };

  const masterOf = async (key: string): Promise<number> => {
    for (const p of running()) {
      try {
        return await onNode(p.node.port, async (c) => {
          const slot = await c.cluster('KEYSLOT', key);
          const slots = await c.cluster('SLOTS');
          const range = slots.find((r) => slot >= r[0] && slot <= r[1]);
          if (!range?.[2]) throw new Error(`slot ${slot} is not served`);
          return Number(range[2][1]);
        });
      } catch {
        // ask the next node
      }
    }
    throw new Error('no live node answered CLUSTER SLOTS');
  };

  try {
    await waitHealthy();
  } catch (e) {
    await stop();
    throw e;
  }

  return {
    seeds: procs.map((p) => p.node.url),
    nodes: procs.map((p) => p.node),
    client: (node) => plainClient(node.port),
    masterOf,
    async killMasterOf(key) {
      const p = byPort(await masterOf(key));
      const c = p.child!;
      c.kill('SIGKILL');
      await waitExit(c);
      p.child = undefined;
      return p.node;
    },
    async waitForPromotion(dead, timeoutMs = 20_000) {
      const deadKey = `127.0.0.1:${dead.port}`;
      await until(`promotion of a replica of ${deadKey}`, timeoutMs, async () => {
        for (const p of running()) {
          const ok = await onNode(p.node.port, async (c) => {
            const info = String(await c.cluster('INFO'));
            const slots = await c.cluster('SLOTS');
            return infoOk(info) && slots.every((r) => r[2] !== undefined && `${r[2][0]}:${r[2][1]}` !== deadKey);
          });
          if (!ok) return undefined;
        }
        return true;
      });
    },
    async restart(node) {
      const p = byPort(node.port);
      if (alive(p.child)) throw new Error(`node ${node.port} is still running`);
      p.child = await spawnNode(p, dir, nodeTimeoutMs);
    },
    waitHealthy,
    stop,
  };
}
