/**
 * A Node builtin from the runtime without importing it: `process.getBuiltinModule(id)` (Node
 * ≥ 20.16, Bun; Deno and Cloudflare Workers' `nodejs_compat` have it too). Modules the Hono
 * middleware reaches (SPEC §8: "Node-only dependencies are not imported unless the options need
 * them") ask for `node:crypto`, `node:fs`, `node:path` here, at the point a config that names a
 * file needs them, instead of an `import` a bundler would follow and a runtime without Node's
 * modules would fail to load. Where the runtime has no such module the answer is undefined and
 * the caller says what the config would need.
 *
 * @example
 *   import type * as NodeFs from 'node:fs';
 *   const fs = nodeBuiltin<typeof NodeFs>('node:fs'); // undefined in a browser or a plain Worker
 *   runtimeProcess()?.env;                              // process.env where there is a process
 */

/** What of `process` these modules read, where a runtime has one. */
export interface ProcessLike {
  getBuiltinModule?: (id: string) => unknown;
  env?: Record<string, string | undefined>;
  cwd?: () => string;
}

/** The runtime's `process`, or undefined (a browser, a Worker without nodejs_compat). */
export function runtimeProcess(): ProcessLike | undefined {
  const p = (globalThis as { process?: unknown }).process;
  return typeof p === 'object' && p !== null ? (p as ProcessLike) : undefined;
}

/** The builtin `id` (`'node:fs'`), or undefined where the runtime does not provide it. */
export function nodeBuiltin<T>(id: string): T | undefined {
  try {
    const get = runtimeProcess()?.getBuiltinModule;
    return typeof get === 'function' ? ((get(id) as T | undefined) ?? undefined) : undefined;
  } catch {
    return undefined;
  }
}
