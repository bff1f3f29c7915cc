/**
 * The Hono middleware's package surface (SPEC §8: "runs on any runtime Hono supports", "its
 * package export has type declarations", "Node-only dependencies are not imported unless the
 * options need them"):
 *
 *  - Bun's bundler (node_modules/.bin/bun, `Bun.build` with `target: 'browser'`) bundles
 *    src/doors/hono/index.ts with a resolver plugin that records every import: which module
 *    imports which `node:` builtin (or a bare builtin such as `crypto`), and how it is reached
 *    from the entry. None may, statically or dynamically: what needs Node (a config or key file,
 *    node:crypto's fast SHA-256) takes the runtime's module through `process.getBuiltinModule`
 *    (src/builtin.ts) on the path the options select, so no bundler sees a `node:` import. The
 *    only way to the Redis store (ioredis) must be the one dynamic import, taken only when
 *    `rate_limit.store: redis` (the bundle keeps it external, as dist/ keeps it a separate file);
 *    undici, http-proxy, pino and prom-client must not be reachable at all.
 *  - The bundle runs without Node: an app (Hono, jose and the middleware, bundled together with
 *    every Node builtin replaced by a module that throws when loaded) runs in Bun with its global
 *    object cut down to the ECMAScript and Web globals a Worker has — no `process` (so no
 *    getBuiltinModule: the plain-JS SHA-256 keys the caches), no `Buffer`, `global`,
 *    `setImmediate`; only `Bun` stays, which cannot be deleted and the bundle never names. Bun
 *    rather than Node because Node's own fetch/Response (undici) need `Buffer` and `global` and
 *    stop working without them, and rather than a `node:vm` context because values crossing
 *    realms (a Uint8Array key handed to jose) fail `instanceof`. Through `app.request()` an HS256
 *    token minted there with jose gets 200 and the principal, a missing token the §2 401 envelope
 *    byte for byte as renderError gives it; a config file or key file is refused with a
 *    ScopegateConfigError saying what the runtime lacks.
 *  - tsc emits declarations for the entry with a temporary tsconfig, and a consumer file
 *    type-checks against them: `scopegate()` and `c.get('scopegate')` are typed.
 *
 * PENDING lists modules allowed to import a `node:` builtin, each waiting for a known change
 * (docs/hono-middleware.md, "Runtimes"); it is empty, and the test fails when a module is added
 * to what the bundle reaches (a regression) as when one leaves the list, so it is always the truth.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayError, renderError } from '../../src/errors.js';
import { BUN, ROOT } from '../helpers/process.js';

const ENTRY = join(ROOT, 'src/doors/hono/index.ts');

/** `module (relative to the repo) → node: builtins it may still import`, each until a known change lands. None now. */
const PENDING: Record<string, string[]> = {};

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

