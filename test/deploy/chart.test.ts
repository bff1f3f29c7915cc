/**
 * Static checks of the Helm chart (helm/scopegate); there is no helm binary in CI, so these stand in
 * for `helm lint`: plain YAML files parse, templates have balanced actions and blocks, every
 * `.Values.x.y` a template reads exists in values.yaml, values.yaml is documented key by key, and
 * the gateway.yaml the chart renders from its defaults passes scopegate's real config loader.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isMap, parse, parseDocument, stringify, type YAMLMap } from 'yaml';
import { loadConfigText } from '../../src/config/load.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHART = join(ROOT, 'helm/scopegate');
const read = (p: string) => readFileSync(join(ROOT, p), 'utf8');

type Tree = Record<string, unknown>;

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)],
  );
}

const chartFiles = filesUnder(CHART).map((f) => relative(ROOT, f));
const templates = chartFiles.filter((f) => f.includes('/templates/'));
const values = parse(read('helm/scopegate/values.yaml')) as Tree;

// ---------------------------------------------------------------------------------------------
// Template checkers (pure; unit-tested below on bad input so they can fail).

interface Action {
  /** Action text without delimiters, trim markers and surrounding space. */
  body: string;
  line: number;
}

/** Splits a Go template into its actions; throws on a stray or unclosed delimiter. */
function actionsOf(text: string, file = 'template'): Action[] {
  const out: Action[] = [];
  let pos = 0;
  for (;;) {
    const open = text.indexOf('{{', pos);
    const stray = text.indexOf('}}', pos);
    if (stray !== -1 && (open === -1 || stray < open)) {
      throw new Error(`${file}:${lineAt(text, stray)}: "}}" without "{{"`);
    }
    if (open === -1) return out;
    const close = text.indexOf('}}', open + 2);
    const nextOpen = text.indexOf('{{', open + 2);
    if (close === -1 || (nextOpen !== -1 && nextOpen < close)) {
      throw new Error(`${file}:${lineAt(text, open)}: "{{" is not closed before the next action`);
    }
    const body = text
      .slice(open + 2, close)
      .replace(/^-\s/, '')
      .replace(/\s-$/, '')
      .trim();
    out.push({ body, line: lineAt(text, open) });
    pos = close + 2;
  }
}

function lineAt(text: string, index: number): number {
  return text.slice(0, index).split('\n').length;
}

/** Checks if/range/with/define/block ... end nesting (and that else sits in a block that has one). */
function checkBlocks(actions: Action[], file = 'template'): void {
  const stack: { kw: string; line: number }[] = [];
  for (const a of actions) {
    if (a.body.startsWith('/*')) continue;
    const kw = /^([a-z]+)\b/.exec(a.body)?.[1] ?? '';
    if (['if', 'range', 'with', 'define', 'block'].includes(kw)) stack.push({ kw, line: a.line });
    else if (kw === 'else') {
      const top = stack.at(-1);
      if (!top || !['if', 'range', 'with'].includes(top.kw)) throw new Error(`${file}:${a.line}: "else" outside if/range/with`);
    } else if (kw === 'end') {
      if (!stack.pop()) throw new Error(`${file}:${a.line}: "end" without an open block`);
    }
  }
  const open = stack.pop();
  if (open) throw new Error(`${file}:${open.line}: "${open.kw}" is never closed with "end"`);
}

/**
 * Every values path a template reads: `.Values.a.b` directly, or `$x.b` where `$x := .Values.a`.
 * Paths read through `get`/`hasKey` (optional keys of the config tree) are not references.
 */
function valuesRefs(actions: Action[]): string[][] {
  const aliases = new Map<string, string[]>();
  const refs: string[][] = [];
  for (const a of actions) {
    if (a.body.startsWith('/*')) continue;
    for (const m of a.body.matchAll(/\$(\w+)\s*:?=\s*\.Values((?:\.\w+)+)\s*$/g)) {
      aliases.set(m[1]!, m[2]!.slice(1).split('.'));
    }
    for (const m of a.body.matchAll(/\.Values((?:\.\w+)+)/g)) refs.push(m[1]!.slice(1).split('.'));
    for (const m of a.body.matchAll(/\$(\w+)((?:\.\w+)+)/g)) {
      const base = aliases.get(m[1]!);
      if (base) refs.push([...base, ...m[2]!.slice(1).split('.')]);
    }
  }
  return refs;
}

