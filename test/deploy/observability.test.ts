/**
 * The Grafana dashboard and the Prometheus alert rules shipped with the chart query only metrics
 * (and label values) scopegate really exports (SPEC §6), and cover what an operator needs to see.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ERROR_CODES } from '../../src/errors.js';
import { createMetrics } from '../../src/observability/metrics.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (p: string) => readFileSync(join(ROOT, p), 'utf8');

/** SPEC §6: every metric scopegate exports besides Node's process metrics. */
const COUNTERS_AND_GAUGES = [
  'scopegate_requests_total',
  'scopegate_upstream_errors_total',
  'scopegate_auth_failures_total',
  'scopegate_rate_limited_total',
  'scopegate_rate_limit_store_errors_total',
  'scopegate_token_cache_total',
  'scopegate_jwks_refresh_total',
  'scopegate_config_reloads_total',
  'scopegate_inflight_requests',
  'scopegate_build_info',
];
const HISTOGRAMS = ['scopegate_request_duration_seconds', 'scopegate_upstream_duration_seconds'];
const ALLOWED = new Set([...COUNTERS_AND_GAUGES, ...HISTOGRAMS.flatMap((h) => [`${h}_bucket`, `${h}_sum`, `${h}_count`])]);

/** Closed label-value sets that expressions may match on. */
const LABEL_VALUES: Record<string, readonly string[]> = {
  decision: ['allowed', 'public', 'auth_test', 'denied', 'upstream_error'],
  reason: ERROR_CODES,
  result: ['hit', 'miss', 'disabled', 'success', 'error', 'stale'],
  kind: ['rate', 'flood'],
};

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan']);

/** Metric names a PromQL expression selects (functions, keywords, labels, ranges and numbers removed). */
function metricNames(expr: string): string[] {
  const s = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/(?<![\w:])\d+(\.\d+)?(e[+-]?\d+)?(?![\w:])/gi, ' ');
  const names: string[] = [];
  for (const m of s.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const after = s.slice(m.index + m[0].length).trimStart();
    if (after.startsWith('(') || KEYWORDS.has(m[0].toLowerCase())) continue;
    names.push(m[0]);
  }
  return names;
}

/** Label matchers on closed sets whose values are not in the set, e.g. `decision="alowed"`. */
function unknownLabelValues(expr: string): string[] {
  const bad: string[] = [];
  for (const m of expr.matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"/g)) {
    const allowed = LABEL_VALUES[m[1]!];
    if (!allowed) continue;
    const values = m[2]!.includes('~') ? m[3]!.split('|') : [m[3]!];
    for (const v of values) if (/^\w+$/.test(v) && !allowed.includes(v)) bad.push(`${m[1]}="${v}"`);
  }
  return bad;
}

function unknownMetrics(expr: string): string[] {
  return metricNames(expr).filter((n) => !ALLOWED.has(n));
}

describe('PromQL checkers', () => {
  it.each([
    ['sum by (decision) (rate(scopegate_requests_total{job=~"$job"}[$__rate_interval]))', ['scopegate_requests_total']],
    ['histogram_quantile(0.99, sum by (le) (rate(scopegate_request_duration_seconds_bucket[5m]))) > 1', ['scopegate_request_duration_seconds_bucket']],
    ['a_total / on(job) group_left b_info > 0.5 unless up == 0', ['a_total', 'b_info', 'up']],
  ])('finds the metrics of %s', (expr, names) => {
    expect(metricNames(expr)).toEqual(names);
  });

  it('rejects metrics scopegate does not export and misspelt label values', () => {
    expect(unknownMetrics('up{job="x"} == 0 or scopegate_requests_total')).toEqual(['up']);
    expect(unknownMetrics('rate(scopegate_request_duration_seconds[5m])')).toEqual(['scopegate_request_duration_seconds']);
    expect(unknownLabelValues('x{decision=~"allowed|alowed", reason="token_expird", route="a"}')).toEqual([
      'decision="alowed"',
      'reason="token_expird"',
    ]);
  });
});

describe('metric names', () => {
  it('the SPEC list matches what createMetrics registers', async () => {
    const { registry } = createMetrics({ processMetrics: false });
    const registered = new Map((await registry.getMetricsAsJSON()).map((m) => [m.name, String(m.type)]));
    for (const n of COUNTERS_AND_GAUGES) expect(registered.has(n), n).toBe(true);
    for (const h of HISTOGRAMS) expect(registered.get(h), h).toBe('histogram');
  });
});

interface Target {
  expr?: string;
}
interface Panel {
  id?: number;
  type: string;
  title?: string;
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: unknown; definition?: string }[] };
}

