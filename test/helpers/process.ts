/**
 * Runs the built CLI (`node dist/cli.js ...`, or `bun dist/cli.js ...` with
 * SCOPEGATE_TEST_RUNTIME=bun or `runtime: 'bun'`) as a real process, for tests that need signals,
 * several replicas or the exact command users run. `npm test` builds first (pretest), so dist/ is
 * current.
 *
 * @example
 *   const gw = await spawnGateway(configPath, { env: { SECRET: 'x' } });
 *   await fetch(`${gw.url}/v2/room/1`);
 *   gw.signal('SIGHUP');
 *   expect(await gw.exit()).toBe(0);
 *
 *   const r = await runCli(['check', '--config', file]); // { code, stdout, stderr }
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
export const BUN = fileURLToPath(new URL('../../node_modules/.bin/bun', import.meta.url));

/** The runtimes the process-level tests can run the CLI on. */
export type Runtime = 'node' | 'bun';

/**
 * The runtime process tests use by default: $SCOPEGATE_TEST_RUNTIME (`node` or `bun`), else the
 * Node that runs the tests. `.ci/run` runs the process-level suites once per runtime.
 */
export const TEST_RUNTIME: Runtime = (() => {
  const r = process.env['SCOPEGATE_TEST_RUNTIME'] ?? 'node';
  if (r !== 'node' && r !== 'bun') throw new Error(`SCOPEGATE_TEST_RUNTIME must be node or bun, not ${r}`);
  return r;
})();

/** The executable for a runtime: this process's Node, or the Bun that npm ci installed. */
export function runtimeExecutable(runtime: Runtime = TEST_RUNTIME): string {
  if (runtime === 'node') return process.execPath;
  if (!existsSync(BUN)) throw new Error(`${BUN} is missing: bun is a devDependency, run \`npm ci\``);
  return BUN;
}

function requireBuild(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` (npm test does it in pretest)`);
}

export interface GatewayProcess {
  child: ChildProcess;
  /** Proxy listener URL, from the "scopegate listening" log line. */
  url: string;
  adminUrl: string | undefined;
  /** Every stdout line (JSON log lines) so far. */
  stdout: string[];
  stderr: string[];
  signal(sig: NodeJS.Signals): void;
  /** Resolves with the exit code (signal name when killed by one). */
  exit(): Promise<number | string>;
  /** Waits until a stdout line matches. */
  waitForLine(re: RegExp, timeoutMs?: number): Promise<string>;
  kill(): Promise<void>;
}

/** Starts `scopegate serve --config <file>`; resolves once it is listening. */
export async function spawnGateway(
  configFile: string,
  opts: { env?: Record<string, string>; timeoutMs?: number; runtime?: Runtime } = {},
): Promise<GatewayProcess> {
  requireBuild();
  const child = spawn(runtimeExecutable(opts.runtime), [CLI, 'serve', '--config', configFile], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: 'info', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const lineWaiters: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
  let buf = '';
  child.stdout!.on('data', (c: Buffer) => {
    buf += c.toString('utf8');
    let i;
    while ((i = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      stdout.push(line);
      for (const w of [...lineWaiters]) {
        if (w.re.test(line)) {
          lineWaiters.splice(lineWaiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  child.stderr!.on('data', (c: Buffer) => stderr.push(c.toString('utf8')));
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, sig) => resolve(code ?? sig ?? -1)));

  const waitForLine = (re: RegExp, timeoutMs = 10_000) => {
    const seen = stdout.find((l) => re.test(l));
    if (seen) return Promise.resolve(seen);
    return new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no line matching ${re} within ${timeoutMs} ms; stderr: ${stderr.join('')}`)), timeoutMs);
      lineWaiters.push({ re, resolve: (l) => (clearTimeout(t), resolve(l)) });
      void exited.then((code) => {
        clearTimeout(t);
        reject(new Error(`gateway exited (${code}) before ${re}; stderr: ${stderr.join('')}`));
      });
    });
  };

  const listening = JSON.parse(await waitForLine(/scopegate listening/, opts.timeoutMs ?? 15_000)) as { url: string; admin?: string };
  return {
    child,
    url: listening.url,
    adminUrl: listening.admin,
    stdout,
    stderr,
    signal: (sig) => child.kill(sig),
    exit: () => exited,
    waitForLine,
    kill: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Runs one CLI command to completion. */
export function runCli(
  args: string[],
  opts: { env?: Record<string, string>; input?: string; runtime?: Runtime } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  requireBuild();
  return new Promise((resolve, reject) => {
    const child = spawn(runtimeExecutable(opts.runtime), [CLI, ...args], { cwd: ROOT, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}
