import { describe, it, expect } from 'vitest';
import { Registry } from 'prom-client';
import { createMetrics, methodLabel, DURATION_BUCKETS } from './metrics.js';

const NAMES = [
  ['scopegate_requests_total', 'counter'],
  ['scopegate_request_duration_seconds', 'histogram'],
  ['scopegate_upstream_duration_seconds', 'histogram'],
  ['scopegate_upstream_errors_total', 'counter'],
  ['scopegate_auth_failures_total', 'counter'],
  ['scopegate_rate_limited_total', 'counter'],
  ['scopegate_rate_limit_store_errors_total', 'counter'],
  ['scopegate_token_cache_total', 'counter'],
  ['scopegate_jwks_refresh_total', 'counter'],
  ['scopegate_config_reloads_total', 'counter'],
  ['scopegate_inflight_requests', 'gauge'],
  ['scopegate_build_info', 'gauge'],
] as const;

/** Value of one sample in exposition text, by exact series selector (name + labels as printed). */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

describe('createMetrics', () => {
  it.each(NAMES)('exposes %s with HELP and TYPE %s', async (name, type) => {
    const m = createMetrics({ processMetrics: false });
    const text = await m.registry.metrics();
    expect(text).toMatch(new RegExp(`^# HELP ${name} \\S`, 'm'));
    expect(text).toContain(`# TYPE ${name} ${type}\n`);
  });

  it('gives every call its own registry, so two apps in one process do not collide', async () => {
    const a = createMetrics();
    const b = createMetrics();
    expect(a.registry).not.toBe(b.registry);
    a.tokenCache.inc({ result: 'hit' });
    expect(sample(await a.registry.metrics(), 'scopegate_token_cache_total{result="hit"}')).toBe(1);
    expect(sample(await b.registry.metrics(), 'scopegate_token_cache_total{result="hit"}')).toBe(0);
  });

  it('includes Node process metrics unless processMetrics is false', async () => {
    expect(await createMetrics().registry.metrics()).toContain('process_cpu_user_seconds_total');
    expect(await createMetrics({ processMetrics: false }).registry.metrics()).not.toContain('process_cpu');
  });

  it('registers on a given registry, and refuses to register twice on it', () => {
    const registry = new Registry();
    const m = createMetrics({ registry, processMetrics: false });
    expect(m.registry).toBe(registry);
    expect(registry.getSingleMetric('scopegate_requests_total')).toBeDefined();
    expect(() => createMetrics({ registry, processMetrics: false })).toThrow(/already been registered/);
  });

  it('sets build_info{version} to 1', async () => {
    const text = await createMetrics({ version: '1.2.3', processMetrics: false }).registry.metrics();
    expect(sample(text, 'scopegate_build_info{version="1.2.3"}')).toBe(1);
    const dflt = await createMetrics({ processMetrics: false }).registry.metrics();
    expect(sample(dflt, 'scopegate_build_info{version="unknown"}')).toBe(1);
  });

  it('uses the documented duration buckets for both histograms', async () => {
    const m = createMetrics({ processMetrics: false });
    m.observeRequest({ route: 'r', method: 'GET', status: 200, decision: 'allowed', seconds: 0.0003 });
    m.observeUpstream({ route: 'r', upstream: 'default', seconds: 0.0003 });
    const text = await m.registry.metrics();
    for (const le of DURATION_BUCKETS) {
      expect(sample(text, `scopegate_request_duration_seconds_bucket{le="${le}",route="r",decision="allowed"}`)).toBe(1);
      expect(sample(text, `scopegate_upstream_duration_seconds_bucket{le="${le}",route="r",upstream="default"}`)).toBe(1);
    }
    expect(DURATION_BUCKETS[0]).toBe(0.0005);
    expect(DURATION_BUCKETS.at(-1)).toBe(30);
  });

  it('starts closed-set counters at zero so rate() works from the first scrape', async () => {
    const text = await createMetrics({ processMetrics: false }).registry.metrics();
    for (const r of ['hit', 'miss', 'disabled']) expect(sample(text, `scopegate_token_cache_total{result="${r}"}`)).toBe(0);
    for (const r of ['success', 'error']) expect(sample(text, `scopegate_config_reloads_total{result="${r}"}`)).toBe(0);
  });
});

