/**
 * Every Prometheus metric scopegate exports, in one file (SPEC.md §6). Each call builds its own
 * prom-client `Registry`, so several apps in one process (tests, embedding) never collide on a
 * metric name.
 *
 * Label values stay bounded: `route` is a route id or `unmatched`, `reason` an `ErrorCode`, the
 * other labels closed sets typed below. Never a raw path, token or subject.
 *
 * @example
 *   const metrics = createMetrics({ version: '0.1.0' });
 *   metrics.inflight.inc();
 *   metrics.observeRequest({ route: 'send_notification', method: 'POST', status: 403,
 *     decision: 'denied', seconds: 0.0004, reason: 'scope_insufficient' });
 *   metrics.inflight.dec();
 *   res.end(await metrics.registry.metrics());
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ERROR_CODES, type ErrorCode } from '../errors.js';
import { HTTP_METHODS } from '../config/schema.js';

/** Outcome of one request, the `decision` label. A closed set. */
export const DECISIONS = ['allowed', 'public', 'auth_test', 'denied', 'upstream_error'] as const;
/**
 * `allowed`: authenticated and forwarded; `public`: a `public: true` route, forwarded;
 * `auth_test`: answered 202 by the gateway; `denied`: any other response the gateway wrote itself
 * (4xx/5xx refusals, including 429 and 503); `upstream_error`: 502/504 because the upstream failed.
 */
export type Decision = (typeof DECISIONS)[number];

/** `scopegate_rate_limited_total{kind}`: the per-token window or flood control. */
export type RateLimitKind = 'rate' | 'flood';
/** `scopegate_token_cache_total{result}`. */
export type TokenCacheResult = 'hit' | 'miss' | 'disabled';
const TOKEN_CACHE_RESULTS: readonly TokenCacheResult[] = ['hit', 'miss', 'disabled'];
/** `scopegate_jwks_refresh_total{result}`: `stale` = refresh failed, old keys kept serving. */
export type JwksRefreshResult = 'success' | 'error' | 'stale';
/** `scopegate_config_reloads_total{result}`. */
export type ConfigReloadResult = 'success' | 'error';
/** `scopegate_upstream_errors_total{reason}`. */
export type UpstreamErrorReason = Extract<ErrorCode, 'upstream_unavailable' | 'upstream_timeout'>;
/** `method` label value: a method routes can serve, else `OTHER`. */
export type MethodLabel = (typeof HTTP_METHODS)[number] | 'OTHER';

/**
 * Seconds. Resolves sub-millisecond gateway overhead (0.5 ms) up to the longest sensible upstream
 * wait (30 s, the default upstream timeout); slower requests land in +Inf.
 */
export const DURATION_BUCKETS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

/** One finished request, as the access-log middleware sees it. */
export interface RequestObservation {
  /** Route id, or `unmatched`. Never a raw path. */
  route: string;
  /** Request method as received; anything outside the known list is counted as `OTHER`. */
  method: string;
  status: number;
  decision: Decision;
  /** Wall time from request start to response headers/end, seconds. */
  seconds: number;
  /** The refusal code, when the gateway refused; counted in `scopegate_auth_failures_total`. */
  reason?: ErrorCode | undefined;
}

/** One upstream exchange (attempted), as the proxy sees it. */
export interface UpstreamObservation {
  route: string;
  /** Upstream name from config (`default`, ...). */
  upstream: string;
  /** Time until upstream response headers (or failure), seconds. Omit when not measured. */
  seconds?: number | undefined;
  /** Set when the upstream failed; counted in `scopegate_upstream_errors_total`. */
  error?: UpstreamErrorReason | undefined;
}

