/**
 * The Hono middleware's options (SPEC §8 "Hono middleware"), validated once and synchronously:
 * either `{ configFile }` — a YAML file as for `serve` (`${ENV}` expanded, relative key paths
 * against the file) — or the config as an object (`tokens`, `rate_limit`, `routes`, `realm`,
 * `docs_url`, `fallback`, `trusted_proxies`, `token_service`). `listen`, `admin`, `upstreams`
 * (and the other keys only a listening gateway uses: `forward_auth`, `watch`,
 * `shutdown_timeout_ms`, a route's `upstream`) are refused: the application listens and its own
 * handlers serve the routes. Every problem is one `ScopegateConfigError` carrying the issues, in
 * the words `scopegate check` prints.
 *
 * Synchronous means no promise: the file and every key file are read with the runtime's
 * `fs.readFileSync` (via `process.getBuiltinModule`, src/builtin.ts, so this module has no
 * `node:` import and bundles for runtimes without a file system — where only the object form,
 * inline secrets and `jwks_url` work, and a file is refused saying so).
 *
 * @example
 *   const { loaded, runtime } = compileOptions({ configFile: 'config/hono.yaml' });
 *   loaded.routes;  // the compiled route table; loaded.baseDir: the file's directory
 *   compileOptions({ tokens: { issuers: [] }, listen: { port: 1 } }); // throws ScopegateConfigError
 */
import type { Context } from 'hono';
import { isMap, LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { formatPath, parseConfigText, type LoadedConfig } from '../../config/parse.js';
import { nodeBuiltin, runtimeProcess } from '../../builtin.js';
import { NO_KEY_FILE_RUNTIME } from '../../auth/keys.js';
import { clip } from '../../clip.js';
import { GatewayConfigSchema, type GatewayConfig } from '../../config/schema.js';
import { ConfigError, type ConfigIssue } from '../../errors.js';
import { compileRoutes, type RouteTable } from '../../routing/compile-routes.js';
import type { Clock } from '../../types.js';

/** Thrown, synchronously, by `scopegate(options)` for every configuration problem; `issues` lists them all. */
export class ScopegateConfigError extends ConfigError {
  constructor(issues: ConfigIssue[], file?: string) {
    super(issues, file);
    this.name = 'ScopegateConfigError';
  }
}

/** The config keys the middleware takes (the file's keys minus what only a listening gateway uses). */
export const CONFIG_KEYS = ['tokens', 'rate_limit', 'routes', 'realm', 'docs_url', 'fallback', 'trusted_proxies', 'token_service'] as const;

/** Keys of a `serve` config the middleware refuses, with why. */
const REFUSED: Readonly<Record<string, string>> = {
  listen: 'is not used by the Hono middleware: the application listens (remove it)',
  admin: 'is not used by the Hono middleware: it has no admin listener (remove it; expose metrics from the application)',
  upstreams: "is not used by the Hono middleware: it forwards nothing, the application's own handlers serve the routes (remove it)",
  forward_auth: 'is not used by the Hono middleware: it answers no forward-auth sub-requests (remove it)',
  watch: 'is not used by the Hono middleware: its config is fixed when the middleware is built (remove it)',
  shutdown_timeout_ms: 'is not used by the Hono middleware: the application drains its own connections (remove it)',
};
const ROUTE_UPSTREAM = "is not used by the Hono middleware: it forwards nothing, the application's own handlers serve the route (remove it)";

/** Options besides the config itself (camelCase, so they never collide with a config key). */
export interface RuntimeOptions {
  /** Epoch-ms clock for token times and rate-limit windows (tests freeze it). Default `Date.now`. */
  clock?: Clock | undefined;
  /**
   * The client's address, for whatever the decision records about it. Default: the connection's
   * address where the adapter exposes one (@hono/node-server, Bun, Deno), else ''.
   */
  clientIp?: ((c: Context) => string) | undefined;
  /**
   * Told about failures that are not the client's: keys that could not be loaded on the first
   * request, an unexpected exception, a rate-limit store error. Default: `console.error`. The
   * error's message never holds a token.
   */
  onError?: ((err: Error) => void) | undefined;
  /**
   * A revocation list (SPEC §9): true when the token id (`claims.token_id`, default `jti`) was
   * revoked, answered 401 token_revoked even for a cached token. Asked on every request, so a
   * synchronous in-memory lookup (e.g. a denylist the application keeps in sync with the token
   * service); `revoked_jti` in the config works without it.
   */
  isRevoked?: ((tokenId: string) => boolean) | undefined;
}

export interface FileOptions extends RuntimeOptions {
  /** A YAML config file (as for `scopegate serve`, minus listen/admin/upstreams); relative to the working directory. */
  configFile: string;
  /** Variables for `${VAR}` in the file. Default: `process.env` (none where the runtime has no `process`). */
  env?: Readonly<Record<string, string | undefined>> | undefined;
}

export interface InlineOptions extends RuntimeOptions {
  tokens: unknown;
  rate_limit?: unknown;
  routes?: unknown;
  realm?: unknown;
  docs_url?: unknown;
  fallback?: unknown;
  trusted_proxies?: unknown;
  token_service?: unknown;
  /** Directory relative key file paths resolve against. Default: the working directory. */
  baseDir?: string | undefined;
}

export type ScopegateOptions = FileOptions | InlineOptions;

export interface CompiledOptions {
  loaded: LoadedConfig;
  runtime: Required<Pick<RuntimeOptions, 'clock' | 'onError'>> & Pick<RuntimeOptions, 'clientIp' | 'isRevoked'>;
}

const RUNTIME_KEYS = new Set(['clock', 'clientIp', 'onError', 'isRevoked']);
const FILE_KEYS = new Set(['configFile', 'env', ...RUNTIME_KEYS]);
const INLINE_KEYS = new Set<string>([...CONFIG_KEYS, 'baseDir', ...RUNTIME_KEYS]);

/** The upstream the schema needs to accept a route table; the middleware never contacts it. */
const PLACEHOLDER_UPSTREAM = { default: { url: 'http://scopegate-hono.invalid' } } as const;
const PLACEHOLDER_UPSTREAM_YAML = '\nupstreams: { default: { url: "http://scopegate-hono.invalid" } }\n';

// ---------------------------------------------------------------------------------------------
// The runtime's synchronous file system, without a static `node:` import (src/builtin.ts)

interface SyncFs {
  readFileSync(path: string, encoding: 'utf8'): string;
}
interface PathModule {
  resolve(...parts: string[]): string;
  dirname(p: string): string;
}

const NO_FS = 'needs a runtime with a file system (process.getBuiltinModule("node:fs")); this one has none — give the config as an object, with inline secrets or a jwks_url';

function errnoCode(e: unknown): string {
  return (e as { code?: string } | null)?.code ?? String(e);
}

// ---------------------------------------------------------------------------------------------

/** Validates `options` once; throws ScopegateConfigError (TypeError never: a wrong shape is an issue too). */
export function compileOptions(options: unknown): CompiledOptions {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new ScopegateConfigError([{ path: '', message: 'scopegate(options) takes an object: { configFile } or the config (tokens, routes, ...)' }]);
  }
  const o = options as Record<string, unknown>;
  const runtime = runtimeOf(o);
  const loaded = 'configFile' in o ? fromFile(o) : fromObject(o);
  return { loaded, runtime };
}

