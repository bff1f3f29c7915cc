/**
 * `scopegate explain`: the offline decision trace for one request. It runs the gateway's own
 * decision (core/decide.ts) with a tracer and a rate limiter that only reads a fresh window, so
 * there is one pipeline in the code base; this file only puts each traced step into words and
 * predicts the status and body the gateway would answer. The token itself is never printed.
 *
 * @example
 *   const r = await explain(loaded, { method: 'POST', url: '/v2/room/42/notification', token });
 *   process.stdout.write(formatExplanation(r)); // exit code: r.allowed ? 0 : 1
 */
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { createTokenVerifier } from './auth/verify-token.js';
import { allowedClientTypes, isRoomBound } from './authz/authorize.js';
import type { LoadedConfig } from './config/load.js';
import type { IssuerConfig } from './config/schema.js';
import { AUTH_TEST_BODY, createDecider, type RequestFacts, type TraceEvent } from './core/decide.js';
import type { GatewayError } from './errors.js';
import { redactUrl, REDACTED, tokenFingerprint } from './observability/logger.js';
import { createMemoryStore } from './ratelimit/memory-store.js';
import { createRateLimiter, type RateLimiter } from './ratelimit/policy.js';
import { compileRoutes } from './routing/compile-routes.js';
import { matchRoute } from './routing/match-route.js';
import { systemClock, type Clock } from './types.js';
import { clip as clipBytes } from './clip.js';

export interface ExplainStep {
  step: 'path_safety' | 'route' | 'token' | 'verify' | 'client_type' | 'scopes' | 'room' | 'auth_test' | 'rate_limit' | 'proxy';
  ok: boolean;
  detail: string;
}

export interface Explanation {
  request: { method: string; path: string; query: string };
  steps: ExplainStep[];
  allowed: boolean;
  decision: 'forward' | 'auth_test' | 'public' | 'denied';
  /** What the gateway answers itself; null when the request is forwarded (upstream decides). */
  response: { status: number; reason?: string; body: unknown; headers: Record<string, string> } | null;
  /** Where it would be forwarded. */
  upstream?: { name: string; url: string; pathAndQuery: string } | undefined;
}

export async function explain(
  loaded: LoadedConfig,
  req: { method: string; url: string; token?: string | undefined; tokenIn?: 'header' | 'query' },
  clock: Clock = systemClock,
): Promise<Explanation> {
  const out = await explainRaw(loaded, req, clock);
  // Very short strings would blank unrelated text; they are not real tokens anyway.
  return req.token && req.token.length >= 8 ? scrub(out, req.token) : out;
}

async function explainRaw(
  loaded: LoadedConfig,
  req: { method: string; url: string; token?: string | undefined; tokenIn?: 'header' | 'query' },
  clock: Clock,
): Promise<Explanation> {
  const { config, routes } = loaded;
  const method = req.method.toUpperCase();
  // Accept a full URL or a path; only the path and query matter.
  let target = /^[a-z]+:\/\//i.test(req.url) ? req.url.replace(/^[a-z]+:\/\/[^/?#]*/i, '') || '/' : req.url;
  const tokenParam = config.tokens.query_param;
  if (req.token !== undefined && req.tokenIn === 'query') target += `${target.includes('?') ? '&' : '?'}${tokenParam}=${encodeURIComponent(req.token)}`;
  const q = target.indexOf('?');
  const rawPath = q === -1 ? target : target.slice(0, q);
  const steps: ExplainStep[] = [];
  // What is shown of the request: a token in the query (or anywhere JWT-shaped) is redacted.
  const shown = redactUrl(target, [tokenParam]);
  const sq = shown.indexOf('?');
  const out: Explanation = {
    request: { method, path: sq === -1 ? shown : shown.slice(0, sq), query: sq === -1 ? '' : shown.slice(sq + 1) },
    steps,
    allowed: false,
    decision: 'denied',
    response: null,
  };

  // The gateway's own decision (core/decide.ts), with a limiter that only reads a fresh window:
  // one pipeline in the code base, traced step by step.
  const verifier = await createTokenVerifier(config.tokens, { clock, baseDir: loaded.baseDir });
  const real = createRateLimiter(config.rate_limit, { store: createMemoryStore({ maxKeys: 16, clock }), clock });
  const limiter: RateLimiter = { store: real.store, check: (input) => real.check({ ...input, consume: false }) };
  const decider = createDecider(loaded, { clock, verifier, limiter });
  const facts: RequestFacts = {
    method,
    target,
    authorization: req.token !== undefined && req.tokenIn !== 'query' ? [`Bearer ${req.token}`] : undefined,
    clientIp: '127.0.0.1',
  };
  const d = await decider.decide(facts, (e) => {
    const step = describeStep(e, { method, rawPath, routes, config });
    if (step) steps.push(...step);
  });

  if (d.route) {
    const upstreamName = d.route.upstream;
    const pathAndQuery = d.kind === 'forward' ? d.pathAndQuery : rawPath;
    out.upstream = { name: upstreamName, url: config.upstreams[upstreamName]?.url ?? '', pathAndQuery };
  }
  if (d.kind === 'forward') {
    steps.push({
      step: 'proxy',
      ok: true,
      detail: d.outcome === 'public' ? `public route: no token checked; forwarded to ${d.upstream}` : `forwarded to ${d.upstream} ${out.upstream?.url ?? ''}${d.pathAndQuery}`,
    });
    out.allowed = true;
    out.decision = d.outcome === 'public' ? 'public' : 'forward';
    return out;
  }
  const r = decider.render(d);
  const headers = Object.fromEntries(Object.entries(r.headers).filter(([k]) => !/^(x-ratelimit|ratelimit|x-floodcontrol)/i.test(k)));
  if (d.kind === 'answer') {
    out.allowed = true;
    out.decision = 'auth_test';
    out.response = { status: 202, body: JSON.parse(AUTH_TEST_BODY) as unknown, headers };
    return out;
  }
  out.response = { status: r.status, reason: d.error.code, body: JSON.parse(r.body) as unknown, headers };
  return out;
}

