/**
 * Static checks of the Dockerfile and .dockerignore (no container engine in CI, and no registry to
 * pull the base image from; docs/deployment.md has the build commands): stages, base image,
 * non-root user, ports, the two runtime targets (default `runtime` = Node, `--target bun`), and
 * that the image builds with the same npm commands CI runs.
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

/** Stage names by index, and each stage's base: a stage name (`FROM app AS bun`) or the image. */
function stages(list: Instruction[]): { name: string; base: string }[] {
  return list
    .filter((i) => i.op === 'FROM')
    .map((i) => {
      const m = /^(\S+)\s+AS\s+(\w+)$/i.exec(i.args);
      return { base: m?.[1] ?? i.args, name: m?.[2] ?? '' };
    });
}

/**
 * What a target stage's image is made of: its own instructions after those of the stages it is
 * built FROM (`FROM app AS bun` inherits app's COPY/USER/EXPOSE), base first.
 */
function effective(list: Instruction[], name: string): Instruction[] {
  const all = stages(list);
  const idx = all.findIndex((s) => s.name === name);
  if (idx === -1) throw new Error(`no stage ${name}`);
  const own = list.filter((i) => i.stage === idx && i.op !== 'FROM');
  const parent = all.slice(0, idx).find((s) => s.name === all[idx]!.base);
  return parent ? [...effective(list, parent.name), ...own] : own;
}

const dockerfile = read('Dockerfile');
const ins = instructions(dockerfile);
const lastStage = Math.max(...ins.map((i) => i.stage));
const stageList = stages(ins);
/** The default target (the last stage) and the Bun one, each with what it inherits. */
const TARGETS = { runtime: effective(ins, stageList.at(-1)!.name), bun: effective(ins, 'bun') };
const final = TARGETS.runtime;

