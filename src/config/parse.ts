/**
 * Config text to a gateway config: YAML → `${ENV}` / `${ENV:-default}` interpolation → zod
 * validation → route compilation. Every failure is one `ConfigError` listing all problems, each
 * naming its YAML path, its line, and (from the schema) the allowed values. Reads no file and
 * imports no `node:` module, so the Hono middleware (SPEC §8) can use it on any runtime; reading
 * a file is load.ts's `loadConfigFile`, which re-exports all of this.
 *
 * `${VAR}` may stand anywhere a scalar may, flow mappings included (`{ port: ${PORT} }`). Each
 * reference is first swapped for an inert placeholder, the YAML is parsed, and only then are the
 * placeholders in string scalars replaced by the values — so an environment value can never
 * inject YAML structure; what a reference puts in is never read again (an environment value
 * holding `$${` stays as it is). A scalar that is exactly one `${VAR}` and expands to an integer
 * or boolean becomes that integer or boolean, unless the key takes text (then it stays the text).
 *
 * @example
 *   const { config, routes } = loadConfigText(text, { env: process.env, file, baseDir });
 *   const { config, issues, lineOf } = parseConfigText(text, { env }); // routes not compiled
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { runtimeProcess } from '../builtin.js';
import { ConfigError, type ConfigIssue } from '../errors.js';
import { compileRoutes, type RouteTable } from '../routing/compile-routes.js';
import { GatewayConfigSchema, type GatewayConfig } from './schema.js';

export interface LoadedConfig {
  config: GatewayConfig;
  routes: RouteTable;
  /** Absolute path of the file, when loaded from one. */
  file?: string | undefined;
  /** Directory relative key files resolve against. */
  baseDir: string;
}

export type Env = Readonly<Record<string, string | undefined>>;
type PathKey = string | number;

const ENV_REF = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}\n]*))?\}/g;

interface EnvRef {
  name: string;
  def?: string | undefined;
}

/** The placeholders of one text: `__<tag>_<n>__`, with a tag the text does not contain. */
interface Placeholders {
  /** `__<tag>_`: a placeholder is this, its reference's index, `__`. */
  prefix: string;
  /** Every placeholder in a string (to hide them in a YAML error message). */
  each: RegExp;
  /** A placeholder, or the escape `$${`, anywhere in a string. */
  any: RegExp;
  /** A string that is exactly one placeholder. */
  whole: RegExp;
  /** Whether a string may hold a placeholder or an escape. */
  within(s: string): boolean;
}

function placeholdersFor(text: string): Placeholders {
  // The file may itself contain text that looks like a placeholder: the tag is made longer until
  // it does not, so no literal is ever read as a reference.
  let tag = 'SGENV';
  while (text.includes(tag)) tag += 'X';
  const prefix = `__${tag}_`;
  return {
    prefix,
    each: new RegExp(`${prefix}\\d+__`, 'g'),
    any: new RegExp(`${prefix}(\\d+)__|\\$\\$\\{`, 'g'),
    whole: new RegExp(`^${prefix}(\\d+)__$`),
    within: (s) => s.includes(prefix) || s.includes('$${'),
  };
}

/** Swaps every `${VAR}` / `${VAR:-default}` for a placeholder; `$${` stays a literal `${`. */
function protectRefs(text: string, ph: Placeholders): { text: string; refs: EnvRef[] } {
  const refs: EnvRef[] = [];
  const out = text.replace(ENV_REF, (match, name: string | undefined, def: string | undefined) => {
    if (match === '$${') return '$${';
    refs.push({ name: name!, def });
    return `${ph.prefix}${refs.length - 1}__`;
  });
  return { text: out, refs };
}

/** A scalar made a number or boolean from one whole `${VAR}`, with the text it came from. */
interface Coerced {
  path: PathKey[];
  text: string;
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const k of path) {
    if (typeof k === 'number') out += `[${k}]`;
    else out += out ? `.${String(k)}` : String(k);
  }
  return out;
}

/** `routes[3].path` → ['routes', 3, 'path'] */
function parsePath(s: string): PathKey[] {
  const out: PathKey[] = [];
  for (const m of s.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) out.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  return out;
}

interface Interpolation {
  refs: readonly EnvRef[];
  env: Env;
  ph: Placeholders;
  issues: ConfigIssue[];
  coerced: Coerced[];
}

function interpolate(value: unknown, path: PathKey[], it: Interpolation): unknown {
  if (typeof value === 'string') {
    if (!it.ph.within(value)) return value;
    const whole = it.ph.whole.test(value);
    // One pass: what a reference puts in is never read again (an environment value holding `$${`
    // or a placeholder's spelling stays as it is).
    const out = value.replace(it.ph.any, (m, i: string | undefined) => {
      if (i === undefined) return '${'; // the escape `$${`
      const ref = it.refs[Number(i)]!;
      const v = it.env[ref.name];
      if (v !== undefined && v !== '') return v;
      if (ref.def !== undefined) return ref.def;
      it.issues.push({ path: formatPath(path), message: `environment variable ${ref.name} is not set (write \${${ref.name}:-default} to give a default)` });
      return '';
    });
    if (whole) {
      if (/^-?\d+$/.test(out)) {
        it.coerced.push({ path, text: out });
        return Number(out);
      }
      if (out === 'true' || out === 'false') {
        it.coerced.push({ path, text: out });
        return out === 'true';
      }
    }
    return out;
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, [...path, i], it));
  if (value && typeof value === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) o[k] = interpolate(v, [...path, k], it);
    return o;
  }
  return value;
}

