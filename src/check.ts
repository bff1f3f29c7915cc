/**
 * `scopegate check`: validate a config and describe its route table in plain words.
 * Errors (invalid config, duplicate routes) make it fail; warnings (shadowed routes, routes that
 * any valid token passes, room/flood parameters the path lacks) are reported but pass.
 *
 * @example
 *   const report = await runCheck('config/gateway.yaml');
 *   process.stdout.write(formatCheck(report)); // exit report.ok ? 0 : 1
 */
import { loadConfigFile } from './config/load.js';
import { ConfigError, type ConfigIssue } from './errors.js';
import { analyzeRoutes, type RouteFinding } from './routing/analyze-routes.js';
import { allowedClientTypes } from './authz/authorize.js';

export interface RouteRow {
  id: string;
  methods: string;
  path: string;
  scopes: string;
  client_types: string;
  room_binding: string;
  limits: string;
  upstream: string;
}

export interface CheckReport {
  ok: boolean;
  file: string;
  errors: ConfigIssue[];
  findings: RouteFinding[];
  routes: RouteRow[];
}

export async function runCheck(file: string): Promise<CheckReport> {
  let loaded;
  try {
    loaded = await loadConfigFile(file);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return { ok: false, file, errors: e.issues, findings: [], routes: [] };
  }
  const cfg = loaded.config;
  const findings = analyzeRoutes(cfg.routes, { fallback: cfg.fallback });
  const rl = cfg.rate_limit;
  const routes: RouteRow[] = loaded.routes.routes.map((r) => {
    const c = r.config;
    const limits: string[] = [];
    if (!c.public && rl.enabled) {
      const w = c.rate_limit ?? rl.default;
      limits.push(`${w.limit}/${w.window_s}s${c.rate_limit ? ' (own window)' : ''}`);
    }
    if (c.flood_control) limits.push(`flood ${c.flood_control.limit}/${c.flood_control.window_s}s per {${c.flood_control.param}}`);
    return {
      id: r.id,
      methods: r.methods ? [...r.methods].join(',') : '*',
      path: c.path,
      scopes: c.public ? 'public' : c.scopes_all ? `all of ${c.scopes_all.join(' ')}` : c.scopes ? `any of ${c.scopes.join(' ')}` : '(any valid token)',
      client_types: c.public ? '-' : allowedClientTypes(r).join(','),
      room_binding: c.room_param ? `{${c.room_param}}` : '-',
      limits: limits.join('; ') || '-',
      upstream: r.upstream,
    };
  });
  return { ok: !findings.some((f) => f.severity === 'error'), file: loaded.file ?? file, errors: [], findings, routes };
}

function table(rows: RouteRow[]): string {
  const cols = ['id', 'methods', 'path', 'scopes', 'client_types', 'room_binding', 'limits', 'upstream'] as const;
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]) => cells.map((s, i) => s.padEnd(width[i]!)).join('  ').trimEnd();
  return [line([...cols]), line(width.map((w) => '-'.repeat(w))), ...rows.map((r) => line(cols.map((c) => r[c])))].join('\n');
}

export function formatCheck(r: CheckReport): string {
  const out: string[] = [];
  if (r.errors.length) {
    out.push(`✗ ${r.file}: invalid config`);
    for (const e of r.errors) out.push(`  error  ${e.path || '(root)'}${e.line ? ` (line ${e.line})` : ''}: ${e.message}`);
    return `${out.join('\n')}\n`;
  }
  out.push(`${r.ok ? '✓' : '✗'} ${r.file}: ${r.routes.length} route(s)`, '', table(r.routes));
  if (r.findings.length) {
    out.push('');
    for (const f of r.findings) out.push(`  ${f.severity.padEnd(7)} routes[${f.index}] ${f.route}: ${f.message}`);
  }
  const errors = r.findings.filter((f) => f.severity === 'error').length;
  const warnings = r.findings.length - errors;
  out.push('', `${errors} error(s), ${warnings} warning(s)`);
  return `${out.join('\n')}\n`;
}
