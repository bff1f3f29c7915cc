/**
 * Finds the external tools the deployment tests run (helm, promtool) and decides, once, whether a
 * missing one is a visible skip (a developer machine) or a failure (CI). `scripts/ci-tools.sh`
 * installs both; run it once locally too (`eval "$(bash scripts/ci-tools.sh)"`).
 *
 * Lookup order: the tool's variable (HELM_BIN, PROMTOOL_BIN), then PATH, then the cache directory
 * ci-tools.sh fills (`$SCOPEGATE_TOOLS_DIR`, default `~/.cache/scopegate-tools`).
 * Under CI=true a missing tool fails its "is available" test unless SCOPEGATE_SKIP_HELM=1
 * (SCOPEGATE_SKIP_PROMTOOL=1 for promtool) says the skip is intended.
 *
 * @example
 *   const helm = findTool('helm');
 *   describe.skipIf(!helm.path)(`helm template (${helm.status})`, () => { ... });
 *   it('helm is available', () => expectAvailable(helm));
 */
import { accessSync, constants } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { spawnSync } from 'node:child_process';

export interface Tool {
  name: 'helm' | 'promtool';
  /** Absolute path of a runnable binary, or null. */
  path: string | null;
  /** Where it was found, or why it is missing (printed in test names and the skip warning). */
  status: string;
  /** true when a missing tool must fail the run (CI=true without the skip variable). */
  required: boolean;
  /** The variable that allows skipping it under CI. */
  skipVar: string;
}

const SPEC = {
  helm: { envVar: 'HELM_BIN', skipVar: 'SCOPEGATE_SKIP_HELM', cached: 'helm/helm' },
  promtool: { envVar: 'PROMTOOL_BIN', skipVar: 'SCOPEGATE_SKIP_PROMTOOL', cached: 'promtool' },
} as const;

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The cache directory scripts/ci-tools.sh installs into. */
export function toolsDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.SCOPEGATE_TOOLS_DIR || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'scopegate-tools');
}

export function findTool(name: Tool['name'], env: NodeJS.ProcessEnv = process.env): Tool {
  const spec = SPEC[name];
  const required = env.CI === 'true' && env[spec.skipVar] !== '1';
  const base = { name, required, skipVar: spec.skipVar };
  const fromEnv = env[spec.envVar];
  if (fromEnv) {
    return executable(fromEnv)
      ? { ...base, path: fromEnv, status: `${spec.envVar}=${fromEnv}` }
      : { ...base, path: null, status: `${spec.envVar}=${fromEnv} is not executable` };
  }
  for (const dir of (env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const p = join(dir, name);
    if (executable(p)) return { ...base, path: p, status: p };
  }
  const cached = join(toolsDir(env), spec.cached);
  if (executable(cached)) return { ...base, path: cached, status: cached };
  return { ...base, path: null, status: `${name} not found (${spec.envVar} unset, not on PATH, not in ${toolsDir(env)}); run scripts/ci-tools.sh` };
}

/** Prints the skip where a reader of the test output sees it (vitest's own skip line is terse). */
export function warnIfMissing(tool: Tool): void {
  if (!tool.path) console.warn(`SKIPPING ${tool.name} tests: ${tool.status}`);
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a tool synchronously (helm template takes ~100 ms); never throws on a non-zero exit. */
export function run(bin: string, args: string[], input?: string): RunResult {
  const r = spawnSync(bin, args, { encoding: 'utf8', input, maxBuffer: 64 * 1024 * 1024, timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
