/**
 * The Helm chart (helm/scopegate), checked by helm itself: `helm lint --strict` and `helm template`
 * for every values file in test/deploy/values/, compared byte for byte with test/deploy/golden/, the
 * render-time `fail`/`required` guards with their exact messages (golden/fail-guards.yaml), and the
 * gateway.yaml each render puts in its ConfigMap loaded by scopegate's own config loader.
 *
 * Regenerate the golden files after an intended change: `UPDATE_GOLDEN=1 npx vitest run
 * test/deploy/chart.test.ts`, then read the diff. helm comes from HELM_BIN, PATH or
 * scripts/ci-tools.sh's cache; without it the helm tests are skipped, visibly (a failure under
 * CI=true unless SCOPEGATE_SKIP_HELM=1).
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { isMap, parse, parseAllDocuments, parseDocument, stringify, type YAMLMap } from 'yaml';
import { loadConfigText } from '../../src/config/load.js';
import { findTool, run, warnIfMissing } from './tools.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHART = join(ROOT, 'helm/scopegate');
const VALUES_DIR = join(ROOT, 'test/deploy/values');
const GOLDEN_DIR = join(ROOT, 'test/deploy/golden');
const UPDATE = process.env.UPDATE_GOLDEN === '1';
/** Fixed so the golden files do not depend on helm's default (which moves with its version). */
const KUBE_VERSION = '1.30.0';
const read = (p: string) => readFileSync(join(ROOT, p), 'utf8');

type Tree = Record<string, unknown>;
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; annotations?: Record<string, string> };
  spec?: Tree;
  data?: Record<string, string>;
}

const helm = findTool('helm');
warnIfMissing(helm);

/** `helm template gw helm/scopegate -n ns1 ...args`. */
function template(args: string[]) {
  return run(helm.path!, ['template', 'gw', CHART, '--namespace', 'ns1', '--kube-version', KUBE_VERSION, ...args]);
}

function render(args: string[]): { text: string; objects: K8sObject[] } {
  const r = template(args);
  expect(r.stderr, 'helm template stderr').toBe('');
  expect(r.code).toBe(0);
  const docs = parseAllDocuments(r.stdout);
  for (const d of docs) expect(d.errors.map((e) => e.message)).toEqual([]);
  return { text: r.stdout, objects: docs.map((d) => d.toJS() as K8sObject).filter(Boolean) };
}

function only(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  expect(found.map((o) => `${o.kind}/${o.metadata.name}`)).toHaveLength(1);
  return found[0]!;
}

/** The gateway container of the rendered Deployment. */
function gatewayContainer(objects: K8sObject[]): Tree {
  const dep = only(objects, 'Deployment');
  const containers = ((dep.spec!.template as Tree).spec as Tree).containers as Tree[];
  return containers.find((c) => c.name === 'scopegate')!;
}

/** The ConfigMap's gateway.yaml through scopegate's real loader, with the Secret's variables set. */
function loadRenderedConfig(objects: K8sObject[]) {
  const text = only(objects, 'ConfigMap', 'gw-scopegate').data!['gateway.yaml']!;
  return loadConfigText(text, { env: { SCOPEGATE_HS_SECRET: 'x'.repeat(48), REDIS_URL: 'redis://redis.ns1.svc:6379' } }).config;
}

const valueFiles = readdirSync(VALUES_DIR).filter((f) => f.endsWith('.yaml')).sort();
const CASE = (f: string) => basename(f, '.yaml');

it(`helm is available (${helm.status})`, () => {
  if (helm.required) expect(helm.path, `CI=true needs helm (scripts/ci-tools.sh), or ${helm.skipVar}=1`).not.toBeNull();
});

