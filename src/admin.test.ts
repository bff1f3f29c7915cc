import { describe, it, expect, afterEach } from 'vitest';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import { createAdminApp, type ReadinessCheck } from './admin.js';
import { createMetrics } from './observability/metrics.js';

const ready = async (): Promise<ReadinessCheck[]> => [
  { name: 'config', ok: true },
  { name: 'keys:local', ok: true },
];

function app(over: Partial<Parameters<typeof createAdminApp>[0]> = {}) {
  const metrics = createMetrics({ processMetrics: false, version: '9.9.9' });
  return { metrics, app: createAdminApp({ metrics, readiness: ready, ...over }) };
}

describe('GET /metrics', () => {
  it('serves the registry as Prometheus text with its content type', async () => {
    const { app: a, metrics } = app();
    metrics.observeRequest({ route: 'rooms', method: 'GET', status: 200, decision: 'allowed', seconds: 0.01 });
    const res = await a.request('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe(metrics.registry.contentType);
    const text = await res.text();
    expect(text).toContain('scopegate_build_info{version="9.9.9"} 1');
    expect(text).toContain('scopegate_requests_total{route="rooms",method="GET",status="200",decision="allowed"} 1');
  });
});

describe('GET /healthz', () => {
  it('answers 200 {"status":"ok"}', async () => {
    const res = await app().app.request('/healthz');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('answers HEAD with 200 and no body (probes may use HEAD)', async () => {
    const res = await app().app.request('/healthz', { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('');
  });

  it('stays 200 while shutting down (liveness is not readiness)', async () => {
    const res = await app({ isShuttingDown: () => true }).app.request('/healthz');
    expect(res.status).toBe(200);
  });
});

describe('GET /readyz', () => {
  it('answers 200 ready with the checks when every check is ok', async () => {
    const res = await app().app.request('/readyz');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      status: 'ready',
      checks: [
        { name: 'config', ok: true },
        { name: 'keys:local', ok: true },
      ],
    });
  });

  it('answers 503 not_ready naming the failing check', async () => {
    const res = await app({
      readiness: async () => [
        { name: 'config', ok: true },
        { name: 'redis', ok: false, error: 'connect ECONNREFUSED 127.0.0.1:6390' },
      ],
    }).app.request('/readyz');
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({
      status: 'not_ready',
      checks: [
        { name: 'config', ok: true },
        { name: 'redis', ok: false, error: 'connect ECONNREFUSED 127.0.0.1:6390' },
      ],
    });
  });

  it('answers 503 shutting_down once shutdown began, without running the checks', async () => {
    let calls = 0;
    const res = await app({
      isShuttingDown: () => true,
      readiness: async () => {
        calls++;
        return [];
      },
    }).app.request('/readyz');
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ status: 'shutting_down' });
    expect(calls).toBe(0);
  });

  it('answers 503 with the error message when the readiness function rejects', async () => {
    const res = await app({
      readiness: async () => {
        throw new Error('keys for issuer idp never loaded');
      },
    }).app.request('/readyz');
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({
      status: 'not_ready',
      checks: [{ name: 'readiness', ok: false, error: 'keys for issuer idp never loaded' }],
    });
  });

  it('answers 503 when the readiness function throws synchronously', async () => {
    const res = await app({
      readiness: () => {
        throw new Error('boom');
      },
    }).app.request('/readyz');
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ status: 'not_ready', checks: [{ ok: false, error: 'boom' }] });
  });

  it('answers 503 not_ready when the checks do not finish within the timeout', async () => {
    const res = await app({
      readinessTimeoutMs: 20,
      readiness: () => new Promise<ReadinessCheck[]>(() => {}),
    }).app.request('/readyz');
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({
      status: 'not_ready',
      checks: [{ name: 'readiness', ok: false, error: 'readiness checks did not finish within 20 ms' }],
    });
  });

  it('answers 200 ready with no checks configured', async () => {
    const res = await app({ readiness: async () => [] }).app.request('/readyz');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ready', checks: [] });
  });

  it('rejects a non-positive timeout at construction', () => {
    expect(() => app({ readinessTimeoutMs: 0 })).toThrow(TypeError);
  });
});

describe('anything else', () => {
  it.each([
    ['GET', '/'],
    ['GET', '/metricsx'],
    ['GET', '/v2/room'],
    ['POST', '/healthz'],
  ])('%s %s answers 404 JSON', async (method, path) => {
    const res = await app().app.request(path, { method });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await res.json()).toMatchObject({ error: { code: 404, type: 'Not Found', reason: 'route_not_found' } });
  });
});

describe('over a real socket', () => {
  let close: (() => Promise<void>) | undefined;
  afterEach(async () => {
    await close?.();
    close = undefined;
  });

  it('serves /healthz, /readyz and /metrics through @hono/node-server', async () => {
    let shuttingDown = false;
    const { app: a } = app({ isShuttingDown: () => shuttingDown });
    const port = await new Promise<number>((resolve) => {
      const server = serve({ fetch: a.fetch, port: 0, hostname: '127.0.0.1' }, (info: AddressInfo) => resolve(info.port));
      close = () => new Promise<void>((r) => server.close(() => r()));
    });
    const base = `http://127.0.0.1:${port}`;

    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });

    const readyRes = await fetch(`${base}/readyz`);
    expect(readyRes.status).toBe(200);
    expect(await readyRes.json()).toMatchObject({ status: 'ready' });

    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await metrics.text()).toContain('# TYPE scopegate_requests_total counter');

    shuttingDown = true;
    const draining = await fetch(`${base}/readyz`);
    expect(draining.status).toBe(503);
    expect(await draining.json()).toEqual({ status: 'shutting_down' });

    const missing = await fetch(`${base}/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { reason: 'route_not_found' } });
  });
});
