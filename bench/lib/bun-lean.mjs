// The least a gateway doing the rig's job can do on Bun, written tight, to tell what the issue-11
// bars ask of the Bun door: Bun.serve + Bun's fetch (as bench/lib/bun-floor.mjs) plus the work the
// door must do per request, each part as cheap as it can be written with the project's libraries:
//   - a request id (incoming X-Request-Id checked, else crypto.randomUUID) and the client ip;
//   - the token from `Authorization: Bearer` or `?auth_token=`, verified with jose on a cache miss
//     (lru-cache of verified tokens; exp checked on every hit), iss / aud / exp;
//   - the route table (bench/routes.json's two routes), scope and client_type checks;
//   - a fixed-window rate limit per token (a Map), with the X-RateLimit-* response headers;
//   - the upstream headers: incoming minus hop-by-hop and Authorization, X-Forwarded-*,
//     X-Request-Id and identity headers;
//   - a timeout on the upstream exchange and client abort (an AbortController);
//   - the metrics: prom-client request counter and two duration histograms with scopegate's labels;
//   - one JSON access line per request (pino, as the door, or LOG=raw: a string batch to stdout).
// Errors are bare JSON bodies with the right statuses (enough for the rig's checks). It is a
// measuring stick, not a product: no config, no reload, no redaction scan, no body timeouts.
//
// Runs as the shared rig's `gateway` contestant:
//   GATEWAY_CMD='exec /path/to/scopegate/node_modules/.bin/bun /path/to/scopegate/bench/lib/bun-lean.mjs' ./run.sh gateway
// Knobs: LOG=pino|raw|none (pino), METRICS=prom|none (prom). PORT, UPSTREAM_URL, BENCH_ALG,
// JWT_SECRET_FILE, JWT_PUBLIC_KEY_FILE come from the rig's environment.
// DOOR=decide,headers,forward,access swaps in the Bun door's own part for the lean one (from
// SCOPEGATE_DIST, default ../../dist; CFG: the rig's scopegate-<alg>.yaml, with BENCH_HS_SECRET
// set), one at a time or together, so an A/B against the plain lean prices each part:
//   decide   core/decide.ts (route table, token, verification cache, authorization, rate limit)
//   headers  proxy/upstream-headers.ts buildUpstreamHeaders from a header record
//   forward  doors/bun/forward.ts (timeouts, abort, body buffering) with the door's own headers
//   access   gateway/access.ts (access line through the door's logger, with redaction, + metrics)
// TIME_DECIDE=1 prints to stderr, every 2 s, the mean time of the decision (the lean one or the
// door's) measured inside the running server: its cost under load, not in a tight loop.
// What it measured, and the A/Bs: bench/RIG-RESULTS.md, seventh session.
/* global Bun */
import { readFileSync } from 'node:fs';
import { createPublicKey } from 'node:crypto';
import { jwtVerify } from 'jose';
import { LRUCache } from 'lru-cache';
import pino from 'pino';
import { Counter, Histogram, Registry } from 'prom-client';

const HOP = ['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'authorization'];
const upstream = process.env.UPSTREAM_URL;
const alg = (process.env.BENCH_ALG ?? 'hs256').toUpperCase();
const key = alg === 'HS256' ? new TextEncoder().encode(readFileSync(process.env.JWT_SECRET_FILE, 'utf8').trim()) : createPublicKey(readFileSync(process.env.JWT_PUBLIC_KEY_FILE));
const LOG = process.env.LOG ?? 'pino';
const METRICS = process.env.METRICS ?? 'prom';
const LIMIT = 1_000_000;
const WINDOW_MS = 60_000;
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

const DOOR = new Set((process.env.DOOR ?? '').split(',').filter(Boolean));
for (const d of DOOR) if (!['decide', 'headers', 'forward', 'access'].includes(d)) throw new TypeError(`bun-lean: unknown DOOR part "${d}"`);
const dist = process.env.SCOPEGATE_DIST ?? new URL('../../dist', import.meta.url).pathname;
const door = {};
if (DOOR.size > 0) {
  const [{ loadConfigFile }, { buildCoreGeneration }, { createLogger }, { createMetrics }, up, { createBunForwarder }, access, errors] = await Promise.all(
    ['config/load.js', 'gateway/generation.js', 'observability/logger.js', 'observability/metrics.js', 'proxy/upstream-headers.js', 'doors/bun/forward.js', 'gateway/access.js', 'errors.js'].map((m) => import(`${dist}/${m}`)),
  );
  const loaded = await loadConfigFile(process.env.CFG);
  const clock = () => Date.now();
  const logger = createLogger();
  const metrics = createMetrics({ version: 'lean' });
  const g = await buildCoreGeneration(loaded, undefined, { clock, logger, metrics, host: undefined });
  door.decider = g.decider;
  door.buildUpstreamHeaders = up.buildUpstreamHeaders;
  door.forwarder = createBunForwarder(loaded.config.upstreams, { render: (e) => errors.renderError(e, {}), clock, bodyIdleTimeoutMs: loaded.config.listen.body_idle_timeout_ms });
  door.access = access.createAccessLog({ logger, metrics, clock, tokenParam: 'auth_token' });
}

const TIME = process.env.TIME_DECIDE === '1';
let decideMs = 0;
let decideN = 0;
/** Adds one decision's time (from dt0) to the TIME_DECIDE mean. */
function timed(dt0) {
  if (!TIME) return;
  decideMs += performance.now() - dt0;
  decideN++;
}
if (TIME) {
  setInterval(() => {
    if (decideN) console.error(`decide: ${((decideMs * 1000) / decideN).toFixed(2)} us over ${decideN}`);
    decideMs = 0;
    decideN = 0;
  }, 2000).unref();
}

const routes = [
  { id: 'GET /v2/room/{room_id_or_name}', method: 'GET', re: /^\/v2\/room\/([^/]+)$/, scope: 'view_room', clients: new Set(['group', 'room', 'user']) },
  { id: 'POST /v2/room/{room_id_or_name}/notification', method: 'POST', re: /^\/v2\/room\/([^/]+)\/notification$/, scope: 'send_notification', clients: new Set(['room', 'user']) },
];

const cache = new LRUCache({ max: 10_000 });
const windows = new Map();

const registry = new Registry();
const requests = new Counter({ name: 'lean_requests_total', help: 'requests', labelNames: ['route', 'method', 'status', 'decision'], registers: [registry] });
const requestDuration = new Histogram({ name: 'lean_request_duration_seconds', help: 'd', labelNames: ['route', 'decision'], registers: [registry] });
const upstreamDuration = new Histogram({ name: 'lean_upstream_duration_seconds', help: 'd', labelNames: ['route', 'upstream'], registers: [registry] });

const log =
  LOG === 'pino'
    ? (() => {
        const boom = pino.destination({ dest: 1, sync: false, minLength: 4096 });
        return pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime }, boom);
      })()
    : undefined;
