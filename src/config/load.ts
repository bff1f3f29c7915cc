/**
 * Loads a gateway config file: reads it, then parse.ts (YAML → `${ENV}` / `${ENV:-default}`
 * interpolation → zod validation → route compilation; re-exported here, so callers import
 * everything config from this one module). Every failure is one `ConfigError` listing all
 * problems, each naming its YAML path, its line, and (from the schema) the allowed values.
 *
 * The file reading is the only part with `node:` imports, and the Hono middleware (SPEC §8),
 * which reads its file itself, imports parse.ts instead of this module.
 *
 * @example
 *   const { config, routes } = await loadConfigFile('config/gateway.yaml');
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ConfigError } from '../errors.js';
import { loadConfigText, type Env, type LoadedConfig } from './parse.js';

export * from './parse.js';

/** Reads and validates a config file. Throws ConfigError (also for an unreadable file). */
export async function loadConfigFile(file: string, env: Env = process.env): Promise<LoadedConfig> {
  const abs = resolve(file);
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (e) {
    throw new ConfigError([{ path: '', message: `cannot read ${abs}: ${(e as NodeJS.ErrnoException).code ?? String(e)}` }], abs);
  }
  return { ...loadConfigText(text, { env, file: abs, baseDir: dirname(abs) }), file: abs };
}
