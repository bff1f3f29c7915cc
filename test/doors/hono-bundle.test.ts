/**
 * The Hono middleware's package surface (SPEC §8: "runs on any runtime Hono supports", "its
 * package export has type declarations", "Node-only dependencies are not imported unless the
 * options need them"):
 *
 *  - Bun's bundler (node_modules/.bin/bun, `Bun.build` with `target: 'browser'`) bundles
 *    src/doors/hono/index.ts with a resolver plugin that records every import: which module
 *    imports which `node:` builtin (or a bare builtin such as `crypto`), and how it is reached
 *    from the entry. The only way to the Redis store (ioredis) must be the one dynamic import;
 *    undici, http-proxy, pino and prom-client must not be reachable at all.
 *  - tsc emits declarations for the entry with a temporary tsconfig, and a consumer file
 *    type-checks against them: `scopegate()` and `c.get('scopegate')` are typed.
 *
 * PENDING lists the modules that still import a `node:` builtin, each waiting for the small change
 * docs/hono-middleware.md ("Runtimes") describes; the test fails when a module is added to the
 * list (a regression) and when one leaves it (then delete its entry), so the list is always the
 * truth. The goal is an empty list.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUN, ROOT } from '../helpers/process.js';

const ENTRY = join(ROOT, 'src/doors/hono/index.ts');

/** `module (relative to the repo) → node: builtins it still imports`, until the lead's change lands. */
const PENDING: Record<string, string[]> = {
  'src/auth/keys.ts': ['node:crypto', 'node:fs/promises', 'node:path'],
  'src/config/load.ts': ['node:fs/promises', 'node:path'],
  'src/hash.ts': ['node:crypto'],
};

const PROBE = `
import { builtinModules } from 'node:module';
const [entry, outdir] = process.argv.slice(2);
const builtins = new Set(builtinModules);
const edges = [];
const result = await Bun.build({
  entrypoints: [entry],
  outdir,
  target: 'browser',
  plugins: [{
    name: 'record-imports',
    setup(build) {
      build.onResolve({ filter: /.*/ }, (args) => {
        edges.push({ importer: args.importer, spec: args.path, kind: args.kind });
        const bare = args.path.startsWith('node:') ? args.path.slice(5) : args.path;
        if (args.path.startsWith('node:') || builtins.has(bare)) return { path: args.path, external: true };
        // Loaded only when rate_limit.store is redis: kept out of the bundle, as dist/ keeps it a separate file.
        if (/ratelimit\\/redis-store\\.js$/.test(args.path)) return { path: args.path, external: true };
        return undefined;
      });
    },
  }],
});
console.log(JSON.stringify({ success: result.success, logs: result.logs.map(String), outputs: result.outputs.map((o) => o.path), edges }));
`;

interface Edge {
  importer: string;
  spec: string;
  kind: string;
}

function run(cmd: string, args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('exit', (code) => res({ code: code ?? -1, stdout, stderr }));
  });
}

const isBuiltin = (spec: string) => spec.startsWith('node:') || /^(fs|path|crypto|http|https|net|tls|os|stream|util|events|buffer|child_process|url|zlib|dns|worker_threads)(\/|$)/.test(spec);
const rel = (p: string) => relative(ROOT, p).split('\\').join('/');

/** Source file a relative specifier names (`./x.js` → `./x.ts` where that exists). */
function target(e: Edge): string | undefined {
  if (!e.spec.startsWith('.')) return undefined;
  const abs = resolve(dirname(e.importer), e.spec);
  const ts = abs.replace(/\.js$/, '.ts');
  return existsSync(ts) ? ts : abs;
}

/** One static import chain from the entry to `file`, for the failure message. */
function chainTo(edges: Edge[], file: string): string[] {
  const prev = new Map<string, string>();
  const queue = [ENTRY];
  const seen = new Set(queue);
  while (queue.length) {
    const cur = queue.shift()!;
    if (cur === file) break;
    for (const e of edges) {
      if (e.importer !== cur || e.kind === 'dynamic-import') continue;
      const t = target(e);
      if (t && !seen.has(t)) {
        seen.add(t);
        prev.set(t, cur);
        queue.push(t);
      }
    }
  }
  const chain = [file];
  while (prev.has(chain[0]!)) chain.unshift(prev.get(chain[0]!)!);
  return chain.map(rel);
}