/** The first segment of `path` that does not exist in `tree`, or null when the whole path exists. */
function missingSegment(tree: unknown, path: string[]): string | null {
  let node = tree;
  for (let i = 0; i < path.length; i++) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, path[i]!)) return path.slice(0, i + 1).join('.');
    node = (node as Tree)[path[i]!];
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// The gateway.yaml the chart renders: mirrors "scopegate.gatewayConfig" in templates/_helpers.tpl.

function get(tree: unknown, path: string): unknown {
  return path.split('.').reduce<unknown>((n, k) => (n && typeof n === 'object' ? (n as Tree)[k] : undefined), tree);
}

function upstreamUrl(v: Tree, namespace: string): string {
  if (v.mode === 'sidecar') return `http://127.0.0.1:${get(v, 'app.port') as number}`;
  if (get(v, 'upstream.url')) return get(v, 'upstream.url') as string;
  const name = get(v, 'upstream.service.name') as string;
  if (!name) throw new Error('mode=ingress needs upstream.service.name (or upstream.url)');
  const ns = (get(v, 'upstream.service.namespace') as string) || namespace;
  return `${get(v, 'upstream.scheme') as string}://${name}.${ns}.svc:${get(v, 'upstream.service.port') as number}`;
}

function renderGatewayConfig(v: Tree, namespace = 'ns1'): Tree {
  const cfg = structuredClone((v.config ?? {}) as Tree);
  const sub = (key: string) => ((cfg[key] ??= {}) as Tree);
  sub('listen').port = get(v, 'ports.proxy');
  sub('admin').port = get(v, 'ports.admin');
  const upstreams = sub('upstreams');
  ((upstreams.default ??= {}) as Tree).url = upstreamUrl(v, namespace);
  if (get(v, 'redis.url') || get(v, 'redis.existingSecret')) {
    sub('rate_limit').store = 'redis';
    sub('rate_limit').redis_url = '${REDIS_URL}';
  }
  return cfg;
}

/** Deep merge like helm's values overrides (maps merge, everything else replaces). */
function withValues(overrides: Tree, base: Tree = values): Tree {
  const out = structuredClone(base);
  const merge = (dst: Tree, src: Tree) => {
    for (const [k, val] of Object.entries(src)) {
      if (val && typeof val === 'object' && !Array.isArray(val) && dst[k] && typeof dst[k] === 'object') merge(dst[k] as Tree, val as Tree);
      else dst[k] = val;
    }
  };
  merge(out, overrides);
  return out;
}

const ENV = { SCOPEGATE_HS_SECRET: 'x'.repeat(48), REDIS_URL: 'redis://redis.ns1.svc:6379' };

// ---------------------------------------------------------------------------------------------

describe('chart files', () => {
  const plainYaml = chartFiles.filter((f) => /\.ya?ml$/.test(f) && !f.includes('/templates/'));

  it('has the plain YAML files a chart needs', () => {
    expect(plainYaml).toEqual(
      expect.arrayContaining(['helm/scopegate/Chart.yaml', 'helm/scopegate/values.yaml', 'helm/scopegate/files/prometheus-rules.yaml']),
    );
  });

  it.each(plainYaml)('%s parses as YAML', (f) => {
    const doc = parseDocument(read(f));
    expect(doc.errors.map((e) => e.message)).toEqual([]);
    expect(doc.toJS()).toBeTypeOf('object');
  });

  it('Chart.yaml is apiVersion v2 and its appVersion is the package version (the default image tag)', () => {
    const chart = parse(read('helm/scopegate/Chart.yaml')) as Tree;
    const pkg = JSON.parse(read('package.json')) as { version: string };
    expect(chart).toMatchObject({ apiVersion: 'v2', name: 'scopegate', type: 'application' });
    expect(chart.appVersion).toBe(pkg.version);
  });
});

