/**
 * What the upstream sees and what the client gets back (SPEC.md §5), as pure functions:
 * hop-by-hop filtering, query rewriting (`auth_token` / `auth_test` removed), identity headers
 * (anti-spoofing first — `_` read as `-`, as CGI/WSGI servers do — then the verified principal),
 * routing-override headers removed, underscore names dropped, and `X-Forwarded-*`/`Forwarded`
 * kept only from trusted peers.
 *
 * All header names in the returned records are lower case, so callers can merge records without
 * ending up with two spellings of the same field.
 *
 * @example
 *   const headers = buildUpstreamHeaders(req.headers, {
 *     identityPrefix: 'X-Auth-', principal, token, forwardToken: true,
 *     requestId, clientIp: '10.0.0.7', proto: 'http', host: req.headers.host,
 *     underscoreHeaders: 'drop', trustedPeer: trusted.contains(req.socket.remoteAddress),
 *   });
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Principal } from '../types.js';
import { HTTP_TOKEN } from '../http/token.js';

/**
 * Fields that describe one connection, not the message (RFC 9110 §7.6.1), never copied between
 * the client and upstream legs. `host` is here too: the upstream client sets the upstream's own
 * Host, and the original one travels as `X-Forwarded-Host`. `proxy-connection` is the legacy,
 * non-standard spelling some clients still send.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
]);

/** Longest identity-header value sent upstream, in bytes (UTF-8). */
export const MAX_IDENTITY_VALUE_BYTES = 1024;

type HeaderRecord = Record<string, string | string[] | undefined>;

/** Names the message's own `Connection` header declares hop-by-hop (`Connection: close, x-foo`). */
function connectionListed(connection: string | string[] | undefined): Set<string> | null {
  if (connection === undefined) return null;
  const values = Array.isArray(connection) ? connection : [connection];
  let out: Set<string> | null = null;
  for (const v of values) {
    for (const name of v.split(',')) {
      const n = name.trim().toLowerCase();
      // keep-alive and close are hop-by-hop already; only other names need a set (rare).
      if (n && n !== 'keep-alive' && n !== 'close') (out ??= new Set()).add(n);
    }
  }
  return out;
}

/**
 * Copies `h` with lower-cased names, minus hop-by-hop fields, the ones `Connection` lists, and
 * the names `skip` refuses. Filtering while copying, never `delete` afterwards: deleting turns the
 * object into a slow dictionary, and this object is built and read on every proxied request.
 */
function withoutHopByHop(h: HeaderRecord, skip?: (lowerName: string) => boolean): Record<string, string | string[]> {
  const listed = connectionListed(findHeader(h, 'connection'));
  const out: Record<string, string | string[]> = {};
  // for..in over a header object is the hot path of every proxied request: no entries() arrays.
  for (const rawName in h) {
    const value = h[rawName];
    if (value === undefined) continue;
    const name = rawName.toLowerCase();
    if (HOP_BY_HOP.has(name) || (listed !== null && listed.has(name)) || (skip !== undefined && skip(name))) continue;
    out[name] = Array.isArray(value) ? [...value] : value;
  }
  return out;
}

function findHeader(h: HeaderRecord, lowerName: string): string | string[] | undefined {
  const direct = h[lowerName];
  if (direct !== undefined) return direct;
  for (const k in h) if (k.length === lowerName.length && k.toLowerCase() === lowerName) return h[k];
  return undefined;
}


/**
 * Makes a claim value safe as a header value: control characters (CR, LF, NUL, DEL, ...) removed,
 * clipped to MAX_IDENTITY_VALUE_BYTES of UTF-8 on a character boundary, and non-ASCII text sent
 * as its UTF-8 bytes (RFC 9110 obs-text; a Node upstream recovers it with
 * `Buffer.from(v, 'latin1').toString('utf8')`).
 */
const PLAIN_VALUE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;

export function safeHeaderValue(value: string): string {
  // Fast path: printable ASCII without surrounding spaces is already safe.
  if (value.length <= MAX_IDENTITY_VALUE_BYTES && PLAIN_VALUE.test(value)) return value;
  // eslint-disable-next-line no-control-regex
  const clean = value.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, '').trim();
  let bytes = 0;
  let end = 0;
  for (const ch of clean) {
    const n = Buffer.byteLength(ch, 'utf8');
    if (bytes + n > MAX_IDENTITY_VALUE_BYTES) break;
    bytes += n;
    end += ch.length;
  }
  return Buffer.from(clean.slice(0, end), 'utf8').toString('latin1');
}