let batch = '';
const flush = () => {
  if (batch) process.stdout.write(batch);
  batch = '';
};
if (LOG === 'raw') setInterval(flush, 250).unref();

function accessLine(f) {
  if (LOG === 'pino') log.info(f, 'request');
  else if (LOG === 'raw') {
    batch += `{"time":"${new Date().toISOString()}",${JSON.stringify(f).slice(1, -1)},"msg":"request"}\n`;
    if (batch.length > 4096) flush();
  }
}

function fail(status, error, rid) {
  return new Response(JSON.stringify({ error: { code: status, message: error, type: status === 401 ? 'Unauthorized' : 'Forbidden' } }), {
    status,
    headers: { 'content-type': 'application/json', 'x-request-id': rid },
  });
}

async function principalOf(token, now) {
  let p = cache.get(token);
  if (p === undefined) {
    try {
      const { payload } = await jwtVerify(token, key, { issuer: 'bench', audience: 'api', algorithms: [alg] });
      const scopes = String(payload.scope ?? '').split(' ');
      p = { sub: String(payload.sub), clientType: String(payload.client_type), scopes: new Set(scopes), expMs: payload.exp * 1000 };
      // What the door's parts take (types.ts Principal), for DOOR=headers / access.
      p.principal = { issuerName: 'bench', iss: 'bench', subject: p.sub, clientType: p.clientType, scopes, exp: payload.exp };
      cache.set(token, p);
    } catch {
      return undefined;
    }
  }
  return p.expMs > now ? p : undefined;
}