describe.skipIf(!helm.path)('helm lint', () => {
  it.each(['(defaults + upstream.service.name)', ...valueFiles])('passes --strict with %s', (f) => {
    const args = f.endsWith('.yaml') ? ['-f', join(VALUES_DIR, f)] : ['--set', 'upstream.service.name=my-api'];
    const r = run(helm.path!, ['lint', '--strict', CHART, '--namespace', 'ns1', '--kube-version', KUBE_VERSION, ...args]);
    expect(r.stdout + r.stderr).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
    expect(r.code).toBe(0);
  });

  it('can fail: a chart copy with an unclosed block is refused', () => {
    const copy = mkdtempSync(join(tmpdir(), 'scopegate-chart-'));
    try {
      cpSync(CHART, copy, { recursive: true });
      writeFileSync(join(copy, 'templates/broken.yaml'), '{{- if .Values.mode }}\nkind: ConfigMap\n');
      const r = run(helm.path!, ['lint', '--strict', copy, '--kube-version', KUBE_VERSION, '--set', 'upstream.service.name=x']);
      expect(r.code).not.toBe(0);
      expect(r.stdout + r.stderr).toMatch(/\[ERROR\] templates\/.*broken\.yaml.*unexpected EOF/);
    } finally {
      rmSync(copy, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!helm.path)('helm template golden files', () => {
  it('has a values file for ingress, sidecar and forward-auth mode', () => {
    expect(valueFiles).toEqual(expect.arrayContaining(['ingress.yaml', 'sidecar.yaml', 'forward-auth.yaml']));
  });

  it.each(valueFiles)('%s renders exactly golden/%s', (f) => {
    const { text } = render(['-f', join(VALUES_DIR, f)]);
    const golden = join(GOLDEN_DIR, `${CASE(f)}.yaml`);
    if (UPDATE || !existsSync(golden)) writeFileSync(golden, text);
    expect(text).toBe(readFileSync(golden, 'utf8'));
  });
});

describe.skipIf(!helm.path)('rendered objects', () => {
  const cases = Object.fromEntries(valueFiles.map((f) => [CASE(f), () => render(['-f', join(VALUES_DIR, f)]).objects]));

  it('ingress mode: forwards to the upstream Service, shares limits through Redis, runs on node', () => {
    const objects = cases.ingress!();
    const config = loadRenderedConfig(objects);
    expect(config.upstreams.default?.url).toBe('http://my-api.apis.svc:8000');
    expect(config.listen.port).toBe(8080);
    expect(config.admin.port).toBe(9090);
    expect(config.rate_limit).toMatchObject({ store: 'redis', redis_url: 'redis://redis.ns1.svc:6379' });
    expect(config.forward_auth).toBeUndefined();
    const c = gatewayContainer(objects);
    expect(c.image).toBe('ghcr.io/example/scopegate:0.1.0');
    expect(c.command).toEqual(['node', 'dist/cli.js']);
    expect(c.args).toEqual(['serve', '--config', '/etc/scopegate/gateway.yaml']);
    for (const kind of ['HorizontalPodAutoscaler', 'PodDisruptionBudget', 'NetworkPolicy', 'ServiceMonitor', 'PrometheusRule']) only(objects, kind);
    const alerts = (only(objects, 'PrometheusRule').spec!.groups as { rules: { alert: string; labels: Tree }[] }[]).flatMap((g) => g.rules);
    expect(alerts.map((a) => a.alert)).not.toContain('ScopegateConfigReloadFailed');
    for (const a of alerts) expect(a.labels.team).toBe('platform');
  });

  it('sidecar mode: forwards to the app on localhost, and the Service never targets the app port', () => {
    const objects = cases.sidecar!();
    expect(loadRenderedConfig(objects).upstreams.default?.url).toBe('http://127.0.0.1:3000');
    const dep = only(objects, 'Deployment');
    const containers = ((dep.spec!.template as Tree).spec as Tree).containers as { name: string }[];
    expect(containers.map((c) => c.name)).toEqual(['scopegate', 'app']);
    const svc = only(objects, 'Service', 'gw-scopegate');
    expect((svc.spec!.ports as Tree[]).map((p) => p.targetPort)).toEqual(['http']);
    expect(objects.some((o) => o.kind === 'Secret')).toBe(false);
  });

  it('forward-auth mode: config has forward_auth and the trusted proxies, no upstream; runs on bun', () => {
    const objects = cases['forward-auth']!();
    const config = loadRenderedConfig(objects);
    expect(config.forward_auth).toEqual({ path: '/_scopegate/auth' });
    expect(config.trusted_proxies).toEqual(['10.244.0.0/16']);
    expect(config.upstreams).toEqual({});
    const c = gatewayContainer(objects);
    expect(c.image).toBe('ghcr.io/example/scopegate:0.1.0-bun');
    expect(c.command).toEqual(['bun', 'dist/cli.js']);
  });

  it('forward-auth mode: the ingress-nginx Ingress calls the gateway Service, with X-Original-URI, never a cache', () => {
    const objects = cases['forward-auth']!();
    const ing = only(objects, 'Ingress');
    const a = ing.metadata.annotations!;
    expect(a['nginx.ingress.kubernetes.io/auth-url']).toBe('http://gw-scopegate.ns1.svc.cluster.local:80/_scopegate/auth');
    // auth-method is what makes ingress-nginx send X-Original-URI, the header scopegate decides on.
    expect(a['nginx.ingress.kubernetes.io/auth-method']).toBe('GET');
    expect(a['nginx.ingress.kubernetes.io/auth-response-headers']!.split(',')).toEqual([
      'X-Auth-Subject', 'X-Auth-Client-Type', 'X-Auth-Scopes', 'X-Auth-Room', 'X-Auth-Room-Name', 'X-Auth-Group', 'X-Auth-Token-Id', 'X-Auth-Issuer',
      'X-Ratelimit-Limit', 'X-Ratelimit-Remaining', 'X-Ratelimit-Reset', 'RateLimit-Policy', 'RateLimit',
      'X-FloodControl-Limit', 'X-FloodControl-Remaining', 'X-FloodControl-Reset',
    ]);
    expect(Object.keys(a).filter((k) => /auth-cache|auth-snippet/.test(k))).toEqual([]);
    expect(a['nginx.ingress.kubernetes.io/configuration-snippet']).toContain(
      'auth_request_set $scopegate_rl_0 $upstream_http_x_ratelimit_limit;\nmore_set_headers "X-Ratelimit-Limit: $scopegate_rl_0";',
    );
    expect(ing.spec).toMatchObject({
      ingressClassName: 'nginx',
      rules: [{ host: 'api.example.com', http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'my-api', port: { number: 8000 } } } }] } }],
    });
  });

  it('forward-auth mode: the Envoy Gateway SecurityPolicy sends extAuth to the gateway path and copies the headers upstream', () => {
    const objects = cases['forward-auth']!();
    const sp = only(objects, 'SecurityPolicy');
    expect(sp.apiVersion).toBe('gateway.envoyproxy.io/v1alpha1');
    expect(sp.metadata.namespace).toBe('apis');
    expect(sp.spec).toMatchObject({
      targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'HTTPRoute', name: 'my-api' }],
      extAuth: {
        headersToExtAuth: ['x-request-id'],
        timeout: '2s',
        http: { backendRefs: [{ name: 'gw-scopegate', namespace: 'ns1', port: 80 }], path: '/_scopegate/auth' },
      },
    });
    const http = (sp.spec!.extAuth as Tree).http as { headersToBackend: string[] };
    expect(http.headersToBackend).toContain('X-Auth-Room');
    expect(http.headersToBackend).toContain('RateLimit');
    // The policy sits in another namespace than the Service: a ReferenceGrant in the Service's.
    const grant = only(objects, 'ReferenceGrant');
    expect(grant.metadata.namespace).toBe('ns1');
    expect(grant.spec).toMatchObject({ from: [{ kind: 'SecurityPolicy', namespace: 'apis' }], to: [{ kind: 'Service', name: 'gw-scopegate' }] });
    const ctp = only(objects, 'ClientTrafficPolicy');
    expect(ctp.metadata.namespace).toBe('envoy-gateway-system');
    expect((ctp.spec as { headers: { earlyRequestHeaders: { remove: string[] } } }).headers.earlyRequestHeaders.remove).toHaveLength(8);
  });

  it('forward-auth mode without the front-proxy resources renders none of them, and follows identity_header_prefix', () => {
    const { objects } = render(['--set', 'mode=forward-auth', '--set', 'forwardAuth.trustedProxies={10.0.0.0/8}']);
    expect(objects.map((o) => o.kind).filter((k) => ['Ingress', 'SecurityPolicy', 'ReferenceGrant', 'ClientTrafficPolicy'].includes(k))).toEqual([]);
    const prefixed = render([
      '--set', 'mode=forward-auth', '--set', 'forwardAuth.trustedProxies={10.0.0.0/8}',
      '--set', 'config.tokens.identity_header_prefix=X-User-',
      '--set', 'forwardAuth.ingressNginx.enabled=true', '--set', 'forwardAuth.ingressNginx.backend.service.name=api',
    ]).objects;
    const headers = only(prefixed, 'Ingress').metadata.annotations!['nginx.ingress.kubernetes.io/auth-response-headers']!;
    expect(headers.startsWith('X-User-Subject,X-User-Client-Type,')).toBe(true);
    expect(headers).not.toContain('X-Auth-');
  });

  it('the checksum/config annotation follows the rendered gateway.yaml (pods roll on a config change)', () => {
    const checksum = (args: string[]) =>
      ((only(render(['--set', 'upstream.service.name=api', ...args]).objects, 'Deployment').spec!.template as Tree).metadata as Tree).annotations as Tree;
    const a = checksum([])['checksum/config'];
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(checksum([])['checksum/config']).toBe(a);
    expect(checksum(['--set', 'config.realm=other'])['checksum/config']).not.toBe(a);
  });

  it('an empty secret value is generated: 64 random characters, new on each fresh render', () => {
    const secret = () => only(render(['--set', 'upstream.service.name=api']).objects, 'Secret').data!.SCOPEGATE_HS_SECRET!;
    const [a, b] = [secret(), secret()];
    expect(Buffer.from(a, 'base64').toString()).toMatch(/^[A-Za-z0-9]{64}$/);
    expect(a).not.toBe(b);
  });
});

