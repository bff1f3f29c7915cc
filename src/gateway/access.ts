/**
 * The one access line per request, and the request metrics, written in one place for every door
 * (SPEC §6): request id, method, path with the token redacted (observability/logger.ts'
 * redactUrl), route, status, decision, reason, durations, token id or subject, client ip. Fields
 * taken from the request or the token are redacted and clipped to 256 bytes; no token ever appears.
 *
 * @example
 *   const access = createAccessLog({ logger, metrics, clock, tokenParam: 'auth_token' });
 *   const rec = access.start({ requestId, method: 'GET', url: '/v2/room?auth_token=…', clientIp: '10.0.0.7' });
 *   … rec.status = 200; rec.decision = 'allowed'; rec.route = route; rec.principal = p;
 *   access.finish(rec);
 */
import { clip } from '../clip.js';
import type { ErrorCode } from '../errors.js';
import { accessLogger, logField, redactUrl, type Logger } from '../observability/logger.js';
import type { Decision as DecisionLabel, Metrics } from '../observability/metrics.js';
import type { Clock, CompiledRoute, Principal } from '../types.js';

/** What one request did, filled in by the door as it goes. Every field exists from the start (one object shape). */
export interface AccessRecord {
  requestId: string;
  startMs: number;
  method: string;
  /** The request target as received (redacted and clipped when written). */
  url: string | undefined;
  clientIp: string;
  route: CompiledRoute | null;
  /** A bounded id for requests no route answered (the token service's `token_hipchat`, `jwks`, …). */
  routeId: string | undefined;
  principal: Principal | undefined;
  limitKey: string | undefined;
  decision: DecisionLabel;
  reason: ErrorCode | undefined;
  status: number | undefined;
  upstreamMs: number | undefined;
  /** Operator-facing detail of a refusal made before the decision (parser errors, …). */
  why: string | undefined;
}

export interface AccessLog {
  start(r: { requestId: string; method: string; url: string | undefined; clientIp: string }): AccessRecord;
  /** Counts the request in the metrics and writes its access line. */
  finish(rec: AccessRecord, status?: number): void;
}

const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

/** The request id of a request: a valid incoming X-Request-Id is kept, else a new UUID. */
export function requestIdOf(given: string | string[] | undefined): string {
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : globalThis.crypto.randomUUID();
}


/** A request- or token-derived access-line field: redacted and clipped. */
function untrusted(v: string | undefined): string | undefined {
  return v === undefined ? undefined : logField(v);
}

export function createAccessLog(deps: { logger: Logger; metrics: Metrics; clock: Clock; tokenParam: string }): AccessLog {
  const { metrics, clock } = deps;
  const access = accessLogger(deps.logger);
  const redactParams = [deps.tokenParam];
  return {
    start: (r) => ({
      requestId: r.requestId,
      startMs: clock(),
      method: r.method,
      url: r.url,
      clientIp: r.clientIp,
      route: null,
      routeId: undefined,
      principal: undefined,
      limitKey: undefined,
      decision: 'denied',
      reason: undefined,
      status: undefined,
      upstreamMs: undefined,
      why: undefined,
    }),
    finish(rec, fallbackStatus) {
      const status = rec.status ?? fallbackStatus ?? 0;
      const elapsedMs = clock() - rec.startMs;
      const routeId = rec.route?.id ?? rec.routeId ?? 'unmatched';
      metrics.observeRequest({ route: routeId, method: rec.method, status, decision: rec.decision, seconds: elapsedMs / 1000, reason: rec.reason });
      if (!access.isLevelEnabled('info')) return;
      const p = rec.principal;
      // Every field taken from the request or the token is redacted (anything token-shaped,
      // percent-decoded too) and clipped to 256 bytes; the path by redactUrl, which keeps the rest
      // of it readable. route, decision and reason are the gateway's own words: not scanned.
      access.info(
        {
          request_id: untrusted(rec.requestId),
          method: untrusted(clip(rec.method, 32)),
          path: rec.url === undefined ? undefined : clip(redactUrl(rec.url, redactParams)),
          route: routeId,
          status,
          decision: rec.decision,
          reason: rec.reason,
          why: untrusted(rec.why),
          duration_ms: Math.round(elapsedMs * 1000) / 1000,
          upstream_ms: rec.upstreamMs,
          token_id: untrusted(p?.tokenId),
          subject: untrusted(p?.subject),
          client_type: untrusted(p?.clientType),
          limit_key: untrusted(rec.limitKey),
          client_ip: untrusted(rec.clientIp),
        },
        'request',
      );
    },
  };
}