function runtimeOf(o: Record<string, unknown>): CompiledOptions['runtime'] {
  const issues: ConfigIssue[] = [];
  const fn = (k: string) => {
    if (o[k] !== undefined && typeof o[k] !== 'function') issues.push({ path: k, message: 'must be a function' });
  };
  fn('clock');
  fn('clientIp');
  fn('onError');
  fn('isRevoked');
  if (issues.length) throw new ScopegateConfigError(issues);
  return {
    clock: (o['clock'] as Clock | undefined) ?? (() => Date.now()),
    clientIp: o['clientIp'] as RuntimeOptions['clientIp'],
    isRevoked: o['isRevoked'] as RuntimeOptions['isRevoked'],
    onError: (o['onError'] as ((e: Error) => void) | undefined) ?? ((e) => console.error(`scopegate: ${e.message}`)),
  };
}

function fromFile(o: Record<string, unknown>): LoadedConfig {
  const file = o['configFile'];
  const issues: ConfigIssue[] = [];
  for (const k of Object.keys(o)) {
    if (!FILE_KEYS.has(k)) issues.push({ path: k, message: `unknown key "${k}" next to configFile (put config keys in the file; allowed here: ${[...FILE_KEYS].join(', ')})` });
  }
  if (typeof file !== 'string' || file === '') issues.push({ path: 'configFile', message: 'must be a non-empty path' });
  const env = o['env'];
  if (env !== undefined && (typeof env !== 'object' || env === null || Array.isArray(env))) issues.push({ path: 'env', message: 'must be an object of strings' });
  if (issues.length) throw new ScopegateConfigError(issues);

  const fs = nodeBuiltin<SyncFs>('node:fs');
  const path = nodeBuiltin<PathModule>('node:path');
  if (!fs || !path) throw new ScopegateConfigError([{ path: 'configFile', message: NO_FS }]);
  const abs = path.resolve(file as string);
  let text: string;
  try {
    text = fs.readFileSync(abs, 'utf8');
  } catch (e) {
    // The words of loadConfigFile / `scopegate check`.
    throw new ScopegateConfigError([{ path: '', message: `cannot read ${abs}: ${errnoCode(e)}` }], abs);
  }
  const vars = (env as Record<string, string | undefined> | undefined) ?? runtimeProcess()?.env ?? {};
  const baseDir = path.dirname(abs);
  const config = parseFileText(text, vars, abs);
  let lines: ((p: string) => number | undefined) | undefined;
  const lineOf = (p: string) => (lines ??= parseConfigText(text, { env: vars }).lineOf)(p);
  return finish(config, abs, baseDir, lineOf);
}