interface FailCase {
  name: string;
  set: string[];
}

/** Every render-time guard of the chart, with the values that trip it. */
const FAIL_CASES: FailCase[] = [
  { name: 'unknown mode', set: ['mode=gateway'] },
  { name: 'unknown runtime', set: ['upstream.service.name=api', 'runtime=deno'] },
  { name: 'ingress without an upstream', set: [] },
  { name: 'sidecar without an app image', set: ['mode=sidecar'] },
  { name: 'sidecar app port on the proxy port', set: ['mode=sidecar', 'app.image.repository=my/app', 'app.port=8080'] },
  { name: 'grace period shorter than preStop + drain', set: ['upstream.service.name=api', 'terminationGracePeriodSeconds=15'] },
  { name: 'replicas with per-replica budgets', set: ['upstream.service.name=api', 'replicaCount=3'] },
  { name: 'forward-auth without trusted proxies', set: ['mode=forward-auth'] },
  { name: 'ingress-nginx without the protected Service', set: ['mode=forward-auth', 'forwardAuth.trustedProxies={10.0.0.0/8}', 'forwardAuth.ingressNginx.enabled=true'] },
  {
    name: 'ingress-nginx with an auth cache',
    set: [
      'mode=forward-auth', 'forwardAuth.trustedProxies={10.0.0.0/8}', 'forwardAuth.ingressNginx.enabled=true',
      'forwardAuth.ingressNginx.backend.service.name=api', 'forwardAuth.ingressNginx.annotations.nginx\\.ingress\\.kubernetes\\.io/auth-cache-key=$remote_user',
    ],
  },
  { name: 'envoy gateway without targets', set: ['mode=forward-auth', 'forwardAuth.trustedProxies={10.0.0.0/8}', 'forwardAuth.envoyGateway.enabled=true'] },
  {
    name: 'identity-header stripping without a Gateway',
    set: [
      'mode=forward-auth', 'forwardAuth.trustedProxies={10.0.0.0/8}', 'forwardAuth.envoyGateway.enabled=true',
      'forwardAuth.envoyGateway.targetRefs[0].kind=HTTPRoute', 'forwardAuth.envoyGateway.targetRefs[0].name=api',
      'forwardAuth.envoyGateway.stripClientIdentityHeaders.enabled=true',
    ],
  },
  { name: 'front-proxy resources outside forward-auth mode', set: ['upstream.service.name=api', 'forwardAuth.ingressNginx.enabled=true'] },
];

