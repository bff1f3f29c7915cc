/**
 * The token endpoint's three wire dialects (SPEC §9), as pure functions: which path speaks which
 * dialect, how its request body and client credentials are read, and how its success and error
 * bodies are written, byte for byte. No I/O, no store, no clock.
 *
 * | dialect       | path                  | body | client authentication        | errors                       |
 * | `hipchat`     | POST /v2/oauth/token  | form | Authorization: Basic         | §2 envelope, reason = RFC code |
 * | `livedigital` | POST /v1/auth/token   | JSON | client_id + client_secret    | RFC 6749 §5.2                |
 * | `standard`    | POST /oauth/token     | form | Basic or form body           | RFC 6749 §5.2                |
 *
 * Parsing follows RFC 6749: a parameter sent without a value counts as omitted (§3.1), a repeated
 * parameter is `invalid_request` (§3.1, §3.2), Basic credentials are form-urlencoded (§2.3.1).
 *
 * @example
 *   const p = parseFormBody('grant_type=client_credentials&scope=send_notification+view_room');
 *   // { ok: true, params: Map { grant_type → 'client_credentials', scope → 'send_notification view_room' } }
 *   const b = parseBasicAuth('Basic ' + btoa('id:s%3Acret')); // { kind: 'basic', id: 'id', secret: 's:cret' }
 *   const r = renderTokenError('standard', new GatewayError('invalid_grant'), { realm: 'api' });
 *   // r.status 400, r.body '{"error":"invalid_grant","error_description":"The grant is invalid, expired or revoked."}'
 */
import { ERRORS, GatewayError, renderError, type ErrorCode, type RenderOptions } from '../errors.js';
import { clip } from '../clip.js';

export type Dialect = 'hipchat' | 'livedigital' | 'standard';
export const DIALECTS: readonly Dialect[] = ['hipchat', 'livedigital', 'standard'];

/** Token endpoint path of each dialect. */
export const TOKEN_PATHS: Readonly<Record<Dialect, string>> = {
  hipchat: '/v2/oauth/token',
  livedigital: '/v1/auth/token',
  standard: '/oauth/token',
};

/** The body media type each dialect requires. */
export const BODY_TYPES: Readonly<Record<Dialect, 'application/x-www-form-urlencoded' | 'application/json'>> = {
  hipchat: 'application/x-www-form-urlencoded',
  livedigital: 'application/json',
  standard: 'application/x-www-form-urlencoded',
};

/** Request parameters by name; a parameter sent without a value is absent. */
export type Params = ReadonlyMap<string, string>;

export type ParseResult = { ok: true; params: Params } | { ok: false; why: string };

/** Headers every token-endpoint response carries, errors included (RFC 6749 §5.1). */
export const NO_STORE_HEADERS: Readonly<Record<string, string>> = { 'cache-control': 'no-store', pragma: 'no-cache' };

/** Longest parameter name echoed into an error message. */
const NAME_CLIP = 64;

function strictFormDecode(raw: string): string | undefined {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

/**
 * Parses an application/x-www-form-urlencoded body. A malformed percent escape or a repeated
 * parameter name is an error; empty pairs (`a=1&&b=2`) are skipped; `name` and `name=` are
 * omitted parameters (they still count for repetition).
 */
export function parseFormBody(body: string): ParseResult {
  const params = new Map<string, string>();
  const seen = new Set<string>();
  if (body === '') return { ok: true, params };
  for (const pair of body.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const name = strictFormDecode(eq === -1 ? pair : pair.slice(0, eq));
    const value = strictFormDecode(eq === -1 ? '' : pair.slice(eq + 1));
    if (name === undefined || value === undefined) return { ok: false, why: 'the form body has a malformed percent-escape' };
    if (seen.has(name)) return { ok: false, why: `parameter ${clip(name, NAME_CLIP)} is repeated` };
    seen.add(name);
    if (value !== '') params.set(name, value);
  }
  return { ok: true, params };
}

/**
 * Parses a JSON object body (livedigital). Values must be strings; `null` and `""` count as
 * omitted; anything else (numbers, arrays, objects) is an error naming the parameter.
 */
export function parseJsonBody(body: string): ParseResult {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return { ok: false, why: 'the body is not valid JSON' };
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) return { ok: false, why: 'the body must be a JSON object' };
  const params = new Map<string, string>();
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (value === null || value === '') continue;
    if (typeof value !== 'string') return { ok: false, why: `parameter ${clip(name, NAME_CLIP)} must be a string` };
    params.set(name, value);
  }
  return { ok: true, params };
}