const samePath = (a: readonly PropertyKey[], b: readonly PathKey[]): boolean => a.length === b.length && a.every((k, i) => k === b[i]);

/** Puts `value` at `path` inside the plain object tree `root` (every step exists: interpolate made it). */
function setAt(root: unknown, path: readonly PathKey[], value: unknown): void {
  let node = root as Record<PathKey, unknown>;
  for (const k of path.slice(0, -1)) node = node[k] as Record<PathKey, unknown>;
  node[path[path.length - 1]!] = value;
}

/** Finds the 1-based line of the deepest node of `path` present in the document. */
function lineOfKeys(doc: Document, lc: LineCounter, path: readonly PathKey[]): number | undefined {
  let node: unknown = doc.contents;
  let line: number | undefined;
  const at = (n: unknown) => {
    const r = (n as { range?: [number, number, number] } | null)?.range;
    if (r) line = lc.linePos(r[0]).line;
  };
  at(node);
  for (const k of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(k));
      if (!pair) break;
      at(pair.key);
      node = pair.value;
      if (!isScalar(node) || node.range) at(node);
    } else if (isSeq(node) && typeof k === 'number') {
      node = node.items[k];
      if (!node) break;
      at(node);
    } else break;
  }
  return line;
}

function zodIssues(error: z.ZodError): Array<{ path: PathKey[]; message: string }> {
  const out: Array<{ path: PathKey[]; message: string }> = [];
  for (const i of error.issues) {
    const path = i.path.filter((k): k is PathKey => typeof k !== 'symbol');
    if (i.code === 'unrecognized_keys') {
      for (const key of i.keys) out.push({ path: [...path, key], message: `unknown key "${key}"` });
    } else if (i.code === 'invalid_union') {
      out.push({ path, message: 'is not in any accepted form (see the config reference)' });
    } else {
      out.push({ path, message: i.message });
    }
  }
  return out;
}

export interface ParsedConfig {
  /** The schema-valid config; undefined when `issues` is not empty. */
  config?: GatewayConfig | undefined;
  issues: ConfigIssue[];
  /** 1-based line of the deepest node of a YAML path such as `routes[3].flood_control.param`. */
  lineOf(path: string): number | undefined;
}

/**
 * YAML → `${ENV}` → schema, collecting every problem; routes are NOT compiled. `scopegate check`
 * uses this to review a table the loader would refuse (duplicates), `loadConfigText` builds on it.
 */
export function parseConfigText(text: string, opts: { env?: Env } = {}): ParsedConfig {
  const env = opts.env ?? runtimeProcess()?.env ?? {};
  const lc = new LineCounter();
  const ph = placeholdersFor(text);
  const { text: protectedText, refs } = protectRefs(text, ph);
  const doc = parseDocument(protectedText, { lineCounter: lc, prettyErrors: true, uniqueKeys: true });
  const lineOf = (path: string) => lineOfKeys(doc, lc, parsePath(path));
  if (doc.errors.length) {
    // The first few parser errors locate the problem; the rest are usually its echoes.
    const issues = doc.errors.slice(0, 3).map((e) => ({
      path: '',
      line: e.linePos?.[0]?.line,
      message: `YAML syntax: ${e.message.split('\n')[0]!.replace(ph.each, '${…}')}`,
    }));
    return { issues, lineOf };
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (e) {
    return { issues: [{ path: '', message: `YAML: ${(e as Error).message}` }], lineOf };
  }
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    return { issues: [{ path: '', line: 1, message: 'the config must be a YAML mapping (key: value)' }], lineOf };
  }
  const issues: ConfigIssue[] = [];
  const coerced: Coerced[] = [];
  const expanded = interpolate(raw, [], { refs, env, ph, issues, coerced });
  let parsed = GatewayConfigSchema.safeParse(expanded);
  if (!parsed.success && coerced.length) {
    // A number or boolean made from `${VAR}` where the schema takes no number is the text the
    // environment gave (a numeric audience, a secret of digits): put back, validated once more.
    const failed = parsed.error.issues.filter((i) => i.code === 'invalid_type' || i.code === 'invalid_union');
    const back = coerced.filter((c) => failed.some((i) => samePath(i.path, c.path)));
    if (back.length) {
      for (const c of back) setAt(expanded, c.path, c.text);
      parsed = GatewayConfigSchema.safeParse(expanded);
    }
  }
  if (!parsed.success) {
    for (const i of zodIssues(parsed.error)) issues.push({ path: formatPath(i.path), line: lineOfKeys(doc, lc, i.path), message: i.message });
  }
  for (const i of issues) i.line ??= lineOf(i.path);
  return { config: issues.length ? undefined : parsed.data, issues, lineOf };
}

/**
 * Parses, validates and compiles config text. `file` only labels messages; `baseDir` resolves
 * key files. Throws one ConfigError listing every problem.
 */
export function loadConfigText(text: string, opts: { env?: Env; file?: string; baseDir?: string } = {}): LoadedConfig {
  const parsed = parseConfigText(text, opts);
  if (!parsed.config) throw new ConfigError(parsed.issues, opts.file);
  let routes: RouteTable;
  try {
    routes = compileRoutes(parsed.config.routes);
  } catch (e) {
    if (e instanceof ConfigError) {
      throw new ConfigError(e.issues.map((i) => ({ ...i, line: i.line ?? parsed.lineOf(i.path) })), opts.file);
    }
    throw e;
  }
  return { config: parsed.config, routes, file: opts.file, baseDir: opts.baseDir ?? runtimeProcess()?.cwd?.() ?? '/' };
}
