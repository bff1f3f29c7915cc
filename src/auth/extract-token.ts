/**
 * Token extraction (SPEC §1.3): finds the one bearer token of a request in the `Authorization`
 * header and/or the query string. Pure: plain values in, a token or a GatewayError out.
 *
 * @example
 *   const { token, source } = extractToken(req.headersDistinct.authorization, rawQuery, {
 *     sources: ['header', 'query'], queryParam: 'auth_token', maxTokenBytes: 8192,
 *   });
 */
import { GatewayError } from '../errors.js';

export interface ExtractOptions {
  /** Where a token may come from; a source not listed is ignored entirely. */
  sources: readonly ('header' | 'query')[];
  /** Name of the query parameter carrying the token (default config: `auth_token`). */
  queryParam: string;
  /** Longest token accepted, in UTF-8 bytes; longer is token_malformed. */
  maxTokenBytes: number;
}

export interface Extracted {
  token: string;
  source: 'header' | 'query';
}

/** RFC 7230 `token` characters: what an auth scheme name may consist of. */
const SCHEME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;

/**
 * Returns the request's token, or throws:
 * - token_conflict: two Bearer Authorization values, the query parameter repeated, or header and
 *   query both present with different values (equal values are fine; source is then `header`);
 * - token_missing: no token in any enabled source (a `Basic ...` header is not a token source);
 * - token_malformed: empty, containing whitespace, or longer than `maxTokenBytes`.
 * Conflicts are decided on the raw values before any value is validated.
 *
 * @param authorization every value of the Authorization header (`req.headersDistinct.authorization`)
 * @param rawQuery the raw query string, without `?`
 */
export function extractToken(
  authorization: readonly string[] | undefined,
  rawQuery: string,
  opts: ExtractOptions,
): Extracted {
  const useHeader = opts.sources.includes('header');
  const useQuery = opts.sources.includes('query');

  const fromHeader: string[] = [];
  let otherScheme: string | undefined;
  if (useHeader) {
    for (const value of authorization ?? []) {
      const parsed = parseAuthorization(value);
      if (parsed.bearer) fromHeader.push(parsed.credentials);
      else if (parsed.scheme !== undefined) otherScheme ??= parsed.scheme;
    }
  }
  const fromQuery = useQuery ? queryValues(rawQuery, opts.queryParam) : [];

  if (fromHeader.length > 1) {
    throw conflict('the Authorization header carries more than one Bearer token');
  }
  if (fromQuery.length > 1) {
    throw conflict(`the query parameter "${opts.queryParam}" is repeated`);
  }
  const header = fromHeader[0];
  const query = fromQuery[0];
  if (header !== undefined && query !== undefined && header !== query) {
    throw conflict(`different tokens in the Authorization header and the "${opts.queryParam}" query parameter`);
  }

  if (header !== undefined) return { token: validate(header, 'Authorization header', opts), source: 'header' };
  if (query !== undefined) {
    if (query instanceof DecodeFailure) throw malformed(`the "${opts.queryParam}" query parameter is not valid percent-encoding`);
    return { token: validate(query, `"${opts.queryParam}" query parameter`, opts), source: 'query' };
  }

  const where = [
    useHeader ? 'an Authorization: Bearer header' : undefined,
    useQuery ? `a "${opts.queryParam}" query parameter` : undefined,
  ].filter(Boolean);
  const why =
    `no token: expected ${where.join(' or ')}` +
    (otherScheme ? ` (the Authorization header uses the ${otherScheme} scheme, which is not a token source)` : '');
  throw new GatewayError('token_missing', { tokenPresented: false, why });
}

/** Marks a query value that could not be percent-decoded (a presented but unusable token). */
class DecodeFailure {}

type ParsedAuthorization =
  | { bearer: true; credentials: string }
  | { bearer: false; scheme: string | undefined };

function parseAuthorization(value: string): ParsedAuthorization {
  const v = value.trim();
  const m = /^(\S+)(?:\s+([\s\S]*))?$/.exec(v);
  if (!m) return { bearer: false, scheme: undefined };
  const scheme = m[1]!;
  if (scheme.toLowerCase() !== 'bearer') {
    // Only echo a scheme name that is a plain RFC 7230 token and short; never credentials.
    return { bearer: false, scheme: SCHEME.test(scheme) && scheme.length <= 32 ? scheme : 'unrecognised' };
  }
  return { bearer: true, credentials: (m[2] ?? '').trim() };
}

/** Form-decodes (`+` = space, then percent-decoding) one name or value. */
function formDecode(s: string): string | DecodeFailure {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return new DecodeFailure();
  }
}

/** Every value of `name` in the raw query; only the token parameter's values are decoded. */
function queryValues(rawQuery: string, name: string): (string | DecodeFailure)[] {
  const out: (string | DecodeFailure)[] = [];
  if (rawQuery === '') return out;
  for (const part of rawQuery.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const rawName = eq === -1 ? part : part.slice(0, eq);
    if (formDecode(rawName) !== name) continue;
    out.push(eq === -1 ? '' : formDecode(part.slice(eq + 1)));
  }
  return out;
}

function validate(token: string, where: string, opts: ExtractOptions): string {
  if (token === '') throw malformed(`the ${where} holds an empty token`);
  if (/\s/.test(token)) throw malformed(`the token in the ${where} contains whitespace`);
  const bytes = Buffer.byteLength(token, 'utf8');
  if (bytes > opts.maxTokenBytes) {
    throw malformed(`the token in the ${where} is ${bytes} bytes long; at most ${opts.maxTokenBytes} are accepted`);
  }
  return token;
}

function conflict(why: string): GatewayError {
  return new GatewayError('token_conflict', { tokenPresented: true, why });
}

function malformed(why: string): GatewayError {
  return new GatewayError('token_malformed', { tokenPresented: true, why });
}
