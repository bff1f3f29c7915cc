/**
 * The forward-auth door (SPEC §8 "Forward auth"): answers an existing proxy's sub-request —
 * nginx `auth_request`, ingress-nginx `auth-url`, Traefik `ForwardAuth`, Caddy `forward_auth`,
 * Envoy `ext_authz` (HTTP service) — with the gateway's one decision (core/decide.ts). It never
 * forwards anything. Pure and Fetch-free (plain values in, plain values out), so the Node and the
 * Bun door call the same function before their own decision.
 *
 * Which request is decided — the front proxy describes it in one of three ways:
 *   nginx   `X-Original-Method` + `X-Original-URI`                (both required)
 *   traefik `X-Forwarded-Method` + `X-Forwarded-Uri` (+ `-Host`, `-Proto`, which do not change the decision)
 *   envoy   the original path after `forward_auth.path`, with the sub-request's own method
 * Two descriptions at once are 400 `bad_request` (a client could otherwise slip in its own), none
 * is 400 too. Only peers in `trusted_proxies` are answered; anyone else gets 403 `untrusted_proxy`
 * and nothing is decided.
 *
 * What the front proxy gets back:
 *   allowed  200 with `Content-Length: 0`, the identity headers (`tokens.identity_header_prefix`), the rate-limit headers,
 *            `X-Scopegate-Uri` (path and query as the proxy door would forward them: without
 *            `auth_token`/`auth_test`) and `X-Request-Id`; a public route: 200 without identity.
 *   anything else  never a 2xx (a front proxy would forward): the §2 status, envelope and
 *            headers, plus `X-Scopegate-Status: <status>` and `X-Scopegate-Body: <JSON body>`.
 *            nginx-style callers (those that sent `X-Original-URI`) get 401 when the real status
 *            is 401 and 403 otherwise — nginx `auth_request` turns anything else into a 500 — and
 *            the shipped snippet rebuilds the real answer from the two headers. auth_test's 202 is
 *            sent as 202 to Envoy (which allows only on 200) and as 403 to nginx- and
 *            Traefik/Caddy-style callers, which forward on any 2xx (docs/forward-auth.md).
 *
 * @example
 *   const fa = createForwardAuth(loaded, generation.decider, generation.trusted);
 *   if (fa.matches(rawPath)) {
 *     let r = fa.handle({ method: req.method, target: req.url, headers: req.headersDistinct, clientIp, requestId });
 *     if (r instanceof Promise) r = await r;
 *     res.writeHead(r.status, r.headers).end(r.body); // r.decision / r.reason for the access line
 *   }
 */
import type { LoadedConfig } from '../../config/load.js';
import type { Decider, Decision, RequestFacts } from '../../core/decide.js';
import { clip } from '../../clip.js';
import { GatewayError, renderError, type ErrorCode, type RenderOptions } from '../../errors.js';
import type { CidrList } from '../../net/cidr.js';
import { foldHeaderName, identityHeaders } from '../../proxy/upstream-headers.js';
import { HTTP_TOKEN } from '../../http/token.js';

/** How the front proxy described the original request. */
export type ForwardAuthStyle = 'nginx' | 'traefik' | 'envoy';

/** The sub-request, as plain values. */
export interface ForwardAuthRequest {
  /** The sub-request's own method (the original one for Envoy). */
  method: string;
  /** The sub-request's target exactly as received: `forward_auth.path`, `?query`, or (Envoy) the original path after it. */
  target: string;
  /**
   * The sub-request's headers; names in any case. Repeated fields as arrays where the door can
   * tell (Node: `req.headersDistinct`), so two `Authorization` or two `X-Original-URI` are seen.
   */
  headers: Readonly<Record<string, string | readonly string[] | undefined>>;
  /** The connecting peer (the front proxy): checked against `trusted_proxies`. */
  clientIp: string;
  /** This exchange's request id (sent back as `X-Request-Id`). */
  requestId: string;
}

