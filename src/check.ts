/**
 * `scopegate check`: validate a config and describe its route table in plain words.
 *
 * Errors make it fail (exit 1): an invalid config (every schema problem, each with its YAML path,
 * line and allowed values), duplicate method + path routes (every pair), duplicate ids. Warnings
 * are reported but pass: shadowed routes, non-public routes without scopes, `room_param` or
 * `flood_control.param` naming a parameter the path lacks.
 *
 * It validates with `parseConfigText` (YAML, `${ENV}`, schema) without compiling routes, so a
 * table the loader would refuse for duplicates is still printed whole, with every duplicate and
 * every warning, each with its line.
 *
 * `--json` prints the `CheckReport` below, a stable shape for machines:
 *
 *   {
 *     "ok": true,                       // false when errors.length + summary.errors > 0
 *     "file": "/abs/config.yaml",
 *     "summary": { "routes": 9, "errors": 0, "warnings": 1 },
 *     "errors": [                       // config errors outside the route analysis
 *       { "path": "routes[4].bogus", "line": 23, "message": "unknown key \"bogus\"" }
 *     ],
 *     "findings": [                     // route analysis (analyze-routes.ts codes)
 *       { "severity": "warning", "code": "no_scopes", "route": "get-session", "index": 2,
 *         "path": "routes[2]", "line": 31, "message": "Route \"get-session\" ..." }
 *     ],
 *     "routes": [{
 *       "id": "send-room-notification", "index": 1, "line": 70,
 *       "methods": ["POST"],            // null = every method but TRACE and CONNECT; GET implies HEAD
 *       "path": "/v2/room/{room_id_or_name}/notification",
 *       "public": false,
 *       "scopes": { "mode": "any", "list": ["send_notification"] },   // mode: any | all | none | public
 *       "client_types": ["group", "room", "user"],                      // expanded; [] when public
 *       "room_param": "room_id_or_name",                                // or null
 *       "rate_limit": { "limit": 500, "window_s": 300, "window": "token",  // or "route" (own window)
 *                       "client_types": { "room": { "limit": 100, "window_s": 300 } } },  // or null
 *       "flood_control": { "limit": 30, "window_s": 60, "param": "room_id_or_name" },     // or null
 *       "upstream": "default"
 *     }]
 *   }
 *
 * `line` is 1-based, or null when unknown. `rate_limit` and `flood_control` are null when no
 * budget applies (public route, or `rate_limit.enabled: false`); `rate_limit.client_types` lists
 * only the overrides for client types the route admits.
 *
 * @example
 *   const report = await runCheck('config/gateway.yaml');
 *   process.stdout.write(formatCheck(report)); // exit report.ok ? 0 : 1
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { loadIssuerKeys } from './auth/keys.js';
import { allowedClientTypes } from './authz/authorize.js';
import { parseConfigText } from './config/load.js';
import type { GatewayConfig, WindowConfig } from './config/schema.js';
import { analyzeRoutes, methodsLabel, type RouteFinding } from './routing/analyze-routes.js';
import { compileRoute, compileRoutes } from './routing/compile-routes.js';
import { matchRoute } from './routing/match-route.js';
import { servicePaths } from './token-service/service.js';
import { ConfigError } from './errors.js';
import { loadTlsFiles } from './gateway/tls.js';
import type { CompiledRoute } from './types.js';

const FILE_OR_SECRET = ['secrets', 'public_key_file', 'jwks_file', 'private_key_file'] as const;

type Env = Readonly<Record<string, string | undefined>>;

export interface CheckIssue {
  /** YAML path such as `routes[4].methods[0]`; '' for the whole file. */
  path: string;
  line: number | null;
  message: string;
}

export interface CheckFinding extends RouteFinding {
  /** YAML path of the field the finding is about (`routes[3]`, `routes[3].room_param`, ...). */
  path: string;
  line: number | null;
}

export interface CheckRoute {
  id: string;
  index: number;
  line: number | null;
  methods: string[] | null;
  path: string;
  public: boolean;
  scopes: { mode: 'any' | 'all' | 'none' | 'public'; list: string[] };
  client_types: string[];
  room_param: string | null;
  rate_limit: (WindowConfig & { window: 'token' | 'route'; client_types: Record<string, WindowConfig> }) | null;
  flood_control: { limit: number; window_s: number; param: string } | null;
  upstream: string;
}

export interface CheckReport {
  ok: boolean;
  file: string;
  summary: { routes: number; errors: number; warnings: number };
  errors: CheckIssue[];
  findings: CheckFinding[];
  routes: CheckRoute[];
}