Bun.serve({
  hostname: process.env.HOST ?? '127.0.0.1',
  port: Number(process.env.PORT),
  development: false,
  async fetch(req, server) {
    const t0 = performance.now();
    const given = req.headers.get('x-request-id');
    const rid = given !== null && REQUEST_ID.test(given) ? given : crypto.randomUUID();
    const ip = server.requestIP(req)?.address ?? '';
    const url = req.url;
    const target = url.slice(url.indexOf('/', url.indexOf('//') + 2));
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    const rec = DOOR.has('access') ? door.access.start({ requestId: rid, method: req.method, url: target, clientIp: ip }) : undefined;
    let route;
    let status;
    let decision = 'denied';
    let p;
    let res;
    let upstreamMs;
    let token;
    let rlHeaders;
    let pathAndQuery = target;
    let routeId;
    if (DOOR.has('decide')) {
      const auth = req.headers.get('authorization');
      const dt0 = performance.now();
      let d = door.decider.decide({ method: req.method, target, authorization: auth === null ? undefined : [auth], hostCount: 1, clientIp: ip });
      if (d instanceof Promise) d = await d;
      timed(dt0);
      routeId = d.route?.id ?? 'unmatched';
      if (d.kind !== 'forward') {
        const r = door.decider.render(d);
        res = new Response(r.body, { status: (status = r.status), headers: { ...r.headers, 'x-request-id': rid } });
      } else {
        route = d.route;
        p = d.principal;
        token = d.token;
        rlHeaders = d.responseHeaders;
        pathAndQuery = d.pathAndQuery;
      }
      if (rec) {
        rec.route = d.route;
        rec.principal = d.principal;
        rec.limitKey = d.limitKey;
      }
    } else {
      const dt0 = performance.now();
      for (const r of routes) if (r.method === req.method && r.re.test(path)) route = r;
      routeId = route?.id ?? 'unmatched';
      if (route === undefined) res = fail((status = 404), 'not found', rid);
      else {
        const auth = req.headers.get('authorization');
        token = auth !== null && auth.startsWith('Bearer ') ? auth.slice(7) : undefined;
        if (token === undefined && q >= 0) token = new URLSearchParams(target.slice(q + 1)).get('auth_token') ?? undefined;
        const now = Date.now();
        const lp = token === undefined ? undefined : await principalOf(token, now);
        if (lp === undefined) res = fail((status = 401), 'Invalid OAuth session', rid);
        else if (!lp.scopes.has(route.scope) || !route.clients.has(lp.clientType)) res = fail((status = 403), 'forbidden', rid);
        else {
          const w = windows.get(token);
          const start = now - (now % WINDOW_MS);
          let count;
          if (w === undefined || w.start !== start) windows.set(token, { start, count: (count = 1) });
          else count = ++w.count;
          if (count > LIMIT) res = fail((status = 429), 'rate limited', rid);
          else {
            p = lp.principal;
            rlHeaders = { 'x-ratelimit-limit': String(LIMIT), 'x-ratelimit-remaining': String(LIMIT - count), 'x-ratelimit-reset': String((start + WINDOW_MS) / 1000) };
          }
        }
        timed(dt0);
        if (rec) {
          rec.route = { id: routeId };
          rec.principal = lp?.principal;
          rec.limitKey = lp?.sub;
        }
      }
    }
    if (res === undefined) {
      let headers = {};
      req.headers.forEach((v, k) => {
        headers[k] = v;
      });
      const host = headers.host;
      if (DOOR.has('headers')) {
        headers = door.buildUpstreamHeaders(headers, { identityPrefix: 'X-Auth-', principal: p, token, forwardToken: false, requestId: rid, clientIp: ip, proto: 'http', host, trustedPeer: false, underscoreHeaders: 'drop' });
      } else {
        for (const h of HOP) delete headers[h];
        headers['x-forwarded-for'] = ip;
        headers['x-forwarded-proto'] = 'http';
        if (host !== undefined) headers['x-forwarded-host'] = host;
        headers['x-request-id'] = rid;
        headers['x-auth-subject'] = p.subject;
        headers['x-auth-client-type'] = p.clientType;
        headers['x-auth-scopes'] = p.scopes.join(' ');
      }
      if (DOOR.has('forward')) {
        const result = await door.forwarder.forward(req, { upstream: 'default', pathAndQuery, headers, responseHeaders: { 'x-request-id': rid, ...rlHeaders } });
        res = result.response;
        status = result.status;
        upstreamMs = result.upstreamMs;
        decision = result.error ? 'upstream_error' : 'allowed';
      } else {
        const ac = new AbortController();
        const timer = setTimeout(() => ac.abort('timeout'), 30_000);
        const onAbort = () => ac.abort(req.signal.reason);
        req.signal.addEventListener('abort', onAbort, { once: true });
        const u0 = performance.now();
        try {
          const up = await fetch(upstream + pathAndQuery, { method: req.method, headers, body: null, redirect: 'manual', decompress: false, signal: ac.signal });
          upstreamMs = performance.now() - u0;
          const out = new Headers(up.headers);
          for (const h of HOP) out.delete(h);
          out.set('x-request-id', rid);
          for (const k in rlHeaders) out.set(k, rlHeaders[k]);
          res = new Response(up.body, { status: (status = up.status), headers: out });
          decision = 'allowed';
        } catch {
          res = fail((status = 502), 'upstream unavailable', rid);
          decision = 'upstream_error';
        } finally {
          clearTimeout(timer);
          req.signal.removeEventListener('abort', onAbort);
        }
      }
    }
    if (rec) {
      rec.status = status;
      rec.decision = decision;
      rec.upstreamMs = upstreamMs;
      door.access.finish(rec, status);
      return res;
    }
    const ms = performance.now() - t0;
    if (METRICS === 'prom') {
      requests.inc({ route: routeId, method: req.method, status, decision });
      requestDuration.observe({ route: routeId, decision }, ms / 1000);
      if (upstreamMs !== undefined) upstreamDuration.observe({ route: routeId, upstream: 'default' }, upstreamMs / 1000);
    }
    accessLine({
      request_id: rid,
      method: req.method,
      path: target,
      route: routeId,
      status,
      decision,
      duration_ms: Math.round(ms * 1000) / 1000,
      upstream_ms: upstreamMs,
      subject: p?.subject,
      client_type: p?.clientType,
      limit_key: p?.subject,
      client_ip: ip,
    });
    return res;
  },
});