export type BasicAuth =
  /** No Authorization header, or one with another scheme (e.g. livedigital's Bearer). */
  | { kind: 'none' }
  | { kind: 'basic'; id: string; secret: string }
  | { kind: 'malformed'; why: string };

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads `Authorization: Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1, scheme
 * case-insensitive). Another scheme is `none`; a Basic header that does not decode to
 * `id:secret` with a non-empty id is `malformed`.
 */
export function parseBasicAuth(header: string | null | undefined): BasicAuth {
  if (header === null || header === undefined) return { kind: 'none' };
  const m = /^([A-Za-z]+)(?: +(.*))?$/s.exec(header.trim());
  if (!m || m[1]!.toLowerCase() !== 'basic') return { kind: 'none' };
  const b64 = m[2] ?? '';
  if (b64 === '' || !BASE64.test(b64)) return { kind: 'malformed', why: 'Basic credentials are not base64' };
  let text: string;
  try {
    text = utf8.decode(Buffer.from(b64, 'base64'));
  } catch {
    return { kind: 'malformed', why: 'Basic credentials are not UTF-8' };
  }
  const colon = text.indexOf(':');
  if (colon === -1) return { kind: 'malformed', why: 'Basic credentials have no ":"' };
  const id = strictFormDecode(text.slice(0, colon));
  const secret = strictFormDecode(text.slice(colon + 1));
  if (id === undefined || secret === undefined) return { kind: 'malformed', why: 'Basic credentials have a malformed percent-escape' };
  if (id === '') return { kind: 'malformed', why: 'Basic credentials have an empty client id' };
  return { kind: 'basic', id, secret };
}

/** Is `contentType` the media type `expected` (parameters such as charset ignored)? */
export function isMediaType(contentType: string | null | undefined, expected: string): boolean {
  if (!contentType) return false;
  return contentType.split(';')[0]!.trim().toLowerCase() === expected;
}

/** RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ). */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;

/**
 * Splits a `scope` parameter into distinct scope tokens, in request order. Runs of spaces are
 * tolerated; a token with a character outside RFC 6749 §3.3 makes the whole scope invalid.
 */
export function parseScope(scope: string | undefined): { ok: true; scopes: string[] | undefined } | { ok: false } {
  if (scope === undefined) return { ok: true, scopes: undefined };
  const out: string[] = [];
  for (const s of scope.split(' ')) {
    if (s === '') continue;
    if (!SCOPE_TOKEN.test(s)) return { ok: false };
    if (!out.includes(s)) out.push(s);
  }
  return { ok: true, scopes: out.length ? out : undefined };
}

/** What was issued, as the response bodies need it. */
export interface IssuedTokens {
  accessToken: string;
  expiresIn: number;
  /** Granted scopes, in the client's order. */
  scopes: readonly string[];
  refreshToken?: string | undefined;
  groupId?: string | undefined;
  groupName?: string | undefined;
}

/** hipchat-go's fixture has `"group_id":123456`: an all-digits group id is written as a number. */
function groupIdValue(id: string): string | number {
  if (/^(0|[1-9][0-9]*)$/.test(id)) {
    const n = Number(id);
    if (Number.isSafeInteger(n)) return n;
  }
  return id;
}

export interface RenderedResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * The success body of `dialect`, keys in this order:
 * - hipchat: access_token, token_type "bearer", expires_in, [refresh_token], scope, [group_id, group_name]
 * - livedigital: token_type "Bearer", access_token, refresh_token
 * - standard: access_token, token_type "Bearer", expires_in, [refresh_token], scope
 */
export function renderTokenSuccess(dialect: Dialect, t: IssuedTokens): RenderedResponse {
  let body: Record<string, unknown>;
  const scope = t.scopes.join(' ');
  switch (dialect) {
    case 'hipchat':
      body = { access_token: t.accessToken, token_type: 'bearer', expires_in: t.expiresIn };
      if (t.refreshToken !== undefined) body['refresh_token'] = t.refreshToken;
      body['scope'] = scope;
      if (t.groupId !== undefined) body['group_id'] = groupIdValue(t.groupId);
      if (t.groupName !== undefined) body['group_name'] = t.groupName;
      break;
    case 'livedigital':
      body = { token_type: 'Bearer', access_token: t.accessToken };
      if (t.refreshToken !== undefined) body['refresh_token'] = t.refreshToken;
      break;
    case 'standard':
      body = { access_token: t.accessToken, token_type: 'Bearer', expires_in: t.expiresIn };
      if (t.refreshToken !== undefined) body['refresh_token'] = t.refreshToken;
      body['scope'] = scope;
      break;
  }
  return { status: 200, headers: { 'content-type': 'application/json', ...NO_STORE_HEADERS }, body: JSON.stringify(body) };
}

/**
 * The `error` value an RFC 6749 body carries for a code. The six token-endpoint codes are
 * themselves; a store outage and an internal error use the IANA-registered
 * `temporarily_unavailable` and `server_error` (RFC 6749 §4.1.2.1), since §5.2 has none.
 */
export function oauthErrorName(code: ErrorCode): string {
  switch (code) {
    case 'invalid_request':
    case 'invalid_client':
    case 'invalid_grant':
    case 'unauthorized_client':
    case 'unsupported_grant_type':
    case 'invalid_scope':
      return code;
    case 'store_unavailable':
    case 'keys_unavailable':
      return 'temporarily_unavailable';
    case 'internal_error':
      return 'server_error';
    default:
      return 'invalid_request';
  }
}

/** RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E; anything else becomes a space. */
export function descriptionText(s: string): string {
  return s.replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, ' ');
}

/** Text of the RFC body's error_description: the ERRORS message, except for outages. */
function describe(err: GatewayError, opts: RenderOptions): string {
  if (err.code === 'store_unavailable') return 'The token store is unavailable; try again later.';
  return ERRORS[err.code].message(err.detail, opts);
}

/**
 * The error response of `dialect`: HipChat's §2 envelope (renderError, `reason` = the code) or
 * the RFC 6749 §5.2 body `{"error","error_description"}`, status from the ERRORS table, plus
 * Cache-Control: no-store. `basicChallenge` adds `WWW-Authenticate: Basic realm="…"` to a 401
 * (RFC 6749 §5.2: required when the client authenticated with the Authorization header).
 */
export function renderTokenError(dialect: Dialect, err: GatewayError, opts: RenderOptions & { basicChallenge?: boolean }): RenderedResponse {
  let rendered: RenderedResponse;
  if (dialect === 'hipchat') {
    const r = renderError(err, opts);
    rendered = { status: r.status, headers: { ...r.headers, ...NO_STORE_HEADERS }, body: r.body };
  } else {
    const body = JSON.stringify({ error: oauthErrorName(err.code), error_description: descriptionText(describe(err, opts)) });
    rendered = { status: err.status, headers: { 'content-type': 'application/json', ...NO_STORE_HEADERS }, body };
    if (err.code === 'method_not_allowed' && err.detail.allow) rendered.headers['allow'] = err.detail.allow.join(', ');
  }
  if (rendered.status === 401 && opts.basicChallenge) {
    rendered.headers['www-authenticate'] = `Basic realm="${opts.realm.replace(/["\\]/g, '')}"`;
  }
  return rendered;
}