export interface Metrics {
  /** The registry holding all of the below; serve `registry.metrics()` with `registry.contentType`. */
  readonly registry: Registry;
  /** scopegate_requests_total */
  readonly requests: Counter<'route' | 'method' | 'status' | 'decision'>;
  /** scopegate_request_duration_seconds */
  readonly requestDuration: Histogram<'route' | 'decision'>;
  /** scopegate_upstream_duration_seconds */
  readonly upstreamDuration: Histogram<'route' | 'upstream'>;
  /** scopegate_upstream_errors_total; reason: UpstreamErrorReason */
  readonly upstreamErrors: Counter<'route' | 'upstream' | 'reason'>;
  /** scopegate_auth_failures_total; reason: ErrorCode */
  readonly authFailures: Counter<'reason'>;
  /** scopegate_rate_limited_total; kind: RateLimitKind */
  readonly rateLimited: Counter<'route' | 'kind'>;
  /** scopegate_rate_limit_store_errors_total; store: 'memory' | 'redis' */
  readonly rateLimitStoreErrors: Counter<'store'>;
  /** scopegate_token_cache_total; result: TokenCacheResult (counted with countTokenCache). */
  readonly tokenCache: Counter<'result'>;
  /** One token-cache lookup: a plain count on the request path, handed to tokenCache at scrape time. */
  countTokenCache(result: TokenCacheResult): void;
  /** scopegate_jwks_refresh_total; issuer: configured issuer name, result: JwksRefreshResult */
  readonly jwksRefresh: Counter<'issuer' | 'result'>;
  /** scopegate_config_reloads_total; result: ConfigReloadResult */
  readonly configReloads: Counter<'result'>;
  /** scopegate_internal_errors_total: unexpected exceptions (bugs), each answered 500 or with a closed socket. */
  readonly internalErrors: Counter<never>;
  /** scopegate_tokens_issued_total; dialect: hipchat|livedigital|standard, grant: the grant type. */
  readonly tokensIssued: Counter<'dialect' | 'grant'>;
  /** scopegate_token_errors_total; error: an RFC 6749 error code. */
  readonly tokenErrors: Counter<'error'>;
  /** scopegate_revocations_total */
  readonly revocations: Counter<never>;
  /** scopegate_store_errors_total; op: the token-store operation that failed. */
  readonly storeErrors: Counter<'op'>;
  /**
   * scopegate_denylist_entries: the token service's denylist registers `() => denylist.size` and
   * the gauge reads it at scrape time (the sum of every registered one; 0 without a token
   * service), so it costs nothing per request. `track` returns the unregister function.
   */
  readonly denylistEntries: { track(size: () => number): () => void };
  /** scopegate_inflight_requests: a plain count on the request path, read by the gauge at scrape time. */
  readonly inflight: { inc(): void; dec(): void };
  /** scopegate_build_info{version} = 1 */
  readonly buildInfo: Gauge<'version'>;
  /** Counts one finished request: requests_total, request_duration_seconds and, for refusals, auth_failures_total. */
  observeRequest(o: RequestObservation): void;
  /** Counts one upstream exchange: upstream_duration_seconds and, on failure, upstream_errors_total. */
  observeUpstream(o: UpstreamObservation): void;
}

export interface CreateMetricsOptions {
  /** Registry to register on. Default: a new one per call. Passing the same one twice throws (duplicate names). */
  registry?: Registry;
  /** Value of `scopegate_build_info{version}`. Default `unknown`. */
  version?: string;
  /** Register Node process metrics (prom-client `collectDefaultMetrics`). Default true. */
  processMetrics?: boolean;
}

const KNOWN_METHODS: ReadonlySet<string> = new Set(HTTP_METHODS);

/** prom-client default metrics that are gauges despite their `_total` suffix; not exported. */
const GAUGES_NAMED_LIKE_COUNTERS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** Codes that are upstream failures: they have their own counter, not auth_failures. */
const UPSTREAM_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['upstream_unavailable', 'upstream_timeout']);
/** Every gateway refusal code: the bounded value set of auth_failures_total{reason}. */
const REFUSAL_CODES: ReadonlySet<string> = new Set(ERROR_CODES.filter((c) => !UPSTREAM_CODES.has(c)));

/** One (route, method, status, decision) series of requests_total, with its not yet collected count. */
interface RequestSeries {
  count: { inc(n: number): void };
  pending: number;
  duration: { observe(v: number): void };
}

/** Maps a request method to a bounded label value (`get`, `PROPFIND`, ... → `OTHER`). */
export function methodLabel(method: string): MethodLabel {
  return KNOWN_METHODS.has(method) ? (method as MethodLabel) : 'OTHER';
}

/**
 * Builds scopegate's metrics on a fresh registry (or `opts.registry`).
 *
 * @example
 *   const metrics = createMetrics({ version: pkg.version, processMetrics: false });
 *   metrics.countTokenCache('hit');
 */