describe.skipIf(!helm.path)('render-time guards (golden/fail-guards.yaml)', () => {
  const goldenFile = join(GOLDEN_DIR, 'fail-guards.yaml');
  const actual: Record<string, string> = {};
  let golden: Record<string, string> = {};
  beforeAll(() => {
    for (const c of FAIL_CASES) {
      const r = template(c.set.flatMap((s) => ['--set', s]));
      // helm prints "Error: execution error at (scopegate/templates/x.yaml:1:4): <message>"; the
      // golden keeps the message (the position moves with every template edit).
      const line = r.stderr.split('\n').find((l) => l.startsWith('Error:')) ?? r.stderr;
      actual[c.name] = r.code === 0 ? '(rendered without error)' : line.replace(/^Error: execution error at \([^)]*\): /, '');
    }
    if (UPDATE || !existsSync(goldenFile)) writeFileSync(goldenFile, stringify(actual, { lineWidth: 0 }));
    golden = parse(readFileSync(goldenFile, 'utf8')) as Record<string, string>;
  });

  it('golden/fail-guards.yaml lists exactly these cases', () => {
    expect(Object.keys(golden)).toEqual(FAIL_CASES.map((c) => c.name));
  });

  it.each(FAIL_CASES.map((c) => c.name))('refuses %s with the golden message', (name) => {
    expect(actual[name]).not.toBe('(rendered without error)');
    expect(actual[name]).toBe(golden[name]);
  });
});