export interface ForwardAuthResult {
  status: number;
  /** Lower-case names. */
  headers: Record<string, string>;
  body: string;
  /** The decision, for the access line; null when nothing was decided (untrusted peer, unreadable description). */
  decision: Decision | null;
  /** The refusal's code (also when the decision is null); undefined when allowed. */
  reason?: ErrorCode | undefined;
  /** The original request as decided, for the access line; undefined when it could not be read. */
  original?: { style: ForwardAuthStyle; method: string; target: string } | undefined;
}

export interface ForwardAuth {
  /** true for `forward_auth.path` itself and for every path below it (`path + '/…'`); a `?query` is ignored. */
  matches(rawPath: string): boolean;
  /** Synchronous whenever the decision is (cached token, memory store). */
  handle(req: ForwardAuthRequest): ForwardAuthResult | Promise<ForwardAuthResult>;
}

/** The original request a front proxy described. */
export interface OriginalRequest {
  style: ForwardAuthStyle;
  method: string;
  target: string;
}

/** Headers this door adds to every non-2xx answer. */
export const STATUS_HEADER = 'x-scopegate-status';
export const BODY_HEADER = 'x-scopegate-body';
/** On 200: the path and query the proxy door would forward (auth_token/auth_test removed). */
export const URI_HEADER = 'x-scopegate-uri';

/** RFC 9110 §9.1: a method is a token; 32 characters is plenty for any real method. */
const MAX_METHOD = 32;
/** What may appear in a request target on the wire (no space, no control character). */
const TARGET = /^[\x21-\x7e\x80-\xff]+$/;
/** Longest description accepted: SPEC §1 refuses paths over 8 KiB; a query may add as much again. */
const MAX_TARGET = 16 * 1024;

type Headers = ForwardAuthRequest['headers'];

/** Every value of a header, by lower-case name, whatever case the door kept. */
function valuesOf(h: Headers, lowerName: string): readonly string[] | undefined {
  let out: string[] | undefined;
  const add = (v: string | readonly string[] | undefined) => {
    if (v === undefined) return;
    if (typeof v === 'string') (out ??= []).push(v);
    else (out ??= []).push(...v);
  };
  for (const k of Object.keys(h)) if (k.length === lowerName.length && k.toLowerCase() === lowerName) add(h[k]);
  return out;
}

/** One header value; a repeated one is a description we cannot trust. */
function single(h: Headers, lowerName: string, name: string): string | GatewayError | undefined {
  const v = valuesOf(h, lowerName);
  if (v === undefined) return undefined;
  if (v.length !== 1) return new GatewayError('bad_request', { why: `forward auth: ${name} sent ${v.length} times` });
  return v[0]!;
}

/**
 * Reads which request the front proxy asks about (pure, exported for tests). `basePath` is
 * `forward_auth.path`. Returns a GatewayError (`bad_request`) when the description is missing,
 * given twice (two styles, or a repeated header), or not a method and an origin-form-looking
 * target; the decision then checks the target like any other (path safety, route, …).
 *
 * @example
 *   readOriginal({ method: 'GET', target: '/_scopegate/auth', headers: { 'x-original-method': 'POST', 'x-original-uri': '/v2/room/42/notification' } }, '/_scopegate/auth');
 *   // { style: 'nginx', method: 'POST', target: '/v2/room/42/notification' }
 *   readOriginal({ method: 'DELETE', target: '/_scopegate/auth/v2/room/42?x=1', headers: {} }, '/_scopegate/auth');
 *   // { style: 'envoy', method: 'DELETE', target: '/v2/room/42?x=1' }
 */