describe('Dockerfile', () => {
  it('is multi-stage: a build stage, a production-deps stage and a runtime stage', () => {
    const froms = ins.filter((i) => i.op === 'FROM').map((i) => i.args);
    expect(froms.length).toBeGreaterThanOrEqual(2);
    expect(froms.some((f) => / AS build$/i.test(f))).toBe(true);
    expect(froms.at(-1)).toMatch(/ AS runtime$/i);
  });

  it('builds on a current Node LTS image (even major >= 22, Debian slim or Alpine), and on no other image', () => {
    const arg = /^ARG NODE_IMAGE=(\S+)$/m.exec(dockerfile)?.[1] ?? '';
    const m = /^node:(\d+)-(bookworm-slim|trixie-slim|alpine[\d.]*)$/.exec(arg);
    expect(m, `unexpected base image "${arg}"`).not.toBeNull();
    const major = Number(m![1]);
    expect(major % 2).toBe(0);
    expect(major).toBeGreaterThanOrEqual(22);
    // Every stage starts from the one base image or from an earlier stage: nothing else is pulled.
    stageList.forEach((st, i) => {
      const earlier = stageList.slice(0, i).map((x) => x.name);
      expect(st.base === '${NODE_IMAGE}' || earlier.includes(st.base), `stage ${st.name} FROM ${st.base}`).toBe(true);
    });
    expect(stageList.at(-1)!.name).toBe('runtime');
  });

  it('builds with dev dependencies and runs with production dependencies only', () => {
    const runs = ins.filter((i) => i.op === 'RUN');
    const build = runs.filter((r) => r.stage < lastStage).map((r) => r.args);
    expect(build.some((a) => /\bnpm ci(?!.*--omit=dev)/.test(a))).toBe(true);
    expect(build.some((a) => /\bnpm run build\b/.test(a))).toBe(true);
    expect(build.some((a) => /\bnpm ci\b.*--omit=dev/.test(a))).toBe(true);
    // The targets install nothing themselves: they copy node_modules from the --omit=dev stage.
    expect(final.filter((i) => i.op === 'RUN')).toEqual([]);
    expect(TARGETS.bun.filter((i) => i.op === 'RUN').map((i) => i.args)).toEqual(['["bun", "--version"]']);
    const depsStage = runs.find((r) => /--omit=dev/.test(r.args))!.stage;
    const depsName = stageList[depsStage]!.name;
    for (const t of Object.values(TARGETS)) {
      expect(t.some((i) => i.op === 'COPY' && i.args.includes(`--from=${depsName}`) && i.args.includes('node_modules'))).toBe(true);
    }
  });

  describe.each(Object.keys(TARGETS) as (keyof typeof TARGETS)[])('target %s', (target) => {
    const t = TARGETS[target];
    const runtime = target === 'bun' ? 'bun' : 'node';

    it('ships dist/ and package.json (dist/version.js reads ../package.json for scopegate_build_info)', () => {
      const copies = t.filter((i) => i.op === 'COPY').map((i) => i.args);
      expect(copies.some((c) => /--from=build\b.*\/app\/dist\b/.test(c))).toBe(true);
      expect(copies.some((c) => /^package\.json\b/.test(c))).toBe(true);
    });

    it('runs as a numeric non-root user', () => {
      const user = t.filter((i) => i.op === 'USER').at(-1)?.args ?? 'root';
      expect(user).toMatch(/^\d+(:\d+)?$/);
      expect(user.split(':')[0]).not.toBe('0');
    });

    it('exposes the proxy and admin ports', () => {
      const ports = t.filter((i) => i.op === 'EXPOSE').flatMap((i) => i.args.split(/\s+/));
      expect(ports.sort()).toEqual(['8080', '9090']);
    });

    it(`starts the CLI: ENTRYPOINT ["${runtime}","dist/cli.js"], CMD serve --config /etc/scopegate/gateway.yaml`, () => {
      const entry = t.filter((i) => i.op === 'ENTRYPOINT').at(-1)?.args ?? '';
      const cmd = t.filter((i) => i.op === 'CMD').at(-1)?.args ?? '';
      expect(JSON.parse(entry)).toEqual([runtime, 'dist/cli.js']);
      expect(JSON.parse(cmd)).toEqual(['serve', '--config', '/etc/scopegate/gateway.yaml']);
    });

    it(`checks health with ${runtime} itself (the slim image has no curl)`, () => {
      const hc = t.filter((i) => i.op === 'HEALTHCHECK').at(-1)?.args ?? '';
      expect(hc).toMatch(new RegExp(`CMD \\["${runtime}"`));
      expect(hc).toContain('/healthz');
      for (const i of ins) expect(i.args).not.toMatch(/\b(curl|wget)\b/);
    });

    it('writes nothing at run time into the image (files stay root-owned, no chown to the runtime user)', () => {
      expect(t.filter((i) => i.op === 'COPY' && /--chown=(1000|node)/.test(i.args))).toEqual([]);
    });
  });

  it('the bun target takes the Bun binary from the devDependency installed by npm ci (no other registry)', () => {
    const pkg = JSON.parse(read('package.json')) as { devDependencies?: Record<string, string> };
    expect(pkg.devDependencies?.bun).toBeTruthy();
    const copy = TARGETS.bun.filter((i) => i.op === 'COPY' && i.args.includes('bun.exe'));
    expect(copy.map((i) => i.args)).toEqual(['--from=build /app/node_modules/bun/bin/bun.exe /usr/local/bin/bun']);
    expect(TARGETS.bun.some((i) => i.op === 'ENV' && /BUN_RUNTIME_TRANSPILER_CACHE_PATH=0/.test(i.args))).toBe(true);
  });

  it('the chart picks the bun target by tag suffix and command (runtime: bun)', () => {
    const values = read('helm/scopegate/values.yaml');
    expect(values).toMatch(/^runtime: node$/m);
    expect(values).toMatch(/^ {2}bunTagSuffix: -bun$/m);
  });

  it('the stage helpers can fail: an unknown stage, and inheritance through FROM <stage>', () => {
    const toy = instructions('FROM img AS a\nUSER 1\nFROM a AS b\nEXPOSE 1\nFROM img AS c\nCMD ["x"]');
    expect(effective(toy, 'b').map((i) => i.op)).toEqual(['USER', 'EXPOSE']);
    expect(effective(toy, 'c').map((i) => i.op)).toEqual(['CMD']);
    expect(() => effective(toy, 'z')).toThrow(/no stage z/);
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
