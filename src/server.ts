/**
 * startGateway: a running gateway from a config, on whichever runtime runs it — the Node door
 * (doors/node/server.ts: @hono/node-server, undici, http-proxy) on Node, the Bun door
 * (doors/bun/server.ts: Bun.serve, Bun's fetch and WebSocket) on Bun. Each door is imported only
 * where it runs, so neither loads the other's modules. main.ts adds signals on top; tests call
 * startGateway() directly with port 0.
 *
 * @example
 *   const gw = await startGateway({ loaded: loadConfigText(yaml), listen: { port: 0 } });
 *   await fetch(`${gw.url}/v2/room/42`, { headers: { authorization: `Bearer ${token}` } });
 *   await gw.shutdown();
 */
import type { ReadinessCheck } from './admin.js';
import type { LoadedConfig } from './config/load.js';
import type { Logger } from './observability/logger.js';
import type { Metrics } from './observability/metrics.js';
import type { Clock } from './types.js';

export interface StartOptions {
  /** An already loaded config; or `configFile` to load (and reload) from disk. */
  loaded?: LoadedConfig;
  configFile?: string;
  env?: Readonly<Record<string, string | undefined>>;
  /** Overrides config.listen / config.admin (tests pass port 0). */
  listen?: { host?: string; port?: number };
  admin?: { host?: string; port?: number } | false;
  clock?: Clock;
  logger?: Logger;
  metrics?: Metrics;
}

export interface RunningGateway {
  /** http://host:port of the proxy listener. */
  url: string;
  /** http://host:port of the admin listener, when it runs. */
  adminUrl?: string | undefined;
  metrics: Metrics;
  logger: Logger;
  current(): LoadedConfig;
  /** Re-reads the config file (or uses `next`), swaps atomically. false (old config kept) on error. */
  reload(next?: LoadedConfig): Promise<boolean>;
  readiness(): Promise<ReadinessCheck[]>;
  /** Fails readiness, stops accepting, drains in-flight requests (bounded), closes everything. */
  shutdown(): Promise<void>;
}


/** The runtime this process runs on: the door `startGateway` picks. */
export function runtimeName(): 'bun' | 'node' {
  return typeof (globalThis as { Bun?: unknown }).Bun !== 'undefined' ? 'bun' : 'node';
}

export async function startGateway(opts: StartOptions): Promise<RunningGateway> {
  if (runtimeName() === 'bun') {
    const { startBunGateway } = await import('./doors/bun/server.js');
    return startBunGateway(opts);
  }
  const { startNodeGateway } = await import('./doors/node/server.js');
  return startNodeGateway(opts);
}