/** One import chain from the entry to `file`, for the failure message. */
function chainTo(edges: Edge[], file: string): string[] {
  const prev = new Map<string, string>();
  const queue = [ENTRY];
  const seen = new Set(queue);
  while (queue.length) {
    const cur = queue.shift()!;
    if (cur === file) break;
    for (const e of edges) {
      if (e.importer !== cur) continue;
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

  it('reaches no node: module but those PENDING a known change, not even through a dynamic import', () => {
    const found: Record<string, string[]> = {};
    for (const e of edges) {
      if (!isBuiltin(e.spec)) continue;
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
    // `from "node:x"`, a bare `import "node:x"`, `import("node:x")`, `require("node:x")`.
    const specs = [...output.matchAll(/(?:from\s*|import\s*\(?\s*|require\s*\(\s*)["'](node:[^"']+)["']/g)].map((m) => m[1]!);
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

/** An app as a Worker would hold one: Hono, jose and the middleware, from the sources. */
const SANDBOX_APP = `
import { Hono } from 'hono';
import { SignJWT } from 'jose';
import { scopegate, ScopegateConfigError } from ${JSON.stringify(ENTRY)};
import { sha256 } from ${JSON.stringify(join(ROOT, 'src/hash.ts'))};

const SECRET = 'sandbox-secret-0123456789abcdef-0123456789';
const snapshot = async (res) => ({ status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() });
const refusal = (make) => {
  try {
    make();
    return { thrown: false };
  } catch (e) {
    return { thrown: true, configError: e instanceof ScopegateConfigError, issues: e.issues };
  }
};
const mint = (secret, claims) =>
  new SignJWT({ client_type: 'user', ...claims })
    .setProtectedHeader({ alg: 'HS256' }).setIssuer('sandbox').setAudience('api').setSubject('u1').setIssuedAt().setExpirationTime('1h')
    .sign(new TextEncoder().encode(secret));

export async function run() {
  const mw = scopegate({
    realm: 'api',
    tokens: { issuers: [{ name: 'local', issuer: 'sandbox', audience: 'api', algorithms: ['HS256'], secrets: [SECRET], claims: { scopes: 'scope' } }] },
    rate_limit: { store: 'memory', default: { limit: 5, window_s: 60 } },
    routes: [{ id: 'get-room', path: '/v2/room/{room}', methods: ['GET'], scopes: ['view_room'] }],
  });
  await mw.ready();
  const app = new Hono();
  let ran = 0;
  app.use('/v2/*', mw);
  app.get('/v2/room/:room', (c) => (ran++, c.json({ room: c.req.param('room'), principal: c.get('scopegate') })));
  const bearer = (t) => ({ headers: { authorization: 'Bearer ' + t } });
  const token = await mint(SECRET, { scope: 'view_room' });
  const out = {
    globals: Object.fromEntries(['process', 'Buffer', 'global', 'setImmediate', 'require'].map((g) => [g, typeof globalThis[g]])),
    sha256abc: sha256('abc', 'hex'),
    allowed: await snapshot(await app.request('/v2/room/7', bearer(token))),
    cached: await snapshot(await app.request('/v2/room/7', bearer(token))),
    missing: await snapshot(await app.request('/v2/room/7')),
    forged: await snapshot(await app.request('/v2/room/7', bearer(await mint('another-secret-0123456789abcdef-xyz', { scope: 'view_room' })))),
    ran,
    configFile: refusal(() => scopegate({ configFile: 'scopegate.yaml' })),
    keyFile: refusal(() => scopegate({ tokens: { issuers: [{ name: 'f', issuer: 'f', algorithms: ['RS256'], public_key_file: 'pub.pem' }] } })),
  };
  await mw.close();
  return out;
}
`;

/**
 * Bundles SANDBOX_APP (every Node builtin a module that throws when loaded; the Redis store
 * external, as in the bundle above), cuts the global object down to ECMAScript + Web globals,
 * then loads the bundle and prints what run() saw.
 */
const SANDBOX = `
import { builtinModules } from 'node:module';
const [entry, outdir] = process.argv.slice(2);
const builtins = new Set(builtinModules);
const built = await Bun.build({
  entrypoints: [entry],
  outdir,
  target: 'browser',
  plugins: [{
    name: 'no-node-builtins',
    setup(build) {
      build.onResolve({ filter: /.*/ }, (args) => {
        const bare = args.path.startsWith('node:') ? args.path.slice(5) : args.path;
        if (args.path.startsWith('node:') || builtins.has(bare)) return { path: args.path, namespace: 'node-builtin' };
        if (/ratelimit\\/redis-store\\.js$/.test(args.path)) return { path: args.path, external: true };
        return undefined;
      });
      build.onLoad({ filter: /.*/, namespace: 'node-builtin' }, (args) => ({
        contents: 'throw new Error(' + JSON.stringify('the bundle loaded the Node builtin ' + args.path) + ');',
        loader: 'js',
      }));
    },
  }],
});
if (!built.success) throw new Error(built.logs.map(String).join('\\n'));
const bundle = Bun.pathToFileURL(built.outputs[0].path).href;
const write = (s) => console.log(s);
const exit = process.exit.bind(process);

const ECMASCRIPT = ['globalThis', 'Infinity', 'NaN', 'undefined', 'eval', 'isFinite', 'isNaN', 'parseFloat', 'parseInt', 'decodeURI',
  'decodeURIComponent', 'encodeURI', 'encodeURIComponent', 'escape', 'unescape', 'Object', 'Function', 'Array', 'Number', 'Boolean',
  'String', 'Symbol', 'BigInt', 'Date', 'Promise', 'RegExp', 'Error', 'AggregateError', 'EvalError', 'RangeError', 'ReferenceError',
  'SyntaxError', 'TypeError', 'URIError', 'SuppressedError', 'JSON', 'Math', 'Intl', 'Reflect', 'Proxy', 'Atomics', 'WebAssembly',
  'Iterator', 'ArrayBuffer', 'SharedArrayBuffer', 'DataView', 'Map', 'Set', 'WeakMap', 'WeakSet', 'WeakRef', 'FinalizationRegistry',
  'DisposableStack', 'AsyncDisposableStack', 'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array', 'Int32Array',
  'Uint32Array', 'Float16Array', 'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array'];
// What Cloudflare Workers, Deno and browsers share (WinterTC's minimum common API, roughly).
const WEB = ['console', 'crypto', 'Crypto', 'CryptoKey', 'SubtleCrypto', 'fetch', 'Request', 'Response', 'Headers', 'FormData', 'Blob',
  'File', 'URL', 'URLSearchParams', 'URLPattern', 'TextEncoder', 'TextDecoder', 'TextEncoderStream', 'TextDecoderStream',
  'ReadableStream', 'ReadableStreamDefaultReader', 'ReadableStreamBYOBReader', 'ReadableStreamDefaultController',
  'ReadableByteStreamController', 'ReadableStreamBYOBRequest', 'WritableStream', 'WritableStreamDefaultWriter',
  'WritableStreamDefaultController', 'TransformStream', 'TransformStreamDefaultController', 'ByteLengthQueuingStrategy',
  'CountQueuingStrategy', 'CompressionStream', 'DecompressionStream', 'AbortController', 'AbortSignal', 'Event', 'EventTarget',
  'CustomEvent', 'DOMException', 'MessageChannel', 'MessagePort', 'MessageEvent', 'BroadcastChannel', 'WebSocket', 'setTimeout',
  'clearTimeout', 'setInterval', 'clearInterval', 'queueMicrotask', 'structuredClone', 'atob', 'btoa', 'performance', 'Performance',
  'navigator', 'Navigator', 'reportError', 'self'];
const keep = new Set([...ECMASCRIPT, ...WEB]);
const removed = [];
const kept = [];
for (const name of Object.getOwnPropertyNames(globalThis)) {
  if (keep.has(name)) continue;
  try {
    delete globalThis[name];
  } catch {}
  (Object.prototype.hasOwnProperty.call(globalThis, name) ? kept : removed).push(name);
}
try {
  const { run } = await import(bundle);
  write(JSON.stringify({ removed, kept, result: await run() }));
  exit(0);
} catch (e) {
  write(JSON.stringify({ removed, kept, error: String((e && e.stack) || e) }));
  exit(1);
}
`;

interface Snapshot {
  status: number;
  headers: Record<string, string>;
  body: string;
}
interface SandboxRun {
  removed: string[];
  kept: string[];
  error?: string;
  result?: {
    globals: Record<string, string>;
    sha256abc: string;
    allowed: Snapshot;
    cached: Snapshot;
    missing: Snapshot;
    forged: Snapshot;
    ran: number;
    configFile: { thrown: boolean; configError?: boolean; issues?: Array<{ path: string; message: string }> };
    keyFile: { thrown: boolean; configError?: boolean; issues?: Array<{ path: string; message: string }> };
  };
}

describe('the Hono middleware bundle, run without Node', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sg-hono-sandbox-'));
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  let sandbox: SandboxRun;
  beforeAll(async () => {
    writeFileSync(join(dir, 'app.js'), SANDBOX_APP);
    writeFileSync(join(dir, 'sandbox.mjs'), SANDBOX);
    const r = await run(BUN, [join(dir, 'sandbox.mjs'), join(dir, 'app.js'), join(dir, 'out')], dir);
    const last = r.stdout.trim().split('\n').pop() ?? '';
    expect(last.startsWith('{'), `${r.stdout}\n${r.stderr}`).toBe(true);
    sandbox = JSON.parse(last) as SandboxRun;
    expect(sandbox.error, sandbox.error).toBeUndefined();
    expect(r.code, r.stderr).toBe(0);
  }, 60_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('has no Node globals: process (so no getBuiltinModule), Buffer, global, setImmediate are gone; only Bun stays', () => {
    expect(sandbox.removed).toEqual(expect.arrayContaining(['process', 'Buffer', 'global', 'setImmediate']));
    expect(sandbox.kept).toEqual(['Bun']);
    expect(sandbox.result!.globals).toEqual({ process: 'undefined', Buffer: 'undefined', global: 'undefined', setImmediate: 'undefined', require: 'undefined' });
    // The plain-JS SHA-256 is what runs here, and it is SHA-256 (FIPS 180-4's "abc").
    expect(sandbox.result!.sha256abc).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('allows an HS256 token minted with jose: 200, the principal, the rate-limit headers; again from the cache', () => {
    const { allowed, cached, ran } = sandbox.result!;
    for (const [res, remaining] of [
      [allowed, '4'],
      [cached, '3'],
    ] as const) {
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body)).toEqual({ room: '7', principal: { subject: 'u1', clientType: 'user', scopes: ['view_room'], issuer: 'sandbox', route: 'get-room' } });
      expect(res.headers['x-ratelimit-limit']).toBe('5');
      expect(res.headers['x-ratelimit-remaining']).toBe(remaining);
      expect(res.headers['x-request-id']).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    }
    expect(ran).toBe(2);
  });

  it('answers a missing token with the §2 401 envelope, byte for byte as renderError gives it, and a forged one with invalid_token', () => {
    const { missing, forged } = sandbox.result!;
    const want = renderError(new GatewayError('token_missing'), { realm: 'api' });
    expect(missing.status).toBe(401);
    expect(missing.body).toBe(want.body);
    expect(JSON.parse(missing.body)).toEqual({ error: { code: 401, message: 'Authenticated requests only.', type: 'Unauthorized', reason: 'token_missing' } });
    const { 'x-request-id': id, ...headers } = missing.headers;
    expect(headers).toEqual(want.headers);
    expect(headers['www-authenticate']).toBe('Bearer realm="api"');
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(forged.status).toBe(401);
    expect(forged.headers['www-authenticate']).toBe('Bearer realm="api", error="invalid_token"');
    expect(JSON.parse(forged.body).error.message).toBe('Invalid OAuth session');
  });

  it('refuses a config file and a key file with a ScopegateConfigError saying what the runtime lacks', () => {
    const { configFile, keyFile } = sandbox.result!;
    expect(configFile).toMatchObject({ thrown: true, configError: true, issues: [{ path: 'configFile' }] });
    expect(configFile.issues![0]!.message).toMatch(/needs a runtime with a file system/);
    expect(keyFile).toMatchObject({ thrown: true, configError: true, issues: [{ path: 'tokens.issuers[0].public_key_file' }] });
    expect(keyFile.issues![0]!.message).toMatch(/needs a runtime with Node's file system and crypto .* use secrets or jwks_url/);
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