/**
 * YAML text → config, with `scopegate check`'s messages and lines. The refused keys are found
 * first; the schema (which needs an upstream for a route table) then sees the file plus one
 * placeholder upstream appended — after the file itself parsed with no issue but the missing
 * upstream, so every real problem is reported against the file as written.
 */
function parseFileText(text: string, env: Readonly<Record<string, string | undefined>>, file: string): GatewayConfig {
  const refused = refusedInText(text);
  if (refused.length) throw new ScopegateConfigError(refused, file);
  const plain = parseSafely(text, env, file);
  const real = plain.issues.filter((i) => !isMissingUpstream(i));
  if (real.length) throw new ScopegateConfigError(real, file);
  if (plain.config) return plain.config;
  const withUpstream = parseSafely(text + PLACEHOLDER_UPSTREAM_YAML, env, file);
  if (!withUpstream.config) throw new ScopegateConfigError(withUpstream.issues, file);
  return withUpstream.config;
}

/**
 * parseConfigText, with an unexpected exception turned into an issue: load.ts throws a TypeError
 * for text that spells its internal `__SGENV_<n>__` placeholder (reported to the lead).
 */
function parseSafely(text: string, env: Readonly<Record<string, string | undefined>>, file: string): ReturnType<typeof parseConfigText> {
  try {
    return parseConfigText(text, { env });
  } catch (e) {
    throw new ScopegateConfigError([{ path: '', message: `could not be read as a config (${clip((e as Error)?.message ?? String(e), 120)})` }], file);
  }
}

/** The schema's complaints that only say "no upstream" — the middleware needs none. */
function isMissingUpstream(i: ConfigIssue): boolean {
  if (i.path === 'upstreams') return i.message.startsWith('at least one upstream');
  if (i.path === 'fallback') return i.message.includes('upstream "default"');
  return /^routes\[\d+\]\.path$/.test(i.path) && i.message.includes('no upstream named "default"');
}

/** Refused keys in YAML text, with their lines; `${VAR}` neutralised so flow mappings still parse. */
function refusedInText(text: string): ConfigIssue[] {
  const lc = new LineCounter();
  const neutral = text.replace(/\$\$\{|\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}\n]*)?\}/g, (m) => (m === '$${' ? m : 'x'));
  let doc;
  try {
    doc = parseDocument(neutral, { lineCounter: lc, uniqueKeys: false });
  } catch {
    return [];
  }
  if (doc.errors.length || !isMap(doc.contents)) return []; // parseConfigText reports these
  const lineAt = (node: unknown) => {
    const r = (node as { range?: [number, number, number] } | null)?.range;
    return r ? lc.linePos(r[0]).line : undefined;
  };
  const issues: ConfigIssue[] = [];
  for (const pair of doc.contents.items) {
    const key = (pair.key as { value?: unknown } | null)?.value;
    if (typeof key !== 'string') continue;
    const why = REFUSED[key];
    if (why) issues.push({ path: key, line: lineAt(pair.key), message: why });
    if (key === 'routes' && pair.value && typeof pair.value === 'object' && 'items' in pair.value) {
      (pair.value.items as unknown[]).forEach((route, i) => {
        if (!isMap(route)) return;
        const up = route.items.find((p) => (p.key as { value?: unknown } | null)?.value === 'upstream');
        if (up) issues.push({ path: `routes[${i}].upstream`, line: lineAt(up.key), message: ROUTE_UPSTREAM });
      });
    }
  }
  return issues;
}

