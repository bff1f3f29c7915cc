/**
 * Token extraction (SPEC §1.3): finds the one bearer token of a request in the `Authorization`
 * header and/or the query string. Pure: plain values in, a token or a GatewayError out; no `node:`
 * import, so every door (Node, Bun, a Hono app) runs the same code.
 *
 * The query is read by src/http/raw-query.ts, the one module that decides what a query parameter
 * is: a look-alike of the token parameter (`AUTH_TOKEN`, `auth.token`, `auth_token[]`,
 * `x=1;auth_token=…`, double-encoded names, ...) is a token_conflict, never a token.
 *
 * @example
 *   const { token, source } = extractToken(req.headersDistinct.authorization, rawQuery, {
 *     sources: ['header', 'query'], queryParam: 'auth_token', maxTokenBytes: 8192,
 *   });
 */
import { GatewayError } from '../errors.js';
import { tokenParamValues } from '../http/raw-query.js';
import { HTTP_TOKEN } from '../http/token.js';

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

/** What an auth scheme name may consist of. */
const SCHEME = HTTP_TOKEN;

/**
 * Where one Authorization value is the comma-merged form of several (the Fetch `Headers` class,
 * and so the Hono door, joins repeated headers with ", "): a comma, whitespace, then a scheme
 * name followed by whitespace or the end. A token68 credential never contains a comma, and an
 * auth-param list continues with `name=`, which this does not match.
 */
