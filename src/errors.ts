/**
 * The one error vocabulary of scopegate. Every refusal the gateway writes itself is a `GatewayError`
 * carrying an `ErrorCode`; this file is the single place that maps a code to its HTTP status,
 * message and `WWW-Authenticate` challenge. The same code is the response's `error.reason`,
 * the access-log `reason` field and the `reason` label of `scopegate_auth_failures_total`.
 *
 * Adding a failure = adding one row to `ERRORS`.
 *
 * @example
 *   throw new GatewayError('scope_insufficient', { scopes: ['view_group', 'view_room'] });
 *   const { status, headers, body } = renderError(err, { realm: 'api' });
 */
import { clip as clipBytes } from './clip.js';

/**
 * Reason phrases of the statuses the gateway writes itself (RFC 9110 §15), as HipChat's `type`.
 * A table of our own instead of node:http's STATUS_CODES: this module runs in every door, the Hono
 * middleware on non-Node runtimes included.
 */
export const REASON_PHRASES: Readonly<Record<number, string>> = {
  200: 'OK',
  201: 'Created',
  202: 'Accepted',
  204: 'No Content',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  413: 'Payload Too Large',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

export const ERROR_CODES = [
  'bad_request',
  'route_not_found',
  'method_not_allowed',
  'token_missing',
  'token_conflict',
  'token_malformed',
  'signature_invalid',
  'token_expired',
  'token_not_yet_valid',
  'token_too_old',
  'issuer_unknown',
  'audience_mismatch',
  'key_unknown',
  'algorithm_forbidden',
  'token_revoked',
  'client_type_forbidden',
  'scope_insufficient',
  'room_forbidden',
  'rate_limited',
  'flood_limited',
  'keys_unavailable',
  'store_unavailable',
  'upstream_unavailable',
  'upstream_timeout',
  'headers_too_large',
  'request_timeout',
  'internal_error',
  'untrusted_proxy',
  'not_owner',
  // The token endpoint's RFC 6749 §5.2 codes (SPEC §9): `reason` in HipChat's envelope, `error` in the standard body.
  'invalid_request',
  'invalid_client',
  'invalid_grant',
  'unauthorized_client',
  'unsupported_grant_type',
  'invalid_scope',
] as const;

/** The token endpoint's RFC 6749 §5.2 error codes, a subset of ErrorCode. */
export const OAUTH_ERROR_CODES = ['invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope'] as const;
export type OAuthErrorCode = (typeof OAUTH_ERROR_CODES)[number];

export type ErrorCode = (typeof ERROR_CODES)[number];

/** Which RFC 6750 challenge a status carries. */
type Challenge = 'invalid_request' | 'invalid_token' | 'insufficient_scope' | 'bearer' | null;

interface ErrorRow {
  status: number;
  challenge: Challenge;
  /** Builds the client-facing message. Never receives the token. */
  message: (d: ErrorDetail, opts: RenderOptions) => string;
}

/** Structured facts about a failure. Nothing here may hold a token. */
export interface ErrorDetail {
  /** Scopes the route asks for (scope_insufficient). */
  scopes?: readonly string[];
  /** true when the route needs all of `scopes` (`scopes_all`). */
  allScopes?: boolean;
  /** Methods the path allows (method_not_allowed). */
  allow?: readonly string[];
  /** Seconds until the window resets (rate_limited, flood_limited). */
  retryAfter?: number;
  /** The token's client type and the route's allowed ones (client_type_forbidden). */
  clientType?: string;
  allowedClientTypes?: readonly string[];
  /** The room named in the path (room_forbidden). */
  room?: string;
  /** Which store failed (store_unavailable): the rate-limit store unless it says `token`. */
  store?: 'rate_limit' | 'token';
  /** Operator-facing explanation: logged and shown by `explain`, not sent to clients. */
  why?: string;
  /** A token was presented (decides `error="invalid_token"` on 401). */
  tokenPresented?: boolean;
}

export interface RenderOptions {
  realm: string;
  docsUrl?: string | undefined;
}

const INVALID_SESSION = 'Invalid OAuth session';
const invalidToken: ErrorRow = { status: 401, challenge: 'invalid_token', message: () => INVALID_SESSION };

/** Python-repr list, as HipChat printed it: [u'view_group', u'view_room'] */
export function pyList(items: readonly string[]): string {
  return `[${items.map((s) => `u'${s}'`).join(', ')}]`;
}

/** Request- and token-derived text in a message: the one clip, at 128 bytes. */
const clip = (s: string): string => clipBytes(s, 128);

export const ERRORS: Readonly<Record<ErrorCode, ErrorRow>> = {
  bad_request: { status: 400, challenge: 'invalid_request', message: (d) => (d.why ? `Bad request: ${d.why}` : 'Bad request') },
  route_not_found: { status: 404, challenge: null, message: () => 'No route matches this path.' },
  method_not_allowed: {
    status: 405,
    challenge: null,
    message: (d) => `Method not allowed. Allowed: ${(d.allow ?? []).join(', ')}`,
  },
  token_missing: {
    status: 401,
    challenge: 'bearer',
    message: (_d, o) => (o.docsUrl ? `Authenticated requests only. See ${o.docsUrl} for more information.` : 'Authenticated requests only.'),
  },
  token_conflict: {
    status: 400,
    challenge: 'invalid_request',
    message: () => 'More than one access token was presented; send exactly one, in the Authorization header or the query.',
  },
  token_malformed: invalidToken,
  signature_invalid: invalidToken,
  token_expired: invalidToken,
  token_not_yet_valid: invalidToken,
  token_too_old: invalidToken,
  issuer_unknown: invalidToken,
  audience_mismatch: invalidToken,
  key_unknown: invalidToken,
  algorithm_forbidden: invalidToken,
  token_revoked: invalidToken,
  client_type_forbidden: {
    status: 403,
    challenge: null,
    message: (d) =>
      `This method is not available to ${d.clientType ?? 'this'} clients; allowed client types: ${(d.allowedClientTypes ?? []).join(', ')}`,
  },
  scope_insufficient: {
    status: 403,
    challenge: 'insufficient_scope',
    message: (d) =>
      `This action requires ${d.allScopes ? 'all' : 'one'} of the following scopes: ${pyList(d.scopes ?? [])}`,
  },
  room_forbidden: {
    status: 403,
    challenge: null,
    message: (d) => `This token is bound to another room and may not access room '${clip(d.room ?? '')}'.`,
  },
  rate_limited: { status: 429, challenge: null, message: () => 'Rate limit exceeded' },
  flood_limited: { status: 429, challenge: null, message: () => 'Rate limit exceeded' },
  keys_unavailable: {
    status: 503,
    challenge: null,
    message: () => 'Signing keys are temporarily unavailable; try again later.',
  },
  store_unavailable: {
    status: 503,
    challenge: null,
    message: (d) => (d.store === 'token' ? 'The token store is unavailable; try again later.' : 'Rate-limit store is unavailable; try again later.'),
  },
  upstream_unavailable: { status: 502, challenge: null, message: () => 'The upstream service is unavailable.' },
  upstream_timeout: { status: 504, challenge: null, message: () => 'The upstream service did not answer in time.' },
  // Refused by Node's HTTP parser before the pipeline (more than 16 KiB of headers).
  headers_too_large: { status: 431, challenge: null, message: () => 'Request headers are too large.' },
  // The request head did not arrive within listen.header_timeout_ms, or a body paused longer than
  // listen.body_idle_timeout_ms.
  request_timeout: { status: 408, challenge: null, message: () => 'The request was not received in time.' },
  // A bug in the gateway, never a client mistake: logged with its stack, answered without details.
  internal_error: { status: 500, challenge: null, message: () => 'Internal gateway error.' },
  untrusted_proxy: { status: 403, challenge: null, message: () => 'This endpoint answers only trusted proxies.' },
  not_owner: { status: 403, challenge: null, message: () => 'This token belongs to another owner.' },
  invalid_request: { status: 400, challenge: null, message: (d) => (d.why ? `Invalid request: ${d.why}` : 'Invalid request') },
  invalid_client: { status: 401, challenge: null, message: () => 'Client authentication failed.' },
  invalid_grant: { status: 400, challenge: null, message: () => 'The grant is invalid, expired or revoked.' },
  unauthorized_client: { status: 400, challenge: null, message: () => 'This client may not use this grant type.' },
  unsupported_grant_type: { status: 400, challenge: null, message: () => 'Unsupported grant type.' },
  invalid_scope: { status: 400, challenge: null, message: () => 'The requested scope is invalid or exceeds the scope granted to the client.' },
};

export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly detail: ErrorDetail;
  constructor(code: ErrorCode, detail: ErrorDetail = {}) {
    super(detail.why ? `${code}: ${detail.why}` : code);
    this.name = 'GatewayError';
    this.code = code;
    this.detail = detail;
  }
  get status(): number {
    return ERRORS[this.code].status;
  }
}