/**
 * Headers that make an upstream (or a framework in it) re-route or re-method a request after the
 * gateway authorised its route: IIS/Symfony/Zend `X-Original-URL` and `X-Rewrite-URL`, the
 * method overrides of Express, Rack, OData and Google APIs, Spring's `X-Forwarded-Prefix`, and the
 * forward-auth descriptions of another request (nginx `X-Original-URI`/`-Method`, Traefik
 * `X-Forwarded-Uri`/`-Method`; SPEC §8 reads them, so an auth service behind the gateway would
 * too). Removed from every request, whoever sent them (SPEC §5). Names as `foldHeaderName` gives.
 */
export const ROUTING_OVERRIDE_HEADERS: ReadonlySet<string> = new Set([
  'x-original-url',
  'x-rewrite-url',
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'x-forwarded-prefix',
  'x-original-uri',
  'x-original-method',
  'x-forwarded-uri',
  'x-forwarded-method',
]);

/**
 * Headers naming the client's address that frameworks read as the client ip (nginx `X-Real-IP`,
 * Akamai/Cloudflare `True-Client-IP`, Rails `Client-IP`, ...). Like `X-Forwarded-*` and
 * `Forwarded` they are kept only from a trusted peer (`trusted_proxies`) and dropped otherwise:
 * from anyone else they would let a client choose its ip. The gateway never adds them itself;
 * `X-Forwarded-For` carries the address it saw.
 */
export const CLIENT_ADDRESS_HEADERS: ReadonlySet<string> = new Set([
  'x-real-ip',
  'true-client-ip',
  'x-client-ip',
  'client-ip',
  'x-cluster-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
]);

/**
 * A header name as CGI and WSGI servers read it: ASCII lower case, `_` the same as `-`
 * (`X_Auth_Subject` and `x-auth-subject` both become `HTTP_X_AUTH_SUBJECT`).
 *
 * @example
 *   foldHeaderName('X_Auth-SUBJECT'); // 'x-auth-subject'
 */
export function foldHeaderName(name: string): string {
  const lower = name.toLowerCase();
  return lower.includes('_') ? lower.replaceAll('_', '-') : lower;
}

/** `Forwarded`, `X-Forwarded-*` or a client-address header (folded name). */
function isForwardingInfo(folded: string): boolean {
  return folded.startsWith('x-forwarded-') || folded === 'forwarded' || CLIENT_ADDRESS_HEADERS.has(folded);
}

/** Names the gateway writes itself, besides identity and forwarding headers (folded). */
const GATEWAY_WRITES: ReadonlySet<string> = new Set(['authorization', 'x-request-id', 'content-length', 'content-type']);

export interface UpstreamHeaderOptions {
  /** Configured `tokens.identity_header_prefix`, e.g. `X-Auth-`. */
  identityPrefix: string;
  /** The verified token's principal; absent on public routes. */
  principal?: Principal | undefined;
  /** The verified token, wherever it came from (header or query). */
  token?: string | undefined;
  /** `tokens.forward_token`. */
  forwardToken: boolean;
  requestId: string;
  clientIp: string;
  /** `https` when the client came over TLS. */
  proto: 'http' | 'https';
  /** The client's Host; defaults to the incoming `host` header. Sent as X-Forwarded-Host. */
  host?: string | undefined;
  /**
   * `listen.underscore_headers`. `drop` (default): every incoming header whose name contains `_`
   * is removed, since CGI/WSGI servers fold `_` and `-` into one name. `keep`: kept, except one
   * that folds onto a name the gateway controls (identity prefix, routing overrides, forwarding,
   * hop-by-hop, Authorization, X-Request-Id, Content-Length/-Type) or onto another incoming
   * header's name (Puma's CVE-2024-45614: the two would merge upstream).
   */
  underscoreHeaders?: 'drop' | 'keep' | undefined;
  /**
   * true when the connecting peer is in `trusted_proxies` (the caller matches the socket's
   * address with `compileCidrs`). Trusted: incoming `X-Forwarded-*`, `Forwarded` and client-address
   * headers are kept, the client ip is appended to `X-Forwarded-For` and to `Forwarded` (when sent),
   * and the peer's `X-Forwarded-Proto`/`-Host` win over ours. Otherwise (the default) all of them
   * are removed and replaced by the gateway's own `X-Forwarded-For/-Proto/-Host`.
   */
  trustedPeer?: boolean | undefined;
}

