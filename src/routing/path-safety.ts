/**
 * Path safety (SPEC.md §1 step 1): refuses request targets that the gateway and the upstream could
 * read differently. The gateway matches routes on the raw path and forwards it byte for byte, so
 * anything an upstream (or a proxy in between) might normalise — dot segments, encoded slashes,
 * backslashes, merged slashes, NUL, a `#` fragment, `;` path parameters — is a way around the
 * route table and is refused up front.
 *
 * `checkTarget` takes the whole request target (`req.url`: path and query); `checkPathSafety`
 * only the path part. Both are pure, never throw and never echo their input.
 *
 * @example
 *   const why = checkTarget(req.url ?? '');                  // '"#" in the request target ...' for '/v2/user/bob#/photo'
 *   if (why) throw new GatewayError('bad_request', { why });
 *   checkPathSafety('/v2/room/%2e%2e/admin');                // 'dot segment ("." or "..") in the path'
 *   const name = decodeSegment('My%20Room');                 // 'My Room'
 */

const HEX = /^[0-9A-Fa-f]{2}$/;

/** Reason for a `#` anywhere in the target; one text for the path and the query. */
const FRAGMENT = '"#" in the request target (a fragment is never sent; upstream parsers cut the path or query there)';

/**
 * Returns a short reason when the request target `rawTarget` (as received: `req.url`, path and
 * query, still percent-encoded) is unsafe, or null when it may be split at its first `?` and the
 * path matched. Call it before splitting, so that a `#` in the query is refused too.
 *
 * Refused, besides everything `checkPathSafety` refuses in the path: a target that is not
 * origin-form (absolute-form `http://host/x`, authority-form `host:443`, asterisk-form `*` —
 * `OPTIONS *` included, no route can describe it); a `#` anywhere (raw; `%23` is data); in the
 * query, raw characters outside visible ASCII (controls, space, DEL, non-ASCII). A raw `?` in the
 * query is data (every parser splits at the first `?` only); malformed `%` escapes in the query
 * are forwarded byte for byte, as the query is never decoded as a whole.
 *
 * @example
 *   checkTarget('/v2/room/42?expand=x');     // null
 *   checkTarget('/v2/capabilities?a=1#x');   // '"#" in the request target (...)'
 *   checkTarget('http://evil/v2/room');      // 'request target must be origin-form ...'
 */
export function checkTarget(rawTarget: string, maxPathBytes = 8192): string | null {
  if (typeof rawTarget !== 'string' || rawTarget.length === 0 || rawTarget.charCodeAt(0) !== 0x2f /* / */) {
    return 'request target must be origin-form ("/path?query"); absolute-form, authority-form and "*" are refused';
  }
  const q = rawTarget.indexOf('?');
  const why = checkPathSafety(q === -1 ? rawTarget : rawTarget.slice(0, q), maxPathBytes);
  if (why !== null || q === -1) return why;
  for (let i = q + 1; i < rawTarget.length; i++) {
    const c = rawTarget.charCodeAt(i);
    if (c === 0x23 /* # */) return FRAGMENT;
    if (c < 0x21 || c > 0x7e) return 'control, space or non-ASCII character in the query (percent-encode it)';
  }
  return null;
}

/**
 * Returns a short reason when `rawPath` is unsafe, or null when it may be matched and forwarded.
 * `rawPath` is the path part of the request target exactly as received: before `?`, still
 * percent-encoded. Reasons never echo the input. `maxBytes` bounds the raw path (default 8 KiB).
 *
 * Refused: no leading `/`; longer than `maxBytes`; raw characters outside visible ASCII (controls,
 * space, DEL, non-ASCII); raw backslash; `%` not followed by two hex digits; percent-encoded bytes
 * that are not UTF-8; encoded `/` or `\` (`%2F`, `%5C`); NUL or control characters, raw or encoded;
 * `.`/`..` segments in any encoding (`%2e`, `.%2E` ...), also before a `;` (`..;`, which Tomcat
 * treats as `..`); empty segments inside the path (`//`, which nginx and others merge); a raw `#`
 * (WHATWG URL, url.parse and Flask cut the path there: `/v2/user/bob#/photo` would reach them as
 * `/v2/user/bob`); a raw `;` (Tomcat, Jetty, Undertow and Spring cut every segment at it, so
 * `/v2/admin;x/users` is `/v2/admin/users` to them but not to the route table, and `42;a`, `42;b`
 * would be two flood-control recipients for one room). `%23` and `%3B` are data, as everywhere.
 * A single trailing `/` is allowed.
 *
 * @example
 *   checkPathSafety('/v2/user/a@b.com');   // null
 *   checkPathSafety('/a/%2F/b');           // 'encoded "/" or "\" (%2F, %5C) in the path'
 */
