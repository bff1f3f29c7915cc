/**
 * `scopegate serve`: load the config, start the listeners, reload on SIGHUP (and on file change
 * with `watch: true`), drain on SIGTERM/SIGINT and exit 0.
 *
 * @example
 *   await serve({ configFile: 'config/gateway.yaml' });
 */
import { watch, type FSWatcher } from 'node:fs';
import { ConfigError } from './errors.js';
import { createLogger } from './observability/logger.js';
import { startGateway } from './server.js';

export async function serve(opts: { configFile: string }): Promise<void> {
  const logger = createLogger();
  process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled rejection'));
  let gw;
  try {
    gw = await startGateway({ configFile: opts.configFile, logger });
  } catch (e) {
    if (e instanceof ConfigError) {
      logger.fatal({ issues: e.issues }, e.message);
      process.stderr.write(`${e.message}\n`);
      process.exit(1);
    }
    throw e;
  }
  const cfg = gw.current().config;
  logger.info({ url: gw.url, admin: gw.adminUrl, config: gw.current().file, routes: gw.current().routes.routes.length }, 'scopegate listening');

  process.on('SIGHUP', () => {
    logger.info('SIGHUP: reloading config');
    void gw.reload();
  });

  let watcher: FSWatcher | undefined;
  if (cfg.watch) {
    let timer: NodeJS.Timeout | undefined;
    watcher = watch(opts.configFile, () => {
      clearTimeout(timer);
      // Editors write files in several steps; wait for the last one.
      timer = setTimeout(() => void gw.reload(), 200);
    });
    watcher.on('error', (err) => logger.warn({ err: err.message }, 'config watch failed'));
  }

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining');
    watcher?.close();
    gw.shutdown().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