export function isGatewayError(e: unknown): e is GatewayError {
  return e instanceof GatewayError;
}

export interface RenderedError {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** RFC 6750 quoted-string: no quotes or backslashes can come from config, but be safe. */
function quoted(s: string): string {
  return `"${s.replace(/["\\]/g, '')}"`;
}

/** Maps a GatewayError to the exact response: status, headers and HipChat's JSON envelope. */
export function renderError(err: GatewayError, opts: RenderOptions): RenderedError {
  const row = ERRORS[err.code];
  const d = err.detail;
  const status = row.status;
  const body = JSON.stringify({
    error: {
      code: status,
      message: row.message(d, opts),
      type: REASON_PHRASES[status] ?? 'Error',
      reason: err.code,
    },
  });
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const realm = `Bearer realm=${quoted(opts.realm)}`;
  switch (row.challenge) {
    case 'bearer':
      headers['www-authenticate'] = realm;
      break;
    case 'invalid_token':
      headers['www-authenticate'] = d.tokenPresented === false ? realm : `${realm}, error="invalid_token"`;
      break;
    case 'invalid_request':
      headers['www-authenticate'] = `${realm}, error="invalid_request"`;
      break;
    case 'insufficient_scope':
      headers['www-authenticate'] = `${realm}, error="insufficient_scope", scope=${quoted((d.scopes ?? []).join(' '))}`;
      break;
    case null:
      break;
  }
  if (err.code === 'method_not_allowed' && d.allow) headers['allow'] = d.allow.join(', ');
  if (d.retryAfter !== undefined && (err.code === 'rate_limited' || err.code === 'flood_limited')) {
    headers['retry-after'] = String(Math.max(0, Math.ceil(d.retryAfter)));
  }
  return { status, headers, body };
}

/** Thrown for config mistakes at load time; `path` is the YAML path, `line` 1-based when known. */
export class ConfigError extends Error {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[], file?: string) {
    super(
      `invalid config${file ? ` ${file}` : ''}:\n` +
        issues.map((i) => `  - ${i.path || '(root)'}${i.line ? ` (line ${i.line})` : ''}: ${i.message}`).join('\n'),
    );
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export interface ConfigIssue {
  path: string;
  line?: number | undefined;
  message: string;
}
