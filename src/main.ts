/**
 * `scopegate serve`: load the config, start the listeners, reload on SIGHUP (and on file change
 * with `watch: true`), drain on SIGTERM/SIGINT and exit 0.
 *
 * @example
 *   await serve({ configFile: 'config/gateway.yaml' });
 */
import { createHash } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ConfigError } from './errors.js';
import { createLogger } from './observability/logger.js';
import { startGateway } from './server.js';

export async function serve(opts: { configFile: string }): Promise<void> {
  const logger = createLogger();
  process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled rejection'));
  // Read before the config is loaded, so a change made while starting still counts as a change.
  const initialFingerprint = await fingerprint(resolve(opts.configFile)).catch(() => undefined);
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

  process.on('SIGHUP', () => {
    logger.info('SIGHUP: reloading config');
    void gw.reload();
  });

  let watcher: FSWatcher | undefined;
  if (cfg.watch) {
    // Watch the directory, not the file: editors and Kubernetes ConfigMaps replace the file
    // (rename over it, or swap a `..data` symlink), after which a watch on the file itself would
    // follow the old inode and never fire again. Any event in the directory triggers a re-read;
    // only a change of content reloads, so unrelated files and duplicate events cost no reload.
    const file = resolve(opts.configFile);
    let seen = initialFingerprint;
    let timer: NodeJS.Timeout | undefined;
    const check = async () => {
      const now = await fingerprint(file).catch(() => undefined);
      // Missing for a moment mid-replacement: the event that completes it comes next.
      if (now === undefined || now === seen) return;
      seen = now;
      await gw.reload();
    };
    watcher = watch(dirname(file), () => {
      clearTimeout(timer);
      // Editors write files in several steps; wait for the last one.
      timer = setTimeout(() => void check(), 200);
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
  // Last: once this line is out, signals and config changes are handled.
  logger.info({ url: gw.url, admin: gw.adminUrl, config: gw.current().file, routes: gw.current().routes.routes.length }, 'scopegate listening');
}

/** SHA-256 of the file's bytes (symlinks followed): what decides whether a watch event is a change. */
async function fingerprint(file: string): Promise<string> {
  return createHash('sha256').update(await readFile(file)).digest('hex');
}
