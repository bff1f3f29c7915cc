// A private three-master Redis Cluster for bench/run.mjs's scopegate-redis-cluster row, made the
// way test/helpers/redis-cluster.ts makes the tests' one: `redis-server --cluster-enabled yes` on
// free ports (client port and bus port picked explicitly), no persistence, bound to 127.0.0.1, one
// temp dir, joined with `redis-cli --cluster create … --cluster-yes`, then waited on until every
// node says cluster_state:ok with all 16384 slots assigned. No replicas: the bench needs the
// cluster's request path (three masters, keys spread over slots), not failover.
//
// The processes are started through the caller's `startChild(label, logFile, cmd, args)`, so the
// bench pins them, tracks them and stops them with everything else; `stop()` here stops them too.
//
//   const cluster = await startRedisCluster({ dir, startChild, stopChild });
//   cluster.seeds;   // ['redis://127.0.0.1:<port>', …] × 3
//   cluster.pids;    // for the bench's CPU accounting
//   await cluster.stop();
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';

export const REDIS_SERVER = process.env.REDIS_SERVER_BIN || 'redis-server';
export const REDIS_CLI = process.env.REDIS_CLI_BIN || 'redis-cli';

/** null when redis-server and redis-cli both run, else why not. */
export function clusterToolsMissing() {
  for (const bin of [REDIS_SERVER, REDIS_CLI]) {
    const r = spawnSync(bin, ['--version'], { stdio: 'ignore', timeout: 5_000 });
    if (r.error || r.status !== 0) return `${bin} not found (install redis-server and redis-tools, or set REDIS_SERVER_BIN / REDIS_CLI_BIN)`;
  }
  return null;
}

/** Binds `n` servers on 127.0.0.1:0 at once (so the ports differ), then releases them. */
async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      servers.push(s);
      await new Promise((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, '127.0.0.1', resolve);
      });
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function cli(port, ...args) {
  const r = spawnSync(REDIS_CLI, ['-h', '127.0.0.1', '-p', String(port), ...args], { encoding: 'utf8', timeout: 10_000 });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

async function until(what, timeoutMs, probe) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (probe()) return;
    if (Date.now() > deadline) throw new Error(`redis cluster: ${what} did not happen within ${timeoutMs} ms`);
    await sleep(100);
  }
}

export async function startRedisCluster({ dir, startChild, stopChild, masters = 3 }) {
  mkdirSync(dir, { recursive: true });
  const ports = await freePorts(masters * 2);
  const nodes = [];
  const stop = async () => {
    await Promise.all(nodes.map((n) => stopChild(n.child)));
  };
  try {
    for (let i = 0; i < masters; i++) {
      const port = ports[i];
      const args = [
        '--port', String(port),
        // Chosen explicitly: the default (port + 10000) may be above 65535 or taken.
        '--cluster-port', String(ports[i + masters]),
        '--bind', '127.0.0.1',
        '--cluster-enabled', 'yes',
        '--cluster-config-file', join(dir, `nodes-${port}.conf`),
        '--cluster-node-timeout', '5000',
        '--save', '',
        '--appendonly', 'no',
        '--dir', dir,
        '--daemonize', 'no',
        '--loglevel', 'warning',
      ];
      const child = startChild(`redis-cluster-${port}`, join(dir, `redis-${port}.log`), REDIS_SERVER, args);
      nodes.push({ port, child });
    }
    for (const n of nodes) {
      await until(`PING on ${n.port}`, 10_000, () => {
        if (n.child.exitInfo) throw new Error(`redis-server on ${n.port} exited: ${JSON.stringify(n.child.exitInfo)}`);
        return cli(n.port, 'PING').out.includes('PONG');
      });
    }
    const created = spawnSync(REDIS_CLI, ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed:\n${created.stdout}${created.stderr}`);
    await until('cluster_state:ok on every node', 20_000, () =>
      nodes.every((n) => {
        const info = cli(n.port, 'CLUSTER', 'INFO').out;
        return /cluster_state:ok/.test(info) && /cluster_slots_assigned:16384/.test(info) && /cluster_slots_ok:16384/.test(info);
      }),
    );
  } catch (e) {
    await stop();
    throw e;
  }
  return { seeds: nodes.map((n) => `redis://127.0.0.1:${n.port}`), pids: nodes.map((n) => n.child.pid), stop };
}