// ---------------------------------------------------------------------------------------------
// Plain checks of the chart's files (no helm needed).

/**
 * Every values path a template reads: `.Values.a.b` directly, or `$x.b` where `$x := .Values.a`.
 * helm does not check this (a misspelt `.Values.forwardAuth.ingresNginx.enabled` renders as false,
 * even under `lint --strict`); paths read through `get`/`hasKey`/`with` are not seen.
 */
function valuesRefs(template: string): string[][] {
  const aliases = new Map<string, string[]>();
  const refs: string[][] = [];
  for (const [, body] of template.matchAll(/\{\{-?([\s\S]*?)-?\}\}/g)) {
    if (body!.trim().startsWith('/*')) continue;
    for (const m of body!.matchAll(/\$(\w+)\s*:?=\s*\.Values((?:\.\w+)+)\s*$/g)) aliases.set(m[1]!, m[2]!.slice(1).split('.'));
    for (const m of body!.matchAll(/\.Values((?:\.\w+)+)/g)) refs.push(m[1]!.slice(1).split('.'));
    for (const m of body!.matchAll(/\$(\w+)((?:\.\w+)+)/g)) {
      const base = aliases.get(m[1]!);
      if (base) refs.push([...base, ...m[2]!.slice(1).split('.')]);
    }
  }
  return refs;
}

