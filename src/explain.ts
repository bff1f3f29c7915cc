/**
 * `scopegate explain`: the offline decision trace for one request. It runs the same stage
 * functions as the gateway (path safety, match, extract, verify, authorize, auth_test) in the
 * same order, without an upstream or rate-limit state, and predicts the status and body the
 * gateway would answer. The token itself is never printed.
 *
 * @example
 *   const r = await explain(loaded, { method: 'POST', url: '/v2/room/42/notification', token });
 *   process.stdout.write(formatExplanation(r)); // exit code: r.allowed ? 0 : 1
 */
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { extractToken } from './auth/extract-token.js';
import { createTokenVerifier } from './auth/verify-token.js';
import { allowedClientTypes, authorize, isAuthTest, isRoomBound } from './authz/authorize.js';
import { AUTH_TEST_BODY } from './app.js';
import type { LoadedConfig } from './config/load.js';
import type { IssuerConfig } from './config/schema.js';
import { GatewayError, renderError } from './errors.js';
import { redactUrl, REDACTED, tokenFingerprint } from './observability/logger.js';
import { stripQueryParams } from './proxy/upstream-headers.js';
import { compileRoutes } from './routing/compile-routes.js';
import { matchRoute } from './routing/match-route.js';
import { checkPathSafety } from './routing/path-safety.js';
import { systemClock, type Clock } from './types.js';

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
  const target = /^[a-z]+:\/\//i.test(req.url) ? req.url.replace(/^[a-z]+:\/\/[^/?#]*/i, '') || '/' : req.url;
  const q = target.indexOf('?');
  const rawPath = q === -1 ? target : target.slice(0, q);
  const rawQuery = q === -1 ? '' : target.slice(q + 1);
  const steps: ExplainStep[] = [];
  // What is shown of the request: a token in the query (or anywhere JWT-shaped) is redacted.
  const shown = redactUrl(q === -1 ? rawPath : `${rawPath}?${rawQuery}`, [config.tokens.query_param]);
  const sq = shown.indexOf('?');
  const out: Explanation = {
    request: { method, path: sq === -1 ? shown : shown.slice(0, sq), query: sq === -1 ? '' : shown.slice(sq + 1) },
    steps,
    allowed: false,
    decision: 'denied',
    response: null,
  };
  const renderOpts = { realm: config.realm, docsUrl: config.docs_url };

  const deny = (err: GatewayError): Explanation => {
    const r = renderError(err, renderOpts);
    out.response = { status: r.status, reason: err.code, body: JSON.parse(r.body) as unknown, headers: r.headers };
    return out;
  };

  const unsafe = rawPath.startsWith('/') ? checkPathSafety(rawPath) : 'request target must be an absolute path';
  steps.push({ step: 'path_safety', ok: !unsafe, detail: unsafe ?? 'path is safe' });
  if (unsafe) return deny(new GatewayError('bad_request', { why: unsafe }));

  const m = matchRoute(routes, method, rawPath);
  const others: string[] = [];
  for (const r of routes.routes) {
    if (m.kind === 'match' && r === m.route) continue;
    const alone = matchRoute(compileRoutes([r.config]), method, rawPath);
    if (alone.kind === 'match') others.push(`${r.id} (${r.config.path}) also matches but is less specific`);
    else if (alone.kind === 'method_not_allowed') others.push(`${r.id} (${r.config.path}) matches the path but not ${method}`);
  }
  let route;
  let params: Record<string, string> = {};
  if (m.kind === 'match') {
    route = m.route;
    params = m.params;
    const p = Object.entries(params).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ');
    steps.push({ step: 'route', ok: true, detail: `matched ${route.id} (${route.config.path})${p ? ` with ${p}` : ''}${others.length ? `; ${others.join('; ')}` : ''}` });
  } else if (config.fallback === 'authenticated') {
    steps.push({ step: 'route', ok: true, detail: `no route matches; fallback: authenticated forwards any valid token to upstream "default"` });
  } else if (m.kind === 'method_not_allowed') {
    steps.push({ step: 'route', ok: false, detail: `the path is known but ${method} is not allowed (Allow: ${m.allow.join(', ')})` });
    return deny(new GatewayError('method_not_allowed', { allow: m.allow }));
  } else {
    steps.push({ step: 'route', ok: false, detail: 'no route matches this path (fallback: deny)' });
    return deny(new GatewayError('route_not_found'));
  }

  const upstreamName = route?.upstream ?? 'default';
  const query = stripQueryParams(rawQuery, new Set([config.tokens.query_param, 'auth_test']));
  out.upstream = { name: upstreamName, url: config.upstreams[upstreamName]!.url, pathAndQuery: query ? `${rawPath}?${query}` : rawPath };

  if (route?.config.public) {
    steps.push({ step: 'proxy', ok: true, detail: `public route: no token checked; forwarded to ${upstreamName}` });
    out.allowed = true;
    out.decision = 'public';
    return out;
  }

  try {
    const headerValues = req.token !== undefined && req.tokenIn !== 'query' ? [`Bearer ${req.token}`] : undefined;
    const query2 = req.token !== undefined && req.tokenIn === 'query' ? `${rawQuery ? `${rawQuery}&` : ''}${config.tokens.query_param}=${encodeURIComponent(req.token)}` : rawQuery;
    const { token, source } = extractToken(headerValues, query2, {
      sources: config.tokens.sources,
      queryParam: config.tokens.query_param,
      maxTokenBytes: config.tokens.max_token_bytes,
    });
    steps.push({ step: 'token', ok: true, detail: `token from ${source} (fingerprint ${tokenFingerprint(token)}, ${token.length} bytes${describeUnverified(token, config.tokens.issuers)})` });

    const verifier = await createTokenVerifier(config.tokens, { clock, baseDir: loaded.baseDir });
    const p = await verifier.verify(token);
    steps.push({
      step: 'verify',
      ok: true,
      detail: `valid, issuer ${p.issuerName}${p.iss ? ` (iss ${p.iss})` : ''}; subject ${p.subject ?? '(none)'}, client type ${p.clientType || '(none)'}${p.room ? `, room ${p.room}` : ''}${p.roomName ? ` / "${p.roomName}"` : ''}${p.exp ? `, expires ${new Date(p.exp * 1000).toISOString()}` : ', no expiry'}`,
    });

    if (route) {
      const allowedTypes = allowedClientTypes(route);
      const scopesNeeded = route.config.scopes ?? route.config.scopes_all ?? [];
      const denied = authorize(route, p, params);
      steps.push({
        step: 'client_type',
        ok: !denied || denied.code !== 'client_type_forbidden',
        detail: `token is ${p.clientType || '(none)'}; route allows ${allowedTypes.join(', ')}`,
      });
      if (denied?.code !== 'client_type_forbidden') {
        steps.push({
          step: 'scopes',
          ok: !denied || denied.code !== 'scope_insufficient',
          detail: scopesNeeded.length
            ? `token holds [${p.scopes.join(' ')}]; route needs ${route.config.scopes_all ? 'all' : 'any one'} of [${scopesNeeded.join(' ')}]`
            : `route needs no scope; token holds [${p.scopes.join(' ')}]`,
        });
      }
      if (!denied || denied.code === 'room_forbidden') {
        const rp = route.config.room_param;
        steps.push({
          step: 'room',
          ok: !denied,
          detail: !rp
            ? 'route has no room binding'
            : !isRoomBound(p)
              ? `route binds {${rp}}, but the token is not bound to a room`
              : `token bound to room ${p.room ?? '(none)'}${p.roomName ? ` / "${p.roomName}"` : ''}; path {${rp}} = "${params[rp] ?? ''}"`,
        });
      }
      if (denied) {
        steps.push({ step: 'rate_limit', ok: true, detail: 'a refused authenticated request still spends one unit of the token budget' });
        return deny(denied);
      }
    } else {
      steps.push({ step: 'client_type', ok: true, detail: 'fallback route: any valid token passes' });
    }

    if (isAuthTest(rawQuery)) {
      steps.push({ step: 'auth_test', ok: true, detail: 'auth_test=true: the gateway answers 202 itself, upstream not contacted, budget read not spent' });
      out.allowed = true;
      out.decision = 'auth_test';
      out.response = { status: 202, body: JSON.parse(AUTH_TEST_BODY) as unknown, headers: { 'content-type': 'application/json' } };
      return out;
    }
    steps.push({
      step: 'rate_limit',
      ok: true,
      detail: config.rate_limit.enabled ? 'not evaluated offline (spends one unit; 429 when the window is exhausted)' : 'rate limiting disabled',
    });
    steps.push({ step: 'proxy', ok: true, detail: `forwarded to ${upstreamName} ${out.upstream.url}${out.upstream.pathAndQuery}` });
    out.allowed = true;
    out.decision = 'forward';
    return out;
  } catch (e) {
    if (!(e instanceof GatewayError)) throw e;
    const step: ExplainStep['step'] = ['token_missing', 'token_conflict'].includes(e.code) || (e.code === 'token_malformed' && !steps.some((s) => s.step === 'token')) ? 'token' : 'verify';
    steps.push({ step, ok: false, detail: `${e.code}${e.detail.why ? `: ${e.detail.why}` : ''}` });
    return deny(e);
  }
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
  return s.length > 64 ? `${s.slice(0, 64)}…` : s;
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