describe('template checkers', () => {
  it('accept well-formed input', () => {
    const acts = actionsOf('{{- if .Values.a }}x{{ else }}{{ range .Values.b }}{{ . }}{{ end }}{{ end -}}');
    expect(() => checkBlocks(acts)).not.toThrow();
    expect(valuesRefs(acts)).toEqual([['a'], ['b']]);
  });

  it.each([
    ['an unclosed action', '{{ if .Values.a }', /not closed/],
    ['a stray closing delimiter', 'x }} y', /without "\{\{"/],
    ['a block without end', '{{ if .Values.a }}x', /never closed/],
    ['an end too many', '{{ with .Values.a }}{{ end }}{{ end }}', /without an open block/],
    ['else outside a block', '{{ define "x" }}{{ else }}{{ end }}', /else/],
  ])('reject %s', (_name, text, message) => {
    expect(() => checkBlocks(actionsOf(text))).toThrow(message);
  });

  it('resolve $aliases of .Values and report the first missing segment', () => {
    const refs = valuesRefs(actionsOf('{{- $c := .Values.metrics.prometheusRule }}{{ $c.labels }}{{ $c.nope }}'));
    expect(refs).toContainEqual(['metrics', 'prometheusRule', 'nope']);
    expect(missingSegment(values, ['metrics', 'prometheusRule', 'nope'])).toBe('metrics.prometheusRule.nope');
    expect(missingSegment(values, ['metrics', 'prometheusRule', 'labels'])).toBeNull();
  });
});

describe('templates', () => {
  it('exist for every resource of both modes', () => {
    const names = templates.map((t) => t.split('/').at(-1));
    for (const t of ['_helpers.tpl', 'deployment.yaml', 'service.yaml', 'configmap.yaml', 'secret.yaml', 'hpa.yaml', 'pdb.yaml', 'servicemonitor.yaml', 'prometheusrule.yaml']) {
      expect(names).toContain(t);
    }
  });

  it.each(templates)('%s has balanced {{ }} actions and if/range/with/define ... end blocks', (f) => {
    expect(() => checkBlocks(actionsOf(read(f), f), f)).not.toThrow();
  });

  it.each(templates)('%s reads only .Values paths that exist in values.yaml', (f) => {
    const missing = valuesRefs(actionsOf(read(f), f))
      .map((path) => missingSegment(values, path))
      .filter((m): m is string => m !== null);
    expect(missing).toEqual([]);
  });

  it('the deployment rolls pods on config changes and probes the admin port', () => {
    const dep = read('helm/scopegate/templates/deployment.yaml');
    expect(dep).toMatch(/checksum\/config: \{\{ include "scopegate\.gatewayConfig" \. \| sha256sum \}\}/);
    expect(dep).toContain('args: ["serve", "--config", "/etc/scopegate/gateway.yaml"]');
    expect(dep).toMatch(/terminationGracePeriodSeconds: \{\{ \.Values\.terminationGracePeriodSeconds \}\}/);
    expect(dep).toMatch(/mountPath: \/tmp/);
    expect(read('helm/scopegate/templates/configmap.yaml')).toContain('include "scopegate.gatewayConfig" .');
  });

  it('the helper sets exactly the keys this test mirrors (listen/admin ports, default upstream, redis store)', () => {
    const helpers = read('helm/scopegate/templates/_helpers.tpl');
    const block = /define "scopegate\.gatewayConfig"([\s\S]*?)\{\{- end -\}\}\s*$/m.exec(helpers)?.[1] ?? '';
    const sets = [...block.matchAll(/set \$(\w+) "(\w+)"/g)].map((m) => `${m[1]}.${m[2]}`);
    expect(sets).toEqual([
      'listen.port', 'cfg.listen', 'admin.port', 'cfg.admin', 'default.url', 'upstreams.default', 'cfg.upstreams',
      'rl.store', 'rl.redis_url', 'cfg.rate_limit',
    ]);
    expect(block).toContain('"${REDIS_URL}"');
  });
});