function fromObject(o: Record<string, unknown>): LoadedConfig {
  const issues: ConfigIssue[] = [];
  const raw: Record<string, unknown> = {};
  for (const k of Object.keys(o)) {
    const why = REFUSED[k];
    if (why) issues.push({ path: k, message: why });
    else if (!INLINE_KEYS.has(k)) issues.push({ path: k, message: `unknown key "${k}" (the middleware takes: configFile, or ${CONFIG_KEYS.join(', ')}; and baseDir, ${[...RUNTIME_KEYS].join(', ')})` });
    else if ((CONFIG_KEYS as readonly string[]).includes(k) && o[k] !== undefined) raw[k] = o[k];
  }
  if (Array.isArray(raw['routes'])) {
    raw['routes'].forEach((r: unknown, i) => {
      if (typeof r === 'object' && r !== null && 'upstream' in r) issues.push({ path: `routes[${i}].upstream`, message: ROUTE_UPSTREAM });
    });
  }
  const baseDir = o['baseDir'];
  if (baseDir !== undefined && (typeof baseDir !== 'string' || baseDir === '')) issues.push({ path: 'baseDir', message: 'must be a non-empty directory path' });
  if (issues.length) throw new ScopegateConfigError(issues);

  const parsed = GatewayConfigSchema.safeParse({ ...raw, upstreams: PLACEHOLDER_UPSTREAM });
  if (!parsed.success) throw new ScopegateConfigError(schemaIssues(parsed.error));
  return finish(parsed.data, undefined, (baseDir as string | undefined) ?? runtimeProcess()?.cwd?.() ?? '/', () => undefined);
}

/** zod issues in the words load.ts gives them (`scopegate check`). */
function schemaIssues(error: z.ZodError): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const i of error.issues) {
    const path = i.path.filter((k): k is string | number => typeof k !== 'symbol');
    if (i.code === 'unrecognized_keys') {
      for (const key of i.keys) out.push({ path: formatPath([...path, key]), message: `unknown key "${key}"` });
    } else if (i.code === 'invalid_union') {
      out.push({ path: formatPath(path), message: 'is not in any accepted form (see the config reference)' });
    } else {
      out.push({ path: formatPath(path), message: i.message });
    }
  }
  return out;
}

/** Route compilation, and what the middleware cannot do that the schema allows. */
function finish(config: GatewayConfig, file: string | undefined, baseDir: string, lineOf: (path: string) => number | undefined): LoadedConfig {
  let routes: RouteTable;
  try {
    routes = compileRoutes(config.routes);
  } catch (e) {
    if (e instanceof ConfigError) throw new ScopegateConfigError(e.issues.map((i) => ({ ...i, line: i.line ?? lineOf(i.path) })), file);
    throw e;
  }
  const issues = keyFileIssues(config, baseDir);
  for (const i of issues) i.line ??= lineOf(i.path);
  if (issues.length) throw new ScopegateConfigError(issues, file);
  return { config, routes, file, baseDir };
}

/** In the order keys.ts picks them. */
const KEY_FILES = ['jwks_file', 'public_key_file', 'private_key_file'] as const;

/**
 * Every key file must be readable now, so a missing one fails when the middleware is built, not
 * on the first request (keys.ts parses them then, on the first request). An issuer without a key
 * source (keys generated into the token service's store) cannot be served: the middleware has no
 * store.
 */
function keyFileIssues(config: GatewayConfig, baseDir: string): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  config.tokens.issuers.forEach((iss, i) => {
    const files = KEY_FILES.filter((k) => iss[k] !== undefined);
    if (!iss.secrets && !iss.jwks_url && files.length === 0) {
      issues.push({
        path: `tokens.issuers[${i}]`,
        message:
          "has no key source, and the Hono middleware cannot read the token service's store: give it jwks_url (the token service's /.well-known/jwks.json) or secrets",
      });
      return;
    }
    if (iss.secrets || iss.jwks_url) return; // keys.ts uses these first; files are not read
    const key = files[0]!;
    const fs = nodeBuiltin<SyncFs>('node:fs');
    const path = nodeBuiltin<PathModule>('node:path');
    // keys.ts parses the file with node:crypto, on the first request: refused now where it would fail then.
    if (!fs || !path || !nodeBuiltin('node:crypto')) {
      issues.push({ path: `tokens.issuers[${i}].${key}`, message: NO_KEY_FILE_RUNTIME });
      return;
    }
    const abs = path.resolve(baseDir, iss[key]!);
    try {
      fs.readFileSync(abs, 'utf8');
    } catch (e) {
      issues.push({ path: `tokens.issuers[${i}].${key}`, message: `cannot read key file ${abs}: ${errnoCode(e)}` });
    }
  });
  return issues;
}
