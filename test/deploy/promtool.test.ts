/**
 * Prometheus' own linter on what we ship: a live gateway's /metrics (after real traffic, so every
 * labelled series and histogram is present) passes `promtool check metrics`, and the chart's alert
 * rules pass `promtool check rules`. Skipped, visibly, where promtool is missing; a failure under
 * CI=true (scripts/ci-tools.sh installs Debian's prometheus package) unless SCOPEGATE_SKIP_PROMTOOL=1.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway.js';
import { hsToken, nowS } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { findTool, run, warnIfMissing } from './tools.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RULES = join(ROOT, 'helm/scopegate/files/prometheus-rules.yaml');
const promtool = findTool('promtool');
warnIfMissing(promtool);

it(`promtool is available (${promtool.status})`, () => {
  if (promtool.required) expect(promtool.path, `CI=true needs promtool, or ${promtool.skipVar}=1`).not.toBeNull();
});

describe.skipIf(!promtool.path)('promtool', () => {
  let up: Upstream;
  let gw: TestGateway;
  let exposition = '';

  beforeAll(async () => {
    up = await startUpstream();
    gw = await startTestGateway(baseConfig({ upstream: up.url, rateLimit: 'rate_limit: { default: { limit: 2, window_s: 60 } }' }));
    const token = await hsToken(TEST_SECRET, { iss: 'scopegate-test', aud: 'api', sub: 'u1', client_type: 'user', scope: 'view_group', exp: nowS() + 600 });
    const auth = { authorization: `Bearer ${token}` };
    // allowed, public, denied (no token, scope), auth_test, rate limited, unmatched.
    for (const [path, headers] of [
      ['/v2/room', auth],
      ['/v2/capabilities', {}],
      ['/v2/room', {}],
      ['/v2/room/1/history', auth],
      ['/v2/room?auth_test=true', auth],
      ['/v2/room', auth],
      ['/nope', auth],
    ] as const) {
      await (await fetch(`${gw.url}${path}`, { headers })).arrayBuffer();
    }
    const res = await fetch(`${gw.adminUrl!}/metrics`);
    expect(res.status).toBe(200);
    exposition = await res.text();
  });

  afterAll(async () => {
    await gw?.close();
    await up?.close();
  });

  it('the traffic produced the series promtool should see', () => {
    expect(exposition).toMatch(/^scopegate_requests_total\{[^}]*decision="allowed"/m);
    expect(exposition).toMatch(/^scopegate_rate_limited_total\{/m);
    expect(exposition).toMatch(/^scopegate_request_duration_seconds_bucket\{/m);
    expect(exposition).toMatch(/^process_cpu_seconds_total /m);
    expect(exposition).toMatch(/^nodejs_active_handles\{/m);
  });

  it('a live /metrics passes `promtool check metrics`', () => {
    const r = run(promtool.path!, ['check', 'metrics'], exposition);
    expect(`${r.stdout}${r.stderr}`).toBe('');
    expect(r.code).toBe(0);
  });

  it('promtool check metrics can fail: a gauge named like a counter is rejected', () => {
    const bad = '# HELP nodejs_active_handles_total Total.\n# TYPE nodejs_active_handles_total gauge\nnodejs_active_handles_total 3\n';
    const r = run(promtool.path!, ['check', 'metrics'], bad);
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/non-counter metrics should not have "_total" suffix/);
  });

  it('the shipped alert rules pass `promtool check rules`', () => {
    const r = run(promtool.path!, ['check', 'rules', RULES]);
    expect(r.stdout + r.stderr).toMatch(/SUCCESS: \d+ rules found/);
    expect(r.code).toBe(0);
  });
});
