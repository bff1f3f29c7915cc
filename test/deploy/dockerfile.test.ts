/**
 * Static checks of the Dockerfile and .dockerignore (no Docker daemon in CI): stages, base image,
 * non-root user, ports, entrypoint, and that the image builds with the same npm commands CI runs.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (p: string) => readFileSync(join(ROOT, p), 'utf8');

interface Instruction {
  op: string;
  args: string;
  stage: number;
}

/** Dockerfile instructions, continuation lines joined, comments dropped; `stage` counts FROMs from 0. */
function instructions(text: string): Instruction[] {
  const logical = text
    .replace(/\\\r?\n/g, ' ')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  let stage = -1;
  return logical.map((l) => {
    const m = /^(\w+)\s+([\s\S]*)$/.exec(l);
    const op = (m?.[1] ?? l).toUpperCase();
    if (op === 'FROM') stage++;
    return { op, args: (m?.[2] ?? '').trim(), stage };
  });
}

/** `npm ...` commands of a RUN line, BuildKit flags removed: `npm ci --omit=dev` -> `npm ci`. */
function npmCommands(runArgs: string): string[] {
  return runArgs
    .replace(/--mount=\S+/g, '')
    .split(/&&|;/)
    .map((c) => c.trim())
    .filter((c) => c.startsWith('npm '))
    .map((c) => {
      const words = c.split(/\s+/).filter((w) => !w.startsWith('-'));
      return words.slice(0, words[1] === 'run' ? 3 : 2).join(' ');
    });
}

const dockerfile = read('Dockerfile');
const ins = instructions(dockerfile);
const lastStage = Math.max(...ins.map((i) => i.stage));
const final = ins.filter((i) => i.stage === lastStage);

describe('Dockerfile', () => {
  it('is multi-stage: a build stage, a production-deps stage and a runtime stage', () => {
    const froms = ins.filter((i) => i.op === 'FROM').map((i) => i.args);
    expect(froms.length).toBeGreaterThanOrEqual(2);
    expect(froms.some((f) => / AS build$/i.test(f))).toBe(true);
    expect(froms.at(-1)).toMatch(/ AS runtime$/i);
  });

  it('builds on a current Node LTS image (even major >= 22, Debian slim or Alpine)', () => {
    const arg = /^ARG NODE_IMAGE=(\S+)$/m.exec(dockerfile)?.[1] ?? '';
    const m = /^node:(\d+)-(bookworm-slim|trixie-slim|alpine[\d.]*)$/.exec(arg);
    expect(m, `unexpected base image "${arg}"`).not.toBeNull();
    const major = Number(m![1]);
    expect(major % 2).toBe(0);
    expect(major).toBeGreaterThanOrEqual(22);
    for (const f of ins.filter((i) => i.op === 'FROM')) expect(f.args).toMatch(/^\$\{NODE_IMAGE\} AS \w+$/);
  });

  it('builds with dev dependencies and runs with production dependencies only', () => {
    const runs = ins.filter((i) => i.op === 'RUN');
    const build = runs.filter((r) => r.stage < lastStage).map((r) => r.args);
    expect(build.some((a) => /\bnpm ci(?!.*--omit=dev)/.test(a))).toBe(true);
    expect(build.some((a) => /\bnpm run build\b/.test(a))).toBe(true);
    expect(build.some((a) => /\bnpm ci\b.*--omit=dev/.test(a))).toBe(true);
    // The runtime stage installs nothing itself: it copies node_modules from the --omit=dev stage.
    expect(final.filter((i) => i.op === 'RUN')).toEqual([]);
    const depsStage = runs.find((r) => /--omit=dev/.test(r.args))!.stage;
    const depsName = /AS (\w+)$/i.exec(ins.find((i) => i.op === 'FROM' && i.stage === depsStage)!.args)![1];
    expect(final.some((i) => i.op === 'COPY' && i.args.includes(`--from=${depsName}`) && i.args.includes('node_modules'))).toBe(true);
  });

  it('ships dist/ and package.json (dist/version.js reads ../package.json for scopegate_build_info)', () => {
    const copies = final.filter((i) => i.op === 'COPY').map((i) => i.args);
    expect(copies.some((c) => /--from=build\b.*\/app\/dist\b/.test(c))).toBe(true);
    expect(copies.some((c) => /^package\.json\b/.test(c))).toBe(true);
  });

  it('runs as a numeric non-root user', () => {
    const user = final.filter((i) => i.op === 'USER').at(-1)?.args ?? 'root';
    expect(user).toMatch(/^\d+(:\d+)?$/);
    expect(user.split(':')[0]).not.toBe('0');
  });

  it('exposes the proxy and admin ports', () => {
    const ports = final.filter((i) => i.op === 'EXPOSE').flatMap((i) => i.args.split(/\s+/));
    expect(ports.sort()).toEqual(['8080', '9090']);
  });

  it('starts the CLI: ENTRYPOINT ["node","dist/cli.js"], CMD serve --config /etc/scopegate/gateway.yaml', () => {
    const entry = final.filter((i) => i.op === 'ENTRYPOINT').at(-1)?.args ?? '';
    const cmd = final.filter((i) => i.op === 'CMD').at(-1)?.args ?? '';
    expect(JSON.parse(entry)).toEqual(['node', 'dist/cli.js']);
    expect(JSON.parse(cmd)).toEqual(['serve', '--config', '/etc/scopegate/gateway.yaml']);
  });

  it('checks health with node itself (the slim image has no curl)', () => {
    const hc = final.find((i) => i.op === 'HEALTHCHECK')?.args ?? '';
    expect(hc).toMatch(/CMD \["node"/);
    expect(hc).toContain('/healthz');
    for (const i of ins) expect(i.args).not.toMatch(/\b(curl|wget)\b/);
  });

  it('writes nothing at run time into the image (files stay root-owned, no chown to the runtime user)', () => {
    expect(final.filter((i) => i.op === 'COPY' && /--chown=(1000|node)/.test(i.args))).toEqual([]);
  });

  it('copies only sources that exist and that .dockerignore lets through', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    const sources = ins
      .filter((i) => i.op === 'COPY' && !i.args.includes('--from='))
      .flatMap((i) => i.args.split(/\s+/).filter((w) => !w.startsWith('--')).slice(0, -1));
    expect(sources).toEqual(expect.arrayContaining(['package.json', 'package-lock.json', 'src']));
    for (const s of sources) {
      expect(existsSync(join(ROOT, s)), `${s} exists`).toBe(true);
      expect(ignored, `${s} is not ignored`).not.toContain(s);
    }
    for (const must of ['node_modules', 'dist', '.git', '.env']) expect(ignored).toContain(must);
  });

  it('extracts npm commands the way the CI comparison expects', () => {
    expect(npmCommands('--mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts')).toEqual(['npm ci']);
    expect(npmCommands('npm run build && npm prune')).toEqual(['npm run build', 'npm prune']);
  });

  const ciRun = join(ROOT, '.ci/run');
  it.skipIf(!existsSync(ciRun))('builds with the same npm commands .ci/run runs (skipped while .ci/run does not exist)', () => {
    const ci = readFileSync(ciRun, 'utf8');
    const ciCommands = new Set(ci.split('\n').flatMap((l) => npmCommands(l)));
    const dockerCommands = ins.filter((i) => i.op === 'RUN').flatMap((i) => npmCommands(i.args));
    expect(dockerCommands.length).toBeGreaterThan(0);
    for (const c of dockerCommands) expect(ciCommands, `.ci/run runs "${c}"`).toContain(c);
  });
});