describe('the Hono middleware bundle', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sg-hono-bundle-'));
  let edges: Edge[] = [];
  let output = '';
  beforeAll(async () => {
    writeFileSync(join(dir, 'probe.mjs'), PROBE);
    const r = await run(BUN, [join(dir, 'probe.mjs'), ENTRY, join(dir, 'out')], ROOT);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as { success: boolean; logs: string[]; outputs: string[]; edges: Edge[] };
    expect(res.success, res.logs.join('\n')).toBe(true);
    edges = res.edges;
    output = readFileSync(res.outputs[0]!, 'utf8');
  }, 60_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('bundles for the browser target with its packages (jose, zod, yaml, lru-cache) inside', () => {
    expect(output.length).toBeGreaterThan(10_000);
    // The packages are bundled, not left external, so their own imports were walked too.
    for (const pkg of ['jose', 'zod', 'yaml', 'lru-cache']) expect(edges.some((e) => e.spec === pkg), pkg).toBe(true);
    expect(edges.some((e) => e.importer.includes('/node_modules/jose/'))).toBe(true);
    expect(output).toContain('LRUCache');
  });

  it('reaches no node: module but those PENDING a known change', () => {
    const found: Record<string, string[]> = {};
    for (const e of edges) {
      if (!isBuiltin(e.spec) || e.kind === 'dynamic-import') continue;
      (found[rel(e.importer)] ??= []).push(e.spec);
    }
    for (const k of Object.keys(found)) found[k] = [...new Set(found[k])].sort();
    const chains = Object.keys(found)
      .filter((f) => !PENDING[f])
      .map((f) => `${chainTo(edges, join(ROOT, f)).join(' → ')} imports ${found[f]!.join(', ')}`);
    expect(chains, 'new node: imports reachable from the Hono entry').toEqual([]);
    // A module that no longer needs its entry: delete it from PENDING (the goal is {}).
    expect(found).toEqual(PENDING);
  });

  it('keeps the bundle free of node: imports outside the PENDING modules', () => {
    const specs = [...output.matchAll(/(?:from\s*|import\s*\(\s*|require\s*\(\s*)"(node:[^"]+)"/g)].map((m) => m[1]!);
    const pending = new Set(Object.values(PENDING).flat());
    for (const s of specs) expect(pending.has(s), s).toBe(true);
  });

  it('reaches the Redis store only through one dynamic import, and never undici, http-proxy, pino or prom-client', () => {
    const redis = edges.filter((e) => /redis-store/.test(e.spec));
    expect(redis.map((e) => [rel(e.importer), e.kind])).toEqual([['src/doors/hono/index.ts', 'dynamic-import']]);
    const nodeOnly = edges.filter((e) => /^(ioredis|undici|http-proxy|pino|prom-client)(\/|$)/.test(e.spec)).map((e) => `${rel(e.importer)} → ${e.spec}`);
    expect(nodeOnly).toEqual([]);
    expect(output).not.toMatch(/ioredis|undici/);
  });
});

describe('the Hono middleware type declarations', () => {
  // A scratch directory whose node_modules is the repository's, so the consumer resolves `hono`.
  const dir = mkdtempSync(join(tmpdir(), 'sg-hono-dts-'));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('emit for the entry, and type a consumer app: scopegate() and c.get("scopegate")', async () => {
    writeFileSync(
      join(dir, 'tsconfig.emit.json'),
      JSON.stringify({
        extends: join(ROOT, 'tsconfig.json'),
        compilerOptions: { declaration: true, emitDeclarationOnly: true, sourceMap: false, noEmit: false, rootDir: join(ROOT, 'src'), outDir: join(dir, 'types') },
        include: [],
        files: [ENTRY],
      }),
    );
    const emit = await run(join(ROOT, 'node_modules/.bin/tsc'), ['-p', join(dir, 'tsconfig.emit.json')], ROOT);
    expect(emit.code, emit.stdout + emit.stderr).toBe(0);
    const dts = readFileSync(join(dir, 'types/doors/hono/index.d.ts'), 'utf8');
    expect(dts).toMatch(/export declare function scopegate\(options: ScopegateOptions\): ScopegateMiddleware;/);
    expect(dts).toMatch(/declare module 'hono'/);
    expect(dts).toMatch(/export \{ ScopegateConfigError \}/);

    writeFileSync(
      join(dir, 'consumer.ts'),
      `import { Hono } from 'hono';
import { scopegate, ScopegateConfigError, type ScopegatePrincipal } from './types/doors/hono/index.js';

const app = new Hono();
const mw = scopegate({ configFile: 'scopegate.yaml' });
app.use('/v2/*', mw);
app.get('/v2/room/:room', (c) => {
  const p: ScopegatePrincipal | undefined = c.get('scopegate');
  const subject: string | undefined = p?.subject;
  const scopes: readonly string[] = p?.scopes ?? [];
  // @ts-expect-error the principal is undefined on public routes: it must be checked
  const route: string = c.get('scopegate').route;
  return c.json({ subject, scopes, route });
});
export const ready: Promise<void> = mw.ready();
export const isConfigError = (e: unknown): boolean => e instanceof ScopegateConfigError && e.issues.length > 0;
// @ts-expect-error listen is not an option
scopegate({ tokens: {}, listen: { port: 1 } });
`,
    );
    writeFileSync(
      join(dir, 'tsconfig.consumer.json'),
      JSON.stringify({ extends: join(ROOT, 'tsconfig.json'), compilerOptions: { noEmit: true, rootDir: dir }, include: [], files: [join(dir, 'consumer.ts')] }),
    );
    const check = await run(join(ROOT, 'node_modules/.bin/tsc'), ['-p', join(dir, 'tsconfig.consumer.json')], ROOT);
    expect(check.code, check.stdout + check.stderr).toBe(0);
  }, 180_000);
});