/** Validates `file` (env for `${VAR}` defaults to process.env) and reviews its route table. */
export async function runCheck(file: string, env: Env = process.env): Promise<CheckReport> {
  const abs = resolve(file);
  let text: string;
  try {
    text = await readFile(abs, 'utf8');
  } catch (e) {
    return report(abs, [{ path: '', line: null, message: `cannot read ${abs}: ${(e as NodeJS.ErrnoException).code ?? String(e)}` }], [], []);
  }
  // Parse without compiling routes, so a table with duplicates is still reviewed whole.
  const parsed = parseConfigText(text, { env });
  const line = (path: string) => parsed.lineOf(path) ?? null;
  const config = parsed.config;
  if (!config) return report(abs, sortIssues(parsed.issues.map((i) => ({ path: i.path, line: i.line ?? null, message: i.message }))), [], []);
  const findings: CheckFinding[] = analyzeRoutes(config.routes, { fallback: config.fallback }).map((f) => {
    const path = findingPath(f, config.routes[f.index]?.id !== undefined);
    return { ...f, path, line: line(path) };
  });
  // The token service's paths are answered before the route table: a route on one never runs.
  if (config.token_service) {
    const paths = servicePaths(config.token_service);
    config.routes.forEach((r, i) => {
      const compiled = compileRoutes([r]);
      const hit = paths.find((p) => matchRoute(compiled, 'GET', p).kind !== 'not_found' || matchRoute(compiled, 'POST', p).kind !== 'not_found');
      if (hit === undefined) return;
      const path = `routes[${i}].path`;
      findings.push({
        severity: 'warning',
        code: 'service_shadowed',
        route: r.id ?? r.path,
        index: i,
        message: `Route "${r.id ?? r.path}" (routes[${i}]) covers ${hit}, which the token service answers before the route table; the route never sees it.`,
        path,
        line: line(path),
      });
    });
  }
  // The key files serve would load, loaded the same way (a missing public_key_file fails here,
  // not at start-up). A remote JWKS is serve's to reach (readiness); the token service's issuer
  // without a key source uses its store's keys.
  const keyErrors: CheckIssue[] = [];
  /** Runs a loader serve runs; its ConfigError's issues become check errors at their YAML lines. */
  const loadAsServe = async (loader: () => Promise<unknown>): Promise<void> => {
    try {
      await loader();
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      for (const x of e.issues) keyErrors.push({ path: x.path, line: line(x.path), message: x.message });
    }
  };
  for (const [i, issuer] of config.tokens.issuers.entries()) {
    if (issuer.jwks_url || !FILE_OR_SECRET.some((k) => issuer[k] !== undefined)) continue;
    await loadAsServe(() => loadIssuerKeys(issuer, i, { baseDir: dirname(abs) }));
  }
  // listen.tls: the certificate and key serve would load, checked the same way (they parse, the
  // key is the certificate's, the TLS stack accepts the pair).
  const tls = config.listen.tls;
  if (tls) await loadAsServe(() => loadTlsFiles(tls, dirname(abs)));
  const routes = config.routes.map((r, i) => describeRoute(compileRoute(r, i), config, line(`routes[${i}]`)));
  return report(abs, keyErrors, findings, routes);
}

function report(file: string, errors: CheckIssue[], findings: CheckFinding[], routes: CheckRoute[]): CheckReport {
  const nErrors = findings.filter((f) => f.severity === 'error').length;
  return {
    ok: errors.length === 0 && nErrors === 0,
    file,
    summary: { routes: routes.length, errors: errors.length + nErrors, warnings: findings.length - nErrors },
    errors,
    findings,
    routes,
  };
}

function sortIssues(issues: CheckIssue[]): CheckIssue[] {
  return issues.map((x, i) => ({ x, i })).sort((a, b) => (a.x.line ?? Infinity) - (b.x.line ?? Infinity) || a.i - b.i).map((e) => e.x);
}

function findingPath(f: RouteFinding, hasId: boolean): string {
  const base = `routes[${f.index}]`;
  switch (f.code) {
    case 'invalid_path':
      return `${base}.path`;
    case 'duplicate_id':
      return `${base}.${hasId ? 'id' : 'path'}`;
    case 'room_param_missing':
      return `${base}.room_param`;
    case 'flood_param_missing':
      return `${base}.flood_control.param`;
    case 'method_shadowed':
      return `${base}.methods`;
    default:
      return base;
  }
}