/**
 * Headers for the upstream request (SPEC §5): the client's headers minus hop-by-hop ones, minus
 * every header whose name starts with `identityPrefix` compared as `foldHeaderName` does (always,
 * also on public routes and with `underscoreHeaders: keep`: a client can never choose its
 * identity), minus routing-override headers, minus underscore names (see the options) and,
 * unless the peer is trusted, minus forwarding headers. Then `Authorization: Bearer <token>` only
 * when `forwardToken` and a token was verified, the identity headers of `principal`,
 * `X-Forwarded-For` (client ip; appended to a trusted peer's list), `-Proto`, `-Host` and
 * `X-Request-Id`.
 *
 * @example
 *   buildUpstreamHeaders({ 'x-auth-subject': 'admin', x_auth_subject: 'admin', accept: '*\/*' }, {
 *     identityPrefix: 'X-Auth-', principal: { issuerName: 'local', subject: 'u1', clientType: 'user', scopes: ['view_group'] },
 *     forwardToken: false, requestId: 'r1', clientIp: '10.0.0.7', proto: 'http',
 *   });
 *   // { accept: '*\/*', 'x-auth-subject': 'u1', 'x-auth-client-type': 'user', 'x-auth-scopes': 'view_group', ... }
 */
export function buildUpstreamHeaders(
  incoming: IncomingHttpHeaders,
  opts: UpstreamHeaderOptions,
): Record<string, string | string[]> {
  const prefix = foldHeaderName(opts.identityPrefix);
  const keepUnderscore = opts.underscoreHeaders === 'keep';
  const trusted = opts.trustedPeer === true;
  let twins: Map<string, number> | undefined;
  const skip = (name: string): boolean => {
    let folded = name;
    if (name.includes('_')) {
      // `__proto__` cannot be a plain property name: assigning an array to it would swap the prototype.
      if (!keepUnderscore || name === '__proto__') return true;
      folded = name.replaceAll('_', '-');
      twins ??= foldedCounts(incoming);
      if ((twins.get(folded) ?? 0) > 1) return true;
      if (HOP_BY_HOP.has(folded) || GATEWAY_WRITES.has(folded) || isForwardingInfo(folded)) return true;
    }
    if (prefix !== '' && folded.startsWith(prefix)) return true;
    if (name === 'authorization' || ROUTING_OVERRIDE_HEADERS.has(folded)) return true;
    // Set below from the gateway's own knowledge; a client's values never pass as they are.
    if (isForwardingInfo(folded)) return !trusted || name === 'x-forwarded-for';
    return false;
  };
  const out = withoutHopByHop(incoming, skip);
  if (opts.forwardToken && opts.token) out['authorization'] = `Bearer ${opts.token}`;

  const p = opts.principal;
  if (p) {
    const identity = identityHeaders(p, prefix);
    for (const name in identity) out[name] = identity[name]!;
  }

  const host = opts.host ?? findHeader(incoming, 'host');
  const hostValue = Array.isArray(host) ? host[0] : host;
  if (trusted) {
    const prior = joined(findHeader(incoming, 'x-forwarded-for'));
    out['x-forwarded-for'] = prior ? `${prior}, ${opts.clientIp}` : opts.clientIp;
    // The first proxy saw the client's scheme and host; ours are those of the hop from it.
    out['x-forwarded-proto'] ??= opts.proto;
    if (hostValue && out['x-forwarded-host'] === undefined) out['x-forwarded-host'] = hostValue;
    const forwarded = joined(out['forwarded']);
    if (forwarded) out['forwarded'] = `${forwarded}, ${forwardedElement(opts.clientIp, hostValue, opts.proto)}`;
  } else {
    out['x-forwarded-for'] = opts.clientIp;
    out['x-forwarded-proto'] = opts.proto;
    if (hostValue) out['x-forwarded-host'] = hostValue;
  }
  out['x-request-id'] = opts.requestId;
  return out;
}

function joined(v: string | string[] | undefined): string {
  return (Array.isArray(v) ? v.join(', ') : (v ?? '')).trim();
}

/** How many incoming names fold onto each folded name (only built when an underscore name is kept). */
function foldedCounts(h: HeaderRecord): Map<string, number> {
  const counts = new Map<string, number>();
  for (const k in h) {
    if (h[k] === undefined) continue;
    const f = foldHeaderName(k);
    counts.set(f, (counts.get(f) ?? 0) + 1);
  }
  return counts;
}

/** One RFC 7239 element for this hop: `for=...;host="...";proto=...`. */
function forwardedElement(clientIp: string, host: string | undefined, proto: string): string {
  const quote = (s: string) => `"${s.replace(/["\\]/g, '\\$&')}"`;
  const node = clientIp === '' ? 'unknown' : clientIp.includes(':') ? quote(`[${clientIp}]`) : clientIp;
  return `for=${node}${host ? `;host=${quote(host)}` : ''};proto=${proto}`;
}

/** Longest X-Auth-Scopes value, bytes: a list is cut between scopes, never inside one. */
export const MAX_SCOPES_HEADER_BYTES = 8192;