export function readOriginal(req: Pick<ForwardAuthRequest, 'method' | 'target' | 'headers'>, basePath: string): OriginalRequest | GatewayError {
  const q = req.target.indexOf('?');
  const subPath = q === -1 ? req.target : req.target.slice(0, q);
  const suffix = subPath.length > basePath.length && subPath.startsWith(`${basePath}/`) ? req.target.slice(basePath.length) : '';

  const nginxUri = single(req.headers, 'x-original-uri', 'X-Original-URI');
  const nginxMethod = single(req.headers, 'x-original-method', 'X-Original-Method');
  const traefikUri = single(req.headers, 'x-forwarded-uri', 'X-Forwarded-Uri');
  const traefikMethod = single(req.headers, 'x-forwarded-method', 'X-Forwarded-Method');
  for (const v of [nginxUri, nginxMethod, traefikUri, traefikMethod]) if (v instanceof GatewayError) return v;

  const styles: ForwardAuthStyle[] = [];
  if (nginxUri !== undefined || nginxMethod !== undefined) styles.push('nginx');
  if (traefikUri !== undefined || traefikMethod !== undefined) styles.push('traefik');
  if (suffix !== '') styles.push('envoy');
  if (styles.length > 1) {
    return new GatewayError('bad_request', { why: `forward auth: the original request is described twice (${styles.join(' and ')} style); send one of X-Original-*, X-Forwarded-Method/-Uri or the path after ${basePath}` });
  }
  if (styles.length === 0) {
    return new GatewayError('bad_request', { why: `forward auth: no original request; send X-Original-Method + X-Original-URI, X-Forwarded-Method + X-Forwarded-Uri, or the original path after ${basePath}` });
  }
  const style = styles[0]!;
  let method: string | undefined;
  let target: string | undefined;
  if (style === 'nginx') {
    method = nginxMethod as string | undefined;
    target = nginxUri as string | undefined;
    if (method === undefined || target === undefined) {
      // Falling back to the sub-request's own method would decide a GET for a POST.
      return new GatewayError('bad_request', { why: `forward auth: ${method === undefined ? 'X-Original-Method' : 'X-Original-URI'} is missing` });
    }
  } else if (style === 'traefik') {
    method = traefikMethod as string | undefined;
    target = traefikUri as string | undefined;
    if (method === undefined || target === undefined) {
      return new GatewayError('bad_request', { why: `forward auth: ${method === undefined ? 'X-Forwarded-Method' : 'X-Forwarded-Uri'} is missing` });
    }
  } else {
    method = req.method;
    target = suffix;
  }
  if (method.length > MAX_METHOD || !HTTP_TOKEN.test(method)) return new GatewayError('bad_request', { why: `forward auth: not a method: ${JSON.stringify(clip(method, 64))}` });
  if (target.length > MAX_TARGET) return new GatewayError('bad_request', { why: `forward auth: the original target is longer than ${MAX_TARGET} characters` });
  if (!TARGET.test(target)) return new GatewayError('bad_request', { why: 'forward auth: the original target is empty or contains spaces or control characters' });
  return { style, method, target };
}

const encoder = new TextEncoder();

/**
 * A JSON body as a header value that carries its exact bytes: UTF-8 written as one latin-1
 * character per byte (Node and Bun send such a value byte for byte), DEL — which a header value
 * may not hold and JSON.stringify leaves alone — as the equivalent JSON escape.
 */
export function bodyHeaderValue(body: string): string {
  if (/^[\x20-\x7e]*$/.test(body)) return body;
  let out = '';
  for (const ch of body) {
    const cp = ch.codePointAt(0)!;
    if (cp < 0x20 || cp === 0x7f) out += `\\u${cp.toString(16).padStart(4, '0')}`;
    else if (cp < 0x80) out += ch;
    else for (const b of encoder.encode(ch)) out += String.fromCharCode(b);
  }
  return out;
}

function lowerKeys(h: Readonly<Record<string, string>>, into: Record<string, string>): void {
  for (const k of Object.keys(h)) into[k.toLowerCase()] = h[k]!;
}