export function checkPathSafety(rawPath: string, maxBytes = 8192): string | null {
  // Length first, so nothing below ever walks a huge input. Every accepted raw char is ASCII, so
  // length in UTF-16 units is the byte count for every path that can pass.
  if (rawPath.length > maxBytes) return `path longer than ${maxBytes} bytes`;
  if (rawPath.length === 0 || rawPath.charCodeAt(0) !== 0x2f /* / */) return 'path must start with "/"';

  let segStart = 1;
  let segHasPercent = false;
  let segHasSemicolon = false;
  for (let i = 1; i <= rawPath.length; i++) {
    const c = i < rawPath.length ? rawPath.charCodeAt(i) : 0x2f; // a virtual "/" closes the last segment
    if (c === 0x2f) {
      const seg = rawPath.slice(segStart, i);
      const last = i === rawPath.length;
      if (seg === '') {
        // "/" alone and one trailing "/" are fine; "//" anywhere else is not.
        if (!last) return 'empty path segment ("//")';
      } else {
        const why = checkSegment(seg, segHasPercent, segHasSemicolon);
        if (why) return why;
      }
      segStart = i + 1;
      segHasPercent = false;
      segHasSemicolon = false;
      continue;
    }
    // Checked at the segment's end, so that "..;" keeps its more telling dot-segment reason.
    if (c === 0x3b /* ; */) {
      segHasSemicolon = true;
      continue;
    }
    if (c === 0x23 /* # */) return FRAGMENT;
    if (c === 0x5c /* \ */) return 'backslash in the path';
    if (c === 0x00) return 'NUL in the path';
    if (c < 0x21 || c > 0x7e) return 'control, space or non-ASCII character in the path (percent-encode it)';
    if (c === 0x25 /* % */) {
      if (!HEX.test(rawPath.slice(i + 1, i + 3))) return 'malformed percent-encoding ("%" must be followed by two hex digits)';
      const byte = parseInt(rawPath.slice(i + 1, i + 3), 16);
      if (byte === 0x2f || byte === 0x5c) return 'encoded "/" or "\\" (%2F, %5C) in the path';
      if (byte === 0x00) return 'NUL (%00) in the path';
      if (byte < 0x20 || byte === 0x7f) return 'encoded control character in the path';
      segHasPercent = true;
      i += 2;
    }
  }
  return null;
}

/** Checks one non-empty raw segment whose characters already passed the per-char checks. */
function checkSegment(seg: string, hasPercent: boolean, hasSemicolon: boolean): string | null {
  let decoded = seg;
  if (hasPercent) {
    try {
      decoded = decodeURIComponent(seg);
    } catch {
      return 'malformed percent-encoding (the bytes are not UTF-8)';
    }
  }
  // Only a decoded "." / ".." is a dot segment; "b.c" and "d..e" are ordinary names.
  const semi = decoded.indexOf(';');
  const head = semi === -1 ? decoded : decoded.slice(0, semi);
  if (head === '.' || head === '..') return 'dot segment ("." or "..") in the path';
  if (hasSemicolon) return 'raw ";" in the path (Tomcat and Spring read it as a path parameter and cut the segment; send data as %3B)';
  return null;
}

/**
 * Percent-decodes one path segment (`decodeURIComponent`, with a fast path for plain segments).
 * Call it only on segments of a path that passed `checkPathSafety`; otherwise it may throw URIError.
 *
 * @example
 *   decodeSegment('My%20Room'); // 'My Room'
 */
export function decodeSegment(s: string): string {
  return s.includes('%') ? decodeURIComponent(s) : s;
}