function describeRoute(r: CompiledRoute, config: GatewayConfig, line: number | null): CheckRoute {
  const c = r.config;
  const rl = config.rate_limit;
  const types = c.public ? [] : [...allowedClientTypes(r)];
  let rateLimit: CheckRoute['rate_limit'] = null;
  if (!c.public && rl.enabled) {
    if (c.rate_limit) {
      rateLimit = { ...c.rate_limit, window: 'route', client_types: {} };
    } else {
      // A client-type override changes the token's default window, for the types this route admits.
      const overrides: Record<string, WindowConfig> = {};
      for (const t of types) {
        const w = (rl.client_types as Partial<Record<string, WindowConfig>>)[t];
        if (w && Object.hasOwn(rl.client_types, t)) overrides[t] = { limit: w.limit, window_s: w.window_s };
      }
      rateLimit = { limit: rl.default.limit, window_s: rl.default.window_s, window: 'token', client_types: overrides };
    }
  }
  return {
    id: r.id,
    index: r.index,
    line,
    methods: r.methods ? [...r.methods] : null,
    path: c.path,
    public: c.public,
    scopes: c.public
      ? { mode: 'public', list: [] }
      : c.scopes_all
        ? { mode: 'all', list: [...c.scopes_all] }
        : c.scopes
          ? { mode: 'any', list: [...c.scopes] }
          : { mode: 'none', list: [] },
    client_types: types,
    room_param: c.room_param ?? null,
    rate_limit: rateLimit,
    flood_control: !c.public && rl.enabled && c.flood_control ? { ...c.flood_control } : null,
    upstream: r.upstream,
  };
}

// ── Text output ─────────────────────────────────────────────────────────────────────────────────

const window = (w: WindowConfig) => `${w.limit}/${w.window_s}s`;

/** The `limits` cell: "500/300s (room 100/300s); flood 30/60s per {room_id_or_name}". */
export function limitsText(r: CheckRoute): string {
  const parts: string[] = [];
  if (r.rate_limit) {
    const o = Object.entries(r.rate_limit.client_types).map(([t, w]) => `${t} ${window(w)}`);
    parts.push(`${window(r.rate_limit)}${r.rate_limit.window === 'route' ? ' (own window)' : o.length ? ` (${o.join(', ')})` : ''}`);
  }
  if (r.flood_control) parts.push(`flood ${window(r.flood_control)} per {${r.flood_control.param}}`);
  return parts.join('; ') || '-';
}

const COLUMNS = ['id', 'methods', 'path', 'scopes', 'client types', 'room', 'limits', 'upstream'] as const;

function cells(r: CheckRoute): string[] {
  const scopes = { public: 'public', none: '(any valid token)', any: `any of ${r.scopes.list.join(' ')}`, all: `all of ${r.scopes.list.join(' ')}` }[r.scopes.mode];
  return [
    r.id,
    methodsLabel(r.methods),
    r.path,
    scopes,
    r.client_types.join(',') || '-',
    r.room_param ? `{${r.room_param}}` : '-',
    limitsText(r),
    r.upstream,
  ];
}

function table(rows: CheckRoute[]): string {
  const body = rows.map(cells);
  const width = COLUMNS.map((c, i) => Math.max(c.length, ...body.map((r) => r[i]!.length)));
  const line = (cs: readonly string[]) => cs.map((s, i) => s.padEnd(width[i]!)).join('  ').trimEnd();
  return [line(COLUMNS), line(width.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

const where = (path: string, line: number | null) => `${path || '(root)'}${line ? ` (line ${line})` : ''}`;

/** The human report: table, then every error and warning with its YAML path and line. */
export function formatCheck(r: CheckReport): string {
  const out: string[] = [];
  const head = r.routes.length || r.findings.length ? `${r.routes.length} route(s)` : 'invalid config';
  out.push(`${r.ok ? '✓' : '✗'} ${r.file}: ${head}`);
  if (r.routes.length) out.push('', table(r.routes));
  if (r.errors.length || r.findings.length) out.push('');
  for (const e of r.errors) out.push(`  error    ${where(e.path, e.line)}: ${e.message}`);
  for (const f of r.findings) out.push(`  ${f.severity.padEnd(8)} ${where(f.path, f.line)} ${f.code}: ${f.message}`);
  out.push('', `${r.summary.errors} error(s), ${r.summary.warnings} warning(s)`);
  return `${out.join('\n')}\n`;
}