export function createForwardAuth(loaded: LoadedConfig, decider: Decider, trusted: CidrList): ForwardAuth {
  const fa = loaded.config.forward_auth;
  if (!fa) throw new TypeError('createForwardAuth: the config has no forward_auth section');
  if (decider.loaded !== loaded) throw new TypeError('createForwardAuth: the decider was built from another config');
  const basePath = fa.path;
  const below = `${basePath}/`;
  const renderOpts: RenderOptions = { realm: loaded.config.realm, docsUrl: loaded.config.docs_url };
  const prefix = foldHeaderName(loaded.config.tokens.identity_header_prefix);

  /** A non-2xx answer: the real status (or nginx's 401/403), its headers, and the two X-Scopegate-* copies. */
  function refusal(
    real: { status: number; headers: Record<string, string>; body: string },
    nginxCaller: boolean,
    envoy: boolean,
    requestId: string,
  ): Pick<ForwardAuthResult, 'status' | 'headers' | 'body'> {
    const headers: Record<string, string> = {};
    lowerKeys(real.headers, headers);
    headers['x-request-id'] = requestId;
    headers[STATUS_HEADER] = String(real.status);
    headers[BODY_HEADER] = bodyHeaderValue(real.body);
    let status = real.status;
    if (nginxCaller) status = real.status === 401 ? 401 : 403;
    // A 2xx would be taken as "forward" by every front proxy but Envoy (which allows only on 200).
    else if (status >= 200 && status < 300 && !envoy) status = 403;
    return { status, headers, body: real.body };
  }

  function fromDecision(d: Decision, original: OriginalRequest, nginxCaller: boolean, requestId: string): ForwardAuthResult {
    if (d.kind === 'forward') {
      // An explicit empty body: nginx keeps its connection to an auth service alive only when the
      // answer has no body it would have to read (Content-Length: 0, not an empty chunked body).
      const headers: Record<string, string> = { 'content-length': '0', 'x-request-id': requestId };
      if (d.principal) Object.assign(headers, identityHeaders(d.principal, prefix));
      lowerKeys(d.responseHeaders, headers);
      headers[URI_HEADER] = d.pathAndQuery;
      return { status: 200, headers, body: '', decision: d, original };
    }
    const r = refusal(decider.render(d), nginxCaller, original.style === 'envoy', requestId);
    return { ...r, decision: d, reason: d.kind === 'deny' ? d.error.code : undefined, original };
  }

  function undecided(err: GatewayError, nginxCaller: boolean, requestId: string): ForwardAuthResult {
    return { ...refusal(renderError(err, renderOpts), nginxCaller, false, requestId), decision: null, reason: err.code };
  }

  return {
    matches(rawPath) {
      const q = rawPath.indexOf('?');
      const p = q === -1 ? rawPath : rawPath.slice(0, q);
      return p === basePath || p.startsWith(below);
    },
    handle(req) {
      const nginxCaller = valuesOf(req.headers, 'x-original-uri') !== undefined;
      if (!trusted.contains(req.clientIp)) {
        return undecided(new GatewayError('untrusted_proxy', { why: `forward auth asked by ${clip(req.clientIp, 64)}, not in trusted_proxies` }), nginxCaller, req.requestId);
      }
      const original = readOriginal(req, basePath);
      if (original instanceof GatewayError) return undecided(original, nginxCaller, req.requestId);
      const auth = valuesOf(req.headers, 'authorization');
      const facts: RequestFacts = {
        method: original.method,
        target: original.target,
        authorization: auth,
        // The front proxy checked the original request's Host; the sub-request's own says nothing about it.
        hostCount: undefined,
        httpVersion: undefined,
        clientIp: req.clientIp,
      };
      const d = decider.decide(facts);
      return d instanceof Promise ? d.then((x) => fromDecision(x, original, nginxCaller, req.requestId)) : fromDecision(d, original, nginxCaller, req.requestId);
    },
  };
}