/**
 * The scopes as one space-separated value of whole scopes. Cutting a long list at a byte count
 * could turn `admin_group_readonly` into `admin_group`, a forged scope: a scope that does not fit
 * whole (or is over MAX_IDENTITY_VALUE_BYTES by itself) is left out, so a cut list only ever
 * grants less.
 */
function scopesValue(scopes: readonly string[]): string {
  let out = '';
  for (const scope of scopes) {
    const v = safeHeaderValue(scope);
    if (v !== scope || v === '') continue; // not representable exactly as a header value: leave it out
    const next = out === '' ? v : `${out} ${v}`;
    if (next.length > MAX_SCOPES_HEADER_BYTES) break;
    out = next;
  }
  return out;
}

// Principals come from the token cache, so the same object serves many requests: its identity
// headers are built once per (principal, prefix) instead of once per request.
const identityCache = new WeakMap<Principal, { prefix: string; headers: Record<string, string> }>();

/** The identity headers of a principal (`<prefix>subject`, ...), lower-case names, safe values. */
export function identityHeaders(p: Principal, lowerPrefix: string): Readonly<Record<string, string>> {
  const hit = identityCache.get(p);
  if (hit && hit.prefix === lowerPrefix) return hit.headers;
  const identity: Array<[string, string | undefined]> = [
    ['subject', p.subject],
    ['client-type', p.clientType],
    ['scopes', scopesValue(p.scopes)],
    ['room', p.room],
    ['room-name', p.roomName],
    ['group', p.group],
    ['token-id', p.tokenId],
    ['issuer', p.iss],
  ];
  const headers: Record<string, string> = {};
  for (const [suffix, value] of identity) {
    if (value === undefined) continue;
    // scopesValue already made the list safe, whole scopes only; clipping it again would cut one.
    const safe = suffix === 'scopes' ? value : safeHeaderValue(value);
    if (safe !== '') headers[`${lowerPrefix}${suffix}`] = safe;
  }
  identityCache.set(p, { prefix: lowerPrefix, headers });
  return headers;
}

/**
 * The upstream's response headers as the client gets them, as the flat `[name, value, ...]` list
 * `writeHead` takes: hop-by-hop fields and those the response's `Connection` lists dropped, names
 * lower-cased, and the gateway's own headers (`own`: X-Request-Id, rate-limit state) replacing
 * any upstream field of the same name, whatever its case. Repeated fields (Set-Cookie) stay whole.
 *
 * @example
 *   responseHeaderList({ 'content-type': 'text/plain', connection: 'keep-alive', 'x-request-id': 'up' }, { 'x-request-id': 'gw' });
 *   // ['content-type', 'text/plain', 'x-request-id', 'gw']
 */
export function responseHeaderList(upstream: HeaderRecord, own: Readonly<Record<string, string>>): Array<string | string[]> {
  const ownNames = Object.keys(own);
  const isOwn = (name: string): boolean => {
    for (const k of ownNames) if (k.length === name.length && k.toLowerCase() === name) return true;
    return false;
  };
  const kept = withoutHopByHop(upstream, isOwn);
  const out: Array<string | string[]> = [];
  for (const name in kept) out.push(name, kept[name]!);
  for (const k of ownNames) out.push(k, own[k]!);
  return out;
}

/**
 * responseHeaderList for a fetch Response's own `Headers` (the Bun door): the same fields dropped
 * and replaced, in place on a copy the caller made with `new Headers(res.headers)`. Copying a
 * Headers object natively and deleting a few names costs a fraction of reading every field into
 * JS and appending it to a new one (measured on Bun 1.4: 14 µs of a 51 µs floor request).
 * Repeated Set-Cookie fields stay separate; the names are already lower case.
 *
 * @example
 *   const h = withoutHopByHopHeaders(new Headers(res.headers), { 'x-request-id': 'gw' });
 */
export function withoutHopByHopHeaders(h: Headers, own: Readonly<Record<string, string>>): Headers {
  const connection = h.get('connection');
  const listed = connection === null ? null : connectionListed(connection);
  for (const name of HOP_BY_HOP) h.delete(name); // a no-op for an absent name
  // A listed name that is not a token (`Connection: !:` from a hostile upstream) names no field
  // Headers can hold, and Headers.delete would throw on it.
  if (listed !== null) for (const name of listed) if (HTTP_TOKEN.test(name)) h.delete(name);
  for (const name in own) h.set(name, own[name]!);
  return h;
}

/**
 * Why an upstream's final status is refused (502 on both doors): undici's parser and Bun's fetch
 * take any three digits, but a status past 599 is no HTTP answer (RFC 9110 §15).
 *
 * @example invalidStatus(999) // 'the upstream answered with status 999, outside 200-599'
 */
export function invalidStatus(status: number): string {
  return `the upstream answered with status ${status}, outside 200-599`;
}