interface StepContext {
  method: string;
  rawPath: string;
  routes: LoadedConfig['routes'];
  config: LoadedConfig['config'];
}

/** Words for one traced step of the decision; the decision itself is core/decide.ts'. */
function describeStep(e: TraceEvent, ctx: StepContext): ExplainStep[] | null {
  const why = (err: GatewayError | undefined) => (err ? `${err.code}${err.detail.why ? `: ${err.detail.why}` : ''}` : '');
  switch (e.step) {
    case 'path_safety':
      return [{ step: 'path_safety', ok: e.ok, detail: e.ok ? 'path is safe' : (e.error?.detail.why ?? 'unsafe request target') }];
    case 'route': {
      const m = e.match!;
      if (!e.ok) {
        return [{
          step: 'route',
          ok: false,
          detail: m.kind === 'method_not_allowed' ? `the path is known but ${ctx.method} is not allowed (Allow: ${m.allow.join(', ')})` : 'no route matches this path (fallback: deny)',
        }];
      }
      if (e.fallback) return [{ step: 'route', ok: true, detail: 'no route matches; fallback: authenticated forwards any valid token to upstream "default"' }];
      if (m.kind !== 'match') return null;
      const others: string[] = [];
      for (const r of ctx.routes.routes) {
        if (r === m.route) continue;
        const alone = matchRoute(compileRoutes([r.config]), ctx.method, ctx.rawPath);
        if (alone.kind === 'match') others.push(`${r.id} (${r.config.path}) also matches but is less specific`);
        else if (alone.kind === 'method_not_allowed') others.push(`${r.id} (${r.config.path}) matches the path but not ${ctx.method}`);
      }
      const p = Object.entries(m.params).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ');
      return [{ step: 'route', ok: true, detail: `matched ${m.route.id} (${m.route.config.path})${p ? ` with ${p}` : ''}${others.length ? `; ${others.join('; ')}` : ''}` }];
    }
    case 'token':
      if (!e.ok) return [{ step: 'token', ok: false, detail: why(e.error) }];
      return [{ step: 'token', ok: true, detail: `token from ${e.tokenSource} (fingerprint ${tokenFingerprint(e.token!)}, ${e.token!.length} bytes${describeUnverified(e.token!, ctx.config.tokens.issuers)})` }];
    case 'verify': {
      if (!e.ok) return [{ step: 'verify', ok: false, detail: why(e.error) }];
      const p = e.principal!;
      return [{
        step: 'verify',
        ok: true,
        detail: `valid, issuer ${p.issuerName}${p.iss ? ` (iss ${p.iss})` : ''}; subject ${p.subject ?? '(none)'}, client type ${p.clientType || '(none)'}${p.room ? `, room ${p.room}` : ''}${p.roomName ? ` / "${p.roomName}"` : ''}${p.exp ? `, expires ${new Date(p.exp * 1000).toISOString()}` : ', no expiry'}`,
      }];
    }
    case 'authorize': {
      const m = e.match!;
      const p = e.principal!;
      if (m.kind !== 'match') return [{ step: 'client_type', ok: true, detail: 'fallback route: any valid token passes' }];
      const route = m.route;
      const denied = e.error;
      const out: ExplainStep[] = [];
      const allowedTypes = allowedClientTypes(route);
      const scopesNeeded = route.config.scopes ?? route.config.scopes_all ?? [];
      out.push({ step: 'client_type', ok: denied?.code !== 'client_type_forbidden', detail: `token is ${p.clientType || '(none)'}; route allows ${allowedTypes.join(', ')}` });
      if (denied?.code === 'client_type_forbidden') return withSpend(out, denied);
      out.push({
        step: 'scopes',
        ok: denied?.code !== 'scope_insufficient',
        detail: scopesNeeded.length
          ? `token holds [${p.scopes.join(' ')}]; route needs ${route.config.scopes_all ? 'all' : 'any one'} of [${scopesNeeded.join(' ')}]`
          : `route needs no scope; token holds [${p.scopes.join(' ')}]`,
      });
      if (denied?.code === 'scope_insufficient') return withSpend(out, denied);
      const rp = route.config.room_param;
      out.push({
        step: 'room',
        ok: !denied,
        detail: !rp
          ? 'route has no room binding'
          : !isRoomBound(p)
            ? `route binds {${rp}}, but the token is not bound to a room`
            : `token bound to room ${p.room ?? '(none)'}${p.roomName ? ` / "${p.roomName}"` : ''}; path {${rp}} = "${m.params[rp] ?? ''}"`,
      });
      return denied ? withSpend(out, denied) : out;
    }
    case 'auth_test':
      if (!e.ok) return [{ step: 'auth_test', ok: false, detail: why(e.error) }];
      return e.probe ? [{ step: 'auth_test', ok: true, detail: 'auth_test=true: the gateway answers 202 itself, upstream not contacted, budget read not spent' }] : null;
    case 'rate_limit': {
      if (!ctx.config.rate_limit.enabled) return [{ step: 'rate_limit', ok: true, detail: 'rate limiting disabled' }];
      const l = e.limit;
      const limit = l?.headers['X-Ratelimit-Limit'];
      return [{
        step: 'rate_limit',
        ok: e.ok,
        detail: e.ok
          ? `spends one unit of ${limit ?? 'the'} per window (a fresh window is assumed offline; 429 when it is exhausted)`
          : why(e.error),
      }];
    }
  }
}