describe('grafana dashboard', () => {
  const dashboard = JSON.parse(read('helm/scopegate/files/grafana-dashboard.json')) as Dashboard;
  const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
  const exprs = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title ?? '', expr: t.expr ?? '' })));
  const variableQueries = dashboard.templating.list.filter((v) => v.type === 'query').map((v) => v.definition ?? '');

  it('parses and has a stable uid, unique panel ids and a Prometheus data source variable', () => {
    expect(dashboard.uid).toBe('scopegate-overview');
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(dashboard.templating.list).toContainEqual(expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' }));
    expect(exprs.length).toBeGreaterThan(10);
  });

  it('queries only metrics and label values scopegate exports', () => {
    for (const { panel, expr } of exprs) {
      expect(unknownMetrics(expr), `${panel}: ${expr}`).toEqual([]);
      expect(unknownLabelValues(expr), `${panel}: ${expr}`).toEqual([]);
    }
    for (const q of variableQueries) {
      const inner = /label_values\((.*),\s*\w+\)$/.exec(q)?.[1] ?? q;
      expect(unknownMetrics(inner), q).toEqual([]);
    }
  });

  it.each([
    ['requests by decision', /sum by \(decision\) \(rate\(scopegate_requests_total/],
    ['latency p50', /histogram_quantile\(0\.5, sum by \(le\) \(rate\(scopegate_request_duration_seconds_bucket/],
    ['latency p95', /histogram_quantile\(0\.95, sum by \(le\) \(rate\(scopegate_request_duration_seconds_bucket/],
    ['latency p99', /histogram_quantile\(0\.99, sum by \(le\) \(rate\(scopegate_request_duration_seconds_bucket/],
    ['auth failures by reason', /sum by \(reason\) \(rate\(scopegate_auth_failures_total/],
    ['429s by route', /sum by \(route, kind\) \(rate\(scopegate_rate_limited_total/],
    ['upstream errors', /scopegate_upstream_errors_total/],
    ['token-cache hit ratio', /scopegate_token_cache_total\{[^}]*result="hit"[^}]*\}[\s\S]*\/[\s\S]*scopegate_token_cache_total/],
    ['config reloads', /scopegate_config_reloads_total/],
    ['inflight requests', /scopegate_inflight_requests/],
  ])('shows %s', (_what, pattern) => {
    expect(exprs.some((e) => pattern.test(e.expr))).toBe(true);
  });
});

interface Rule {
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

describe('prometheus rules', () => {
  const doc = parse(read('helm/scopegate/files/prometheus-rules.yaml')) as { groups: { name: string; rules: Rule[] }[] };
  const rules = doc.groups.flatMap((g) => g.rules);

  it('are alerting rules with a severity, a summary and unique names', () => {
    expect(rules.length).toBeGreaterThan(0);
    for (const r of rules) {
      expect(r.alert).toMatch(/^Scopegate[A-Z]\w+$/);
      expect(['critical', 'warning']).toContain(r.labels?.severity);
      expect(r.annotations?.summary).toBeTruthy();
      if (r.for !== undefined) expect(r.for).toMatch(/^\d+[smh]$/);
    }
    const names = rules.map((r) => r.alert);
    expect(new Set(names).size).toBe(names.length);
  });

  it('reference only metrics and label values scopegate exports', () => {
    for (const r of rules) {
      expect(unknownMetrics(r.expr), `${r.alert}: ${r.expr}`).toEqual([]);
      expect(unknownLabelValues(r.expr), `${r.alert}: ${r.expr}`).toEqual([]);
      expect(metricNames(r.expr).length, r.alert).toBeGreaterThan(0);
    }
  });

  it.each([
    ['the 5xx error rate', /scopegate_requests_total\{status=~"5\.\."\}/],
    ['upstream 5xx', /scopegate_requests_total\{decision=~"allowed\|public", status=~"5\.\."\}/],
    ['upstream connection errors', /scopegate_upstream_errors_total/],
    ['keys_unavailable', /scopegate_auth_failures_total\{reason="keys_unavailable"\}/],
    ['rate-limit store errors', /scopegate_rate_limit_store_errors_total/],
    ['config reload errors', /scopegate_config_reloads_total\{result="error"\}/],
  ])('alert on %s', (_what, pattern) => {
    expect(rules.some((r) => pattern.test(r.expr))).toBe(true);
  });

  it('are what the PrometheusRule template loads', () => {
    const tpl = read('helm/scopegate/templates/prometheusrule.yaml');
    expect(tpl).toContain('.Files.Get "files/prometheus-rules.yaml" | fromYaml');
    expect(read('helm/scopegate/templates/grafana-dashboard.yaml')).toContain('.Files.Get "files/grafana-dashboard.json"');
  });
});