describe('values.yaml', () => {
  // Kubernetes objects passed through verbatim: documented as a whole.
  const VERBATIM = new Set([
    'resources', 'podSecurityContext', 'securityContext', 'livenessProbe', 'readinessProbe',
    'app.securityContext', 'app.resources', 'secret.data', 'metrics.grafanaDashboard.labels', 'config',
  ]);

  it('documents every key with a comment', () => {
    const undocumented: string[] = [];
    const walk = (map: YAMLMap, path: string[]) => {
      map.items.forEach((pair, i) => {
        const key = String((pair.key as { value: unknown }).value);
        const full = [...path, key].join('.');
        const node = pair.key as { commentBefore?: string | null };
        const value = pair.value as { comment?: string | null } | null;
        const documented = Boolean(node.commentBefore || (i === 0 && map.commentBefore) || value?.comment);
        const leaf = !isMap(pair.value) || pair.value.items.length === 0;
        if (leaf && !documented && !VERBATIM.has(full)) undocumented.push(full);
        if (isMap(pair.value) && !VERBATIM.has(full)) walk(pair.value, [...path, key]);
      });
    };
    const doc = parseDocument(read('helm/scopegate/values.yaml'));
    walk(doc.contents as YAMLMap, []);
    expect(undocumented).toEqual([]);
  });

  it('defaults are hardened: non-root, read-only root FS, no privilege escalation, no capabilities, RuntimeDefault seccomp', () => {
    expect(values.securityContext).toMatchObject({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(values.podSecurityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(get(values, 'podSecurityContext.runAsUser')).not.toBe(0);
  });

  it('probes /healthz (liveness) and /readyz (readiness) on the admin port', () => {
    expect(get(values, 'livenessProbe.httpGet')).toEqual({ path: '/healthz', port: 'admin' });
    expect(get(values, 'readinessProbe.httpGet')).toEqual({ path: '/readyz', port: 'admin' });
  });

  it('gives the pod longer to terminate than preStop sleep plus the drain budget', () => {
    const graceMs = (values.terminationGracePeriodSeconds as number) * 1000;
    const neededMs = (get(values, 'config.shutdown_timeout_ms') as number) + (values.preStopSleepSeconds as number) * 1000;
    expect(graceMs).toBeGreaterThan(neededMs);
  });

  it('uses the ports the image exposes', () => {
    expect(values.ports).toEqual({ proxy: 8080, admin: 9090 });
  });

  it('ships no secret value', () => {
    for (const v of Object.values(get(values, 'secret.data') as Tree)) expect(v).toBe('');
    const issuers = get(values, 'config.tokens.issuers') as { secrets?: string[] }[];
    for (const iss of issuers) for (const s of iss.secrets ?? []) expect(s).toMatch(/^\$\{[A-Z0-9_]+\}$/);
  });
});

describe('rendered gateway.yaml', () => {
  it('ingress mode: default values validate against the real config loader', () => {
    const cfg = renderGatewayConfig(withValues({ upstream: { service: { name: 'my-api', port: 8000 } } }));
    const { config } = loadConfigText(stringify(cfg), { env: ENV });
    expect(config.upstreams.default?.url).toBe('http://my-api.ns1.svc:8000');
    expect(config.listen.port).toBe(8080);
    expect(config.admin.port).toBe(9090);
    expect(config.rate_limit.store).toBe('memory');
    expect(config.tokens.issuers[0]?.secrets).toEqual([ENV.SCOPEGATE_HS_SECRET]);
  });

  it('ingress mode honours another namespace and a full upstream.url', () => {
    const other = renderGatewayConfig(withValues({ upstream: { service: { name: 'api', namespace: 'prod', port: 80 } } }));
    expect(get(other, 'upstreams.default.url')).toBe('http://api.prod.svc:80');
    const ext = renderGatewayConfig(withValues({ upstream: { url: 'https://api.example.com' } }));
    expect(loadConfigText(stringify(ext), { env: ENV }).config.upstreams.default?.url).toBe('https://api.example.com');
  });

  it('ingress mode without an upstream is refused', () => {
    expect(() => renderGatewayConfig(values)).toThrow(/upstream\.service\.name/);
  });

  it('sidecar mode forwards to the app on localhost', () => {
    const cfg = renderGatewayConfig(withValues({ mode: 'sidecar', app: { image: { repository: 'my/app' }, port: 3000 } }));
    expect(loadConfigText(stringify(cfg), { env: ENV }).config.upstreams.default?.url).toBe('http://127.0.0.1:3000');
  });

  it('redis.url switches the rate-limit store to redis, with the URL from the environment', () => {
    const cfg = renderGatewayConfig(withValues({ upstream: { service: { name: 'api' } }, redis: { url: 'redis://r:6379' } }));
    expect(get(cfg, 'rate_limit.redis_url')).toBe('${REDIS_URL}');
    const { config } = loadConfigText(stringify(cfg), { env: ENV });
    expect(config.rate_limit).toMatchObject({ store: 'redis', redis_url: ENV.REDIS_URL });
  });

  it('fails without the Secret-provided HMAC key (the loader names the variable)', () => {
    const cfg = renderGatewayConfig(withValues({ upstream: { service: { name: 'api' } } }));
    expect(() => loadConfigText(stringify(cfg), { env: {} })).toThrow(/SCOPEGATE_HS_SECRET/);
  });
});