describe('observeRequest', () => {
  it('counts one request, its duration and its refusal reason exactly once', async () => {
    const m = createMetrics({ processMetrics: false });
    m.observeRequest({ route: 'rooms', method: 'POST', status: 403, decision: 'denied', seconds: 0.002, reason: 'scope_insufficient' });
    m.observeRequest({ route: 'rooms', method: 'POST', status: 403, decision: 'denied', seconds: 0.004, reason: 'scope_insufficient' });
    m.observeRequest({ route: 'rooms', method: 'GET', status: 200, decision: 'allowed', seconds: 0.02 });
    const text = await m.registry.metrics();
    expect(sample(text, 'scopegate_requests_total{route="rooms",method="POST",status="403",decision="denied"}')).toBe(2);
    expect(sample(text, 'scopegate_requests_total{route="rooms",method="GET",status="200",decision="allowed"}')).toBe(1);
    expect(sample(text, 'scopegate_request_duration_seconds_count{route="rooms",decision="denied"}')).toBe(2);
    expect(sample(text, 'scopegate_request_duration_seconds_sum{route="rooms",decision="denied"}')).toBeCloseTo(0.006, 9);
    expect(sample(text, 'scopegate_request_duration_seconds_count{route="rooms",decision="allowed"}')).toBe(1);
    expect(sample(text, 'scopegate_auth_failures_total{reason="scope_insufficient"}')).toBe(2);
    expect(text.match(/^scopegate_auth_failures_total\{/gm)).toHaveLength(1);
  });

  it.each([
    ['token_missing', 1],
    ['rate_limited', 1],
    ['store_unavailable', 1],
    ['route_not_found', 1],
    ['upstream_unavailable', 0],
    ['upstream_timeout', 0],
  ] as const)('counts reason %s in auth_failures %d time(s)', async (reason, expected) => {
    const m = createMetrics({ processMetrics: false });
    m.observeRequest({ route: 'r', method: 'GET', status: 500, decision: 'denied', seconds: 0, reason });
    const got = sample(await m.registry.metrics(), `scopegate_auth_failures_total{reason="${reason}"}`) ?? 0;
    expect(got).toBe(expected);
  });

  it('does not count a reason outside the closed code set (label values stay bounded)', async () => {
    const m = createMetrics({ processMetrics: false });
    // Simulates an untyped caller passing a raw string.
    m.observeRequest({ route: 'r', method: 'GET', status: 401, decision: 'denied', seconds: 0, reason: 'eyJhbGciOi' as never });
    expect(await m.registry.metrics()).not.toContain('eyJhbGciOi');
  });

  it('labels an unknown method OTHER', async () => {
    const m = createMetrics({ processMetrics: false });
    m.observeRequest({ route: 'unmatched', method: 'PROPFIND', status: 404, decision: 'denied', seconds: 0, reason: 'route_not_found' });
    const text = await m.registry.metrics();
    expect(sample(text, 'scopegate_requests_total{route="unmatched",method="OTHER",status="404",decision="denied"}')).toBe(1);
    expect(text).not.toContain('PROPFIND');
  });
});

describe('methodLabel', () => {
  it.each([
    ['GET', 'GET'],
    ['HEAD', 'HEAD'],
    ['POST', 'POST'],
    ['PUT', 'PUT'],
    ['PATCH', 'PATCH'],
    ['DELETE', 'DELETE'],
    ['OPTIONS', 'OPTIONS'],
    ['get', 'OTHER'],
    ['PROPFIND', 'OTHER'],
    ['BREW', 'OTHER'],
    ['', 'OTHER'],
  ])('maps %j to %s', (method, label) => {
    expect(methodLabel(method)).toBe(label);
  });
});

describe('observeUpstream', () => {
  it('records upstream duration and counts failures by reason', async () => {
    const m = createMetrics({ processMetrics: false });
    m.observeUpstream({ route: 'rooms', upstream: 'default', seconds: 0.01 });
    m.observeUpstream({ route: 'rooms', upstream: 'default', seconds: 30, error: 'upstream_timeout' });
    m.observeUpstream({ route: 'rooms', upstream: 'default', error: 'upstream_unavailable' });
    const text = await m.registry.metrics();
    expect(sample(text, 'scopegate_upstream_duration_seconds_count{route="rooms",upstream="default"}')).toBe(2);
    expect(sample(text, 'scopegate_upstream_errors_total{route="rooms",upstream="default",reason="upstream_timeout"}')).toBe(1);
    expect(sample(text, 'scopegate_upstream_errors_total{route="rooms",upstream="default",reason="upstream_unavailable"}')).toBe(1);
  });
});

describe('inflight', () => {
  it('goes up and down with inc/dec', async () => {
    const m = createMetrics({ processMetrics: false });
    m.inflight.inc();
    m.inflight.inc();
    m.inflight.dec();
    expect(sample(await m.registry.metrics(), 'scopegate_inflight_requests')).toBe(1);
  });
});

describe('countTokenCache', () => {
  it('hands each plain count to scopegate_token_cache_total once, at scrape time', async () => {
    const m = createMetrics({ processMetrics: false });
    m.countTokenCache('hit');
    m.countTokenCache('hit');
    m.countTokenCache('miss');
    let text = await m.registry.metrics();
    expect(sample(text, 'scopegate_token_cache_total{result="hit"}')).toBe(2);
    expect(sample(text, 'scopegate_token_cache_total{result="miss"}')).toBe(1);
    expect(sample(text, 'scopegate_token_cache_total{result="disabled"}')).toBe(0);
    m.countTokenCache('hit');
    text = await m.registry.metrics();
    // Counted once: the second scrape adds only what came after the first.
    expect(sample(text, 'scopegate_token_cache_total{result="hit"}')).toBe(3);
    expect(sample(text, 'scopegate_token_cache_total{result="miss"}')).toBe(1);
  });
});