/** The first segment of `path` missing from `tree`, or null when the whole path exists. */
function missingSegment(tree: unknown, path: string[]): string | null {
  let node = tree;
  for (let i = 0; i < path.length; i++) {
    if (node === null || typeof node !== 'object' || !Object.hasOwn(node, path[i]!)) return path.slice(0, i + 1).join('.');
    node = (node as Tree)[path[i]!];
  }
  return null;
}

describe('templates read only values that exist', () => {
  const values = parse(read('helm/scopegate/values.yaml')) as Tree;
  const files = readdirSync(join(CHART, 'templates')).filter((f) => /\.(ya?ml|tpl|txt)$/.test(f));

  it('the checker resolves $aliases and reports the first missing segment', () => {
    const refs = valuesRefs('{{- $c := .Values.metrics.prometheusRule }}{{ $c.labels }}{{ $c.nope }}{{/* .Values.x */}}{{ .Values.mode }}');
    expect(refs).toEqual([['metrics', 'prometheusRule'], ['metrics', 'prometheusRule', 'labels'], ['metrics', 'prometheusRule', 'nope'], ['mode']]);
    expect(refs.map((r) => missingSegment(values, r)).filter(Boolean)).toEqual(['metrics.prometheusRule.nope']);
  });

  it.each(files)('%s', (f) => {
    const missing = valuesRefs(read(`helm/scopegate/templates/${f}`))
      .map((p) => missingSegment(values, p))
      .filter((m): m is string => m !== null);
    expect(missing).toEqual([]);
  });
});

describe('chart files', () => {
  it('Chart.yaml is apiVersion v2 and its appVersion is the package version (the default image tag)', () => {
    const chart = parse(read('helm/scopegate/Chart.yaml')) as Tree;
    const pkg = JSON.parse(read('package.json')) as { version: string };
    expect(chart).toMatchObject({ apiVersion: 'v2', name: 'scopegate', type: 'application' });
    expect(chart.appVersion).toBe(pkg.version);
  });

  it('no template or values file mentions an auth cache except to refuse it', () => {
    const templates = readdirSync(join(CHART, 'templates')).map((f) => read(`helm/scopegate/templates/${f}`));
    for (const t of templates) for (const line of t.split('\n').filter((l) => l.includes('auth-cache'))) expect(line).toMatch(/hasPrefix|No auth-cache-key|never add auth-cache-key/);
    expect(read('helm/scopegate/values.yaml')).not.toMatch(/^\s*nginx\.ingress\.kubernetes\.io\/auth-cache/m);
  });
});

describe('values.yaml', () => {
  const values = parse(read('helm/scopegate/values.yaml')) as Tree;
  const get = (path: string) => path.split('.').reduce<unknown>((n, k) => (n && typeof n === 'object' ? (n as Tree)[k] : undefined), values);
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
    walk(parseDocument(read('helm/scopegate/values.yaml')).contents as YAMLMap, []);
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
    expect(get('podSecurityContext.runAsUser')).not.toBe(0);
  });

  it('probes /healthz (liveness) and /readyz (readiness) on the admin port, the ports the image exposes', () => {
    expect(get('livenessProbe.httpGet')).toEqual({ path: '/healthz', port: 'admin' });
    expect(get('readinessProbe.httpGet')).toEqual({ path: '/readyz', port: 'admin' });
    expect(values.ports).toEqual({ proxy: 8080, admin: 9090 });
  });

  it('defaults to the node runtime and no front-proxy resources', () => {
    expect(values.runtime).toBe('node');
    expect(get('forwardAuth.ingressNginx.enabled')).toBe(false);
    expect(get('forwardAuth.envoyGateway.enabled')).toBe(false);
  });

  it('ships no secret value', () => {
    for (const v of Object.values(get('secret.data') as Tree)) expect(v).toBe('');
    const issuers = get('config.tokens.issuers') as { secrets?: string[] }[];
    for (const iss of issuers) for (const s of iss.secrets ?? []) expect(s).toMatch(/^\$\{[A-Z0-9_]+\}$/);
  });
});
