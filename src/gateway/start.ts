/**
 * What every door does first when it starts (SPEC §6): take the injected clock, logger and
 * metrics (or make them), load the config, and open the token service's store and keys, which
 * live as long as the process, across reloads. Each door then builds its generations on top.
 *
 * @example
 *   const { clock, logger, metrics, load, initial, host } = await prepareStart(opts);
 *   const core = await buildCoreGeneration(initial, undefined, { clock, logger, metrics, host });
 */
import { loadConfigFile, type LoadedConfig } from '../config/load.js';
import { createLogger, type Logger } from '../observability/logger.js';
import { createMetrics, type Metrics } from '../observability/metrics.js';
import type { StartOptions } from '../server.js';
import { systemClock, type Clock } from '../types.js';
import { VERSION } from '../version.js';
import { openTokenServiceHost, type TokenServiceHost } from './token-service-host.js';

export interface Prepared {
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  /** Loads the config again (reload): the file when there is one, else the given config. */
  load: () => Promise<LoadedConfig>;
  initial: LoadedConfig;
  host: TokenServiceHost | undefined;
}

export async function prepareStart(opts: StartOptions): Promise<Prepared> {
  const clock = opts.clock ?? systemClock;
  const logger = opts.logger ?? createLogger();
  const metrics = opts.metrics ?? createMetrics({ version: VERSION });
  const load = async (): Promise<LoadedConfig> => {
    if (opts.configFile) return loadConfigFile(opts.configFile, opts.env);
    if (opts.loaded) return opts.loaded;
    throw new Error('startGateway needs `loaded` or `configFile`');
  };
  const initial = await load();
  const host = await openTokenServiceHost(initial, { clock, logger, metrics });
  return { clock, logger, metrics, load, initial, host };
}
