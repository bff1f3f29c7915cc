/**
 * The admin listener's app (SPEC.md §6), served on its own port (default 9090), never on the
 * gateway port:
 * - `GET /metrics`  Prometheus text from the app's own registry;
 * - `GET /healthz`  200 `{"status":"ok"}` while the process can answer at all (liveness);
 * - `GET /readyz`   200 `{"status":"ready","checks":[...]}` when every readiness check passes,
 *                   503 `{"status":"not_ready","checks":[...]}` naming the failing ones,
 *                   503 `{"status":"shutting_down"}` once shutdown began (SIGTERM);
 * - anything else   404, JSON error envelope.
 * A readiness function that throws, rejects or takes longer than `readinessTimeoutMs` (2 s) is
 * "not ready", never a crash and never a hung probe.
 *
 * @example
 *   const admin = createAdminApp({
 *     metrics,
 *     readiness: async () => [{ name: 'config', ok: true }, { name: 'keys:idp', ok: keys.ready() }],
 *     isShuttingDown: () => draining,
 *   });
 *   serve({ fetch: admin.fetch, port: config.admin.port, hostname: config.admin.host });
 */
import { Hono } from 'hono';
import { GatewayError, renderError } from './errors.js';
import type { Metrics } from './observability/metrics.js';

/** One readiness condition (`config`, `keys:<issuer>`, `redis`, ...). */
export interface ReadinessCheck {
  name: string;
  ok: boolean;
  /** Why it is not ok; shown in /readyz. Must not contain secrets (e.g. a Redis URL's password). */
  error?: string;
}

export interface AdminDeps {
  metrics: Metrics;
  /** Runs every readiness check; called once per /readyz request. */
  readiness: () => Promise<ReadinessCheck[]>;
  /** True once shutdown began: /readyz then fails so load balancers stop sending traffic. */
  isShuttingDown?: () => boolean;
  /** Budget for `readiness()`, ms; slower counts as not ready. Default 2000 (set the probe's timeoutSeconds above it). */
  readinessTimeoutMs?: number;
}

export const DEFAULT_READINESS_TIMEOUT_MS = 2_000;

const NO_STORE = { 'cache-control': 'no-store' } as const;

/**
 * Builds the admin Hono app. Serve it with `@hono/node-server` on the admin port.
 *
 * @example
 *   const res = await createAdminApp({ metrics, readiness: async () => [] }).request('/readyz');
 *   // 200 {"status":"ready","checks":[]}
 */
export function createAdminApp(deps: AdminDeps): Hono {
  const timeoutMs = deps.readinessTimeoutMs ?? DEFAULT_READINESS_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new TypeError(`readinessTimeoutMs must be a positive number of milliseconds, got ${timeoutMs}`);
  }
  const { registry } = deps.metrics;
  const app = new Hono();

  app.get('/metrics', async (c) => {
    const text = await registry.metrics();
    return c.body(text, 200, { 'content-type': registry.contentType, ...NO_STORE });
  });

  app.get('/healthz', (c) => c.json({ status: 'ok' }, 200, NO_STORE));

  app.get('/readyz', async (c) => {
    if (deps.isShuttingDown?.()) return c.json({ status: 'shutting_down' }, 503, NO_STORE);
    const checks = await runReadiness(deps.readiness, timeoutMs);
    // Shutdown may have begun while the checks ran.
    if (deps.isShuttingDown?.()) return c.json({ status: 'shutting_down' }, 503, NO_STORE);
    const ready = checks.every((ch) => ch.ok);
    return c.json({ status: ready ? 'ready' : 'not_ready', checks }, ready ? 200 : 503, NO_STORE);
  });

  app.notFound(() => errorResponse(new GatewayError('route_not_found')));
  app.onError(() =>
    new Response(JSON.stringify({ error: { code: 500, message: 'Internal error', type: 'Internal Server Error' } }), {
      status: 500,
      headers: { 'content-type': 'application/json' },
    }),
  );
  return app;
}

function errorResponse(err: GatewayError): Response {
  const { status, headers, body } = renderError(err, { realm: 'scopegate-admin' });
  return new Response(body, { status, headers });
}

/** Runs the readiness function under a deadline; every failure becomes a failing check. */
async function runReadiness(readiness: () => Promise<ReadinessCheck[]>, timeoutMs: number): Promise<ReadinessCheck[]> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<ReadinessCheck[]>((resolve) => {
    timer = setTimeout(
      () => resolve([{ name: 'readiness', ok: false, error: `readiness checks did not finish within ${timeoutMs} ms` }]),
      timeoutMs,
    );
    timer.unref();
  });
  try {
    // `Promise.resolve().then` also turns a synchronous throw inside readiness() into a rejection.
    const checks = await Promise.race([Promise.resolve().then(readiness), deadline]);
    if (!Array.isArray(checks)) {
      return [{ name: 'readiness', ok: false, error: 'readiness function did not return a list of checks' }];
    }
    return checks.map((ch) => ({
      name: String(ch.name),
      ok: ch.ok === true,
      ...(ch.error !== undefined ? { error: String(ch.error) } : {}),
    }));
  } catch (e) {
    return [{ name: 'readiness', ok: false, error: e instanceof Error ? e.message : String(e) }];
  } finally {
    clearTimeout(timer);
  }
}