function withSpend(steps: ExplainStep[], _denied: GatewayError): ExplainStep[] {
  steps.push({ step: 'rate_limit', ok: true, detail: 'a refused authenticated request still spends one unit of the token budget' });
  return steps;
}

/** Unverified header facts (alg, kid) and the issuer its `iss` selects: what the verifier will try. */
function describeUnverified(token: string, issuers: readonly IssuerConfig[]): string {
  try {
    const h = decodeProtectedHeader(token);
    const c = decodeJwt(token);
    const iss = typeof c.iss === 'string' ? c.iss : undefined;
    const issuer = issuers.find((i) => iss !== undefined && i.issuer === iss) ?? issuers.find((i) => i.issuer === undefined);
    const parts = [`alg ${clip(String(h.alg))}`];
    if (h.kid !== undefined) parts.push(`kid ${clip(String(h.kid))}`);
    parts.push(iss !== undefined ? `iss "${clip(iss)}"` : 'no iss');
    parts.push(issuer ? `selects issuer ${issuer.name}` : 'selects no configured issuer');
    return `; unverified header/claims: ${parts.join(', ')}`;
  } catch {
    return '; not a decodable JWT';
  }
}

function clip(s: string): string {
  return clipBytes(s, 64);
}

/** Belt and braces: the token never leaves `explain`, whatever a message or a path echoed. */
function scrub<T>(value: T, token: string): T {
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return v.includes(token) ? v.split(token).join(REDACTED) : v;
    if (Array.isArray(v)) return v.map(walk);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return walk(value) as T;
}

export function formatExplanation(r: Explanation): string {
  const lines = [`${r.request.method} ${r.request.path}${r.request.query ? `?${r.request.query}` : ''}`];
  for (const s of r.steps) lines.push(`  ${s.ok ? '✓' : '✗'} ${s.step.padEnd(11)} ${s.detail}`);
  if (r.response) {
    lines.push('', `${r.allowed ? 'ALLOWED' : 'DENIED'}: ${r.response.status}${r.response.reason ? ` ${r.response.reason}` : ''}`);
    for (const [k, v] of Object.entries(r.response.headers)) lines.push(`  ${k}: ${v}`);
    lines.push(`  ${JSON.stringify(r.response.body)}`);
  } else {
    lines.push('', `ALLOWED: forwarded to upstream ${r.upstream?.name} as ${r.upstream?.pathAndQuery}`);
  }
  return `${lines.join('\n')}\n`;
}