const MERGED = /,(?=[ \t]+[A-Za-z0-9!#$%&'*+.^_`|~-]+(?:[ \t]|$))/;

/** A second Bearer item glued on without the usual space (`Bearer a,Bearer b`). */
const GLUED_BEARER = /,[ \t]*bearer(?:[ \t]|$)/i;

/**
 * Returns the request's token, or throws:
 * - token_conflict: two Bearer Authorization values (also merged into one value, `Bearer a,
 *   Bearer b`), the query parameter repeated, a look-alike of the query parameter (whatever its
 *   value), or header and query both present with different values (equal values are fine;
 *   source is then `header`);
 * - token_missing: no token in any enabled source (a `Basic ...` header is not a token source; an
 *   empty `auth_token=` or a bare `auth_token` counts as none);
 * - token_malformed: an empty Bearer value, a token containing whitespace or `,`, a query value
 *   that is not valid percent-encoding, or longer than `maxTokenBytes`.
 * Conflicts are decided on the raw values before any value is validated. With the query source
 * off, the query is not read at all (its token parameter and look-alikes are only stripped from
 * what is forwarded).
 *
 * @param authorization every value of the Authorization header (`req.headersDistinct.authorization`,
 *   or the one merged value a Fetch `Headers` gives); several are merged as Fetch merges them
 * @param rawQuery the raw query string, without `?`
 */
export function extractToken(
  authorization: readonly string[] | undefined,
  rawQuery: string,
  opts: ExtractOptions,
): Extracted {
  // The request nearly every client sends: one `Bearer <token68>` value and no query. Every rule
  // below passes such a request unchanged (no comma to split on, no other scheme, nothing to
  // trim, no query parameter to conflict with, only visible ASCII), so its answer is read off
  // directly; anything else takes the general path. The property test holds the two equal.
  if (authorization !== undefined && authorization.length === 1 && rawQuery === '') {
    const v = authorization[0]!;
    if (v.length - 7 <= opts.maxTokenBytes && PLAIN_BEARER.test(v) && opts.sources.includes('header')) return { token: v.slice(7), source: 'header' };
  }
  return extractTokenGeneral(authorization, rawQuery, opts);
}

/** `Bearer` as sent by nearly every client, one space, a token68 credential (RFC 7235 §2.1). */
const PLAIN_BEARER = /^Bearer [A-Za-z0-9._~+/-]+=*$/;

/** extractToken without its fast path: every rule applied in turn (exported for the property test). */
export function extractTokenGeneral(
  authorization: readonly string[] | undefined,
  rawQuery: string,
  opts: ExtractOptions,
): Extracted {
  const useHeader = opts.sources.includes('header');
  const useQuery = opts.sources.includes('query');

  const fromHeader: string[] = [];
  let otherScheme: string | undefined;
  if (useHeader) {
    // Several Authorization fields are read as the one value a Fetch `Headers` (the Bun and Hono
    // doors) merges them into, joined with ", ": every door decides on the same value. (Read one
    // by one, `Bearer t` then an empty field was the token t on the Node door, and `Bearer t, `,
    // a malformed token, on Bun.)
    const values = authorization !== undefined && authorization.length > 1 ? [authorization.join(', ')] : (authorization ?? []);
    for (const value of values) {
      for (const item of value.indexOf(',') === -1 ? [value] : value.split(MERGED)) {
        const parsed = parseAuthorization(item);
        if (parsed.bearer) {
          fromHeader.push(parsed.credentials);
          if (GLUED_BEARER.test(parsed.credentials)) fromHeader.push(parsed.credentials);
        } else if (parsed.scheme !== undefined) otherScheme ??= parsed.scheme;
      }
    }
  }

  if (fromHeader.length > 1) {
    throw conflict('the Authorization header carries more than one Bearer token');
  }
  let query: string | null | undefined;
  let emptyQuery = false;
  if (useQuery) {
    const scan = tokenParamValues(rawQuery, opts.queryParam);
    if (scan.lookAlikeAt !== 0) {
      throw conflict(
        `query parameter ${scan.lookAlikeAt} is a look-alike of "${opts.queryParam}" (another case, ".", "+", "[", ` +
          `a NUL, an encoded or ";"-separated spelling), which some servers read as the token parameter`,
      );
    }
    if (scan.values.length > 1) {
      throw conflict(`the query parameter "${opts.queryParam}" is repeated`);
    }
    query = scan.values[0];
    if (query === '') {
      query = undefined;
      emptyQuery = true;
    }
  }
  const header = fromHeader[0];
  if (header !== undefined && query !== undefined && header !== query) {
    throw conflict(`different tokens in the Authorization header and the "${opts.queryParam}" query parameter`);
  }

  if (header !== undefined) return { token: validate(header, 'Authorization header', opts), source: 'header' };
  if (query === null) throw malformed(`the "${opts.queryParam}" query parameter is not valid percent-encoding`);
  if (query !== undefined) return { token: validate(query, `"${opts.queryParam}" query parameter`, opts), source: 'query' };

  const where = [
    useHeader ? 'an Authorization: Bearer header' : undefined,
    useQuery ? `a "${opts.queryParam}" query parameter` : undefined,
  ].filter(Boolean);
  const why =
    `no token: expected ${where.join(' or ')}` +
    (emptyQuery ? ` (the "${opts.queryParam}" query parameter is empty)` : '') +
    (otherScheme ? ` (the Authorization header uses the ${otherScheme} scheme, which is not a token source)` : '');
  throw new GatewayError('token_missing', { tokenPresented: false, why });
}

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

function validate(token: string, where: string, opts: ExtractOptions): string {
  if (token === '') throw malformed(`the ${where} holds an empty token`);
  if (/\s/.test(token)) throw malformed(`the token in the ${where} contains whitespace`);
  if (token.includes(',')) throw malformed(`the token in the ${where} contains ",", which no token68 credential does`);
  const bytes = utf8Length(token);
  if (bytes > opts.maxTokenBytes) {
    throw malformed(`the token in the ${where} is ${bytes} bytes long; at most ${opts.maxTokenBytes} are accepted`);
  }
  return token;
}

/** UTF-8 length of `s` in bytes, without allocating (and without Node's Buffer). */
export function utf8Length(s: string): number {
  if (/^[\x21-\x7e]*$/.test(s)) return s.length;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

function conflict(why: string): GatewayError {
  return new GatewayError('token_conflict', { tokenPresented: true, why });
}

function malformed(why: string): GatewayError {
  return new GatewayError('token_malformed', { tokenPresented: true, why });
}