export function createMetrics(opts: CreateMetricsOptions = {}): Metrics {
  const registry = opts.registry ?? new Registry();
  const registers = [registry];

  if (opts.processMetrics !== false) {
    collectDefaultMetrics({ register: registry });
    // prom-client names three gauges like counters (`*_total`), which `promtool check metrics`
    // rejects and PromQL users misread (rate() over a gauge). Their per-type siblings
    // (nodejs_active_handles{type}, ...) stay: sum() of one is the dropped total.
    for (const name of GAUGES_NAMED_LIKE_COUNTERS) registry.removeSingleMetric(name);
  }

  // The two per-request counts are kept in plain numbers and handed to prom-client when it
  // collects (a scrape): its inc() validates and hashes the label set on every call, which on
  // the request path cost more than the count is worth. Histograms keep observing directly.
  const requestChildren = new Map<string, RequestSeries>();
  const requests = new Counter({
    name: 'scopegate_requests_total',
    help: 'Requests handled, by route id, method, status and decision (allowed|public|auth_test|denied|upstream_error).',
    labelNames: ['route', 'method', 'status', 'decision'] as const,
    registers,
    collect() {
      for (const series of requestChildren.values()) {
        if (series.pending === 0) continue;
        series.count.inc(series.pending);
        series.pending = 0;
      }
    },
  });
  const requestDuration = new Histogram({
    name: 'scopegate_request_duration_seconds',
    help: 'Time from request arrival to response, in seconds, by route id and decision.',
    labelNames: ['route', 'decision'] as const,
    buckets: [...DURATION_BUCKETS],
    registers,
  });
  const upstreamDuration = new Histogram({
    name: 'scopegate_upstream_duration_seconds',
    help: 'Time from forwarding a request until upstream response headers (or failure), in seconds.',
    labelNames: ['route', 'upstream'] as const,
    buckets: [...DURATION_BUCKETS],
    registers,
  });
  const upstreamErrors = new Counter({
    name: 'scopegate_upstream_errors_total',
    help: 'Upstream failures answered by the gateway, by reason (upstream_unavailable|upstream_timeout).',
    labelNames: ['route', 'upstream', 'reason'] as const,
    registers,
  });
  const authFailures = new Counter({
    name: 'scopegate_auth_failures_total',
    help: 'Requests refused by the gateway, by reason code (token_missing, scope_insufficient, rate_limited, ...).',
    labelNames: ['reason'] as const,
    registers,
  });
  const rateLimited = new Counter({
    name: 'scopegate_rate_limited_total',
    help: 'Requests refused with 429, by route id and kind (rate = per-token window, flood = flood control).',
    labelNames: ['route', 'kind'] as const,
    registers,
  });
  const rateLimitStoreErrors = new Counter({
    name: 'scopegate_rate_limit_store_errors_total',
    help: 'Rate-limit store operations that failed, by store (memory|redis).',
    labelNames: ['store'] as const,
    registers,
  });
  // Counted like requests_total: one lookup per request is a plain increment, not a label hash.
  const tokenCachePending: Record<TokenCacheResult, number> = { hit: 0, miss: 0, disabled: 0 };
  const tokenCache = new Counter({
    name: 'scopegate_token_cache_total',
    help: 'Verified-token cache lookups, by result (hit|miss|disabled).',
    labelNames: ['result'] as const,
    registers,
    collect() {
      for (const result of TOKEN_CACHE_RESULTS) {
        const n = tokenCachePending[result];
        if (n === 0) continue;
        this.inc({ result }, n);
        tokenCachePending[result] = 0;
      }
    },
  });
  const jwksRefresh = new Counter({
    name: 'scopegate_jwks_refresh_total',
    help: 'JWKS fetches, by issuer name and result (success|error|stale = failed but old keys kept serving).',
    labelNames: ['issuer', 'result'] as const,
    registers,
  });
  const configReloads = new Counter({
    name: 'scopegate_config_reloads_total',
    help: 'Config reloads (SIGHUP or watch), by result (success|error; on error the old config stays).',
    labelNames: ['result'] as const,
    registers,
  });
  const internalErrors = new Counter({
    name: 'scopegate_internal_errors_total',
    help: 'Unexpected exceptions in the gateway (bugs), each logged and answered with 500 internal_error or a closed socket.',
    registers,
  });
  const tokensIssued = new Counter({
    name: 'scopegate_tokens_issued_total',
    help: 'Tokens issued by the token service, by dialect (hipchat|livedigital|standard|api) and grant.',
    labelNames: ['dialect', 'grant'] as const,
    registers,
  });
  const tokenErrors = new Counter({
    name: 'scopegate_token_errors_total',
    help: 'Token-endpoint requests refused, by RFC 6749 error code.',
    labelNames: ['error'] as const,
    registers,
  });
  const revocations = new Counter({
    name: 'scopegate_revocations_total',
    help: 'Tokens revoked (sessions deleted, RFC 7009 revocations, refresh-token replays, deleted clients).',
    registers,
  });
  const storeErrors = new Counter({
    name: 'scopegate_store_errors_total',
    help: 'Token-store operations that failed, by operation.',
    labelNames: ['op'] as const,
    registers,
  });
  const denylistSizes = new Set<() => number>();
  new Gauge({
    name: 'scopegate_denylist_entries',
    help: 'Revoked tokens (jtis) held in the token service denylist of this process until their expiry.',
    registers,
    collect() {
      let n = 0;
      for (const size of denylistSizes) n += size();
      this.set(n);
    },
  });
  const denylistEntries = {
    track(size: () => number): () => void {
      if (typeof size !== 'function') throw new TypeError('denylistEntries.track: size must be a function');
      // A wrapper per call, so tracking the same function twice counts twice and untracks once each.
      const entry = () => size();
      denylistSizes.add(entry);
      return () => void denylistSizes.delete(entry);
    },
  };
  let inflightNow = 0;
  new Gauge({
    name: 'scopegate_inflight_requests',
    help: 'Requests currently being handled.',
    registers,
    collect() {
      this.set(inflightNow);
    },
  });
  const inflight = {
    inc: () => void inflightNow++,
    dec: () => void inflightNow--,
  };
  const buildInfo = new Gauge({
    name: 'scopegate_build_info',
    help: 'Always 1; the version label names the running scopegate build.',
    labelNames: ['version'] as const,
    registers,
  });
  buildInfo.set({ version: opts.version ?? 'unknown' }, 1);

  // Closed-set series start at 0, so rate() and absent-series alerts work from the first scrape.
  for (const result of TOKEN_CACHE_RESULTS) tokenCache.inc({ result }, 0);
  for (const result of ['success', 'error'] satisfies ConfigReloadResult[]) configReloads.inc({ result }, 0);
  internalErrors.inc(0);

  const upstreamChildren = new Map<string, { observe(v: number): void }>();

  return {
    registry,
    requests,
    requestDuration,
    upstreamDuration,
    upstreamErrors,
    authFailures,
    rateLimited,
    rateLimitStoreErrors,
    tokenCache,
    countTokenCache(result) {
      tokenCachePending[result]++;
    },
    jwksRefresh,
    configReloads,
    internalErrors,
    tokensIssued,
    tokenErrors,
    revocations,
    storeErrors,
    denylistEntries,
    inflight,
    buildInfo,
    observeRequest(o) {
      const method = methodLabel(o.method);
      // prom-client hashes a label object on every call; the labelled child is looked up once per
      // label combination (a bounded set: route ids × methods × statuses × decisions) and kept.
      const rk = `${o.route}\u0000${method}\u0000${o.status}\u0000${o.decision}`;
      let child = requestChildren.get(rk);
      if (!child) {
        child = {
          count: requests.labels({ route: o.route, method, status: String(o.status), decision: o.decision }),
          pending: 0,
          duration: requestDuration.labels({ route: o.route, decision: o.decision }),
        };
        requestChildren.set(rk, child);
      }
      child.pending++;
      child.duration.observe(o.seconds);
      // Runtime check as well as the type: a label value outside the code set would be unbounded.
      if (o.reason !== undefined && REFUSAL_CODES.has(o.reason)) authFailures.inc({ reason: o.reason });
    },
    observeUpstream(o) {
      if (o.seconds !== undefined) {
        const uk = `${o.route}\u0000${o.upstream}`;
        let child = upstreamChildren.get(uk);
        if (!child) {
          child = upstreamDuration.labels({ route: o.route, upstream: o.upstream });
          upstreamChildren.set(uk, child);
        }
        child.observe(o.seconds);
      }
      if (o.error !== undefined && UPSTREAM_CODES.has(o.error)) {
        upstreamErrors.inc({ route: o.route, upstream: o.upstream, reason: o.error });
      }
    },
  };
}
