/**
 * Path safety (SPEC.md §1 step 1): refuses request paths that the gateway and the upstream could
 * read differently. The gateway matches routes on the raw path and forwards it byte for byte, so
 * anything an upstream (or a proxy in between) might normalise — dot segments, encoded slashes,
 * backslashes, merged slashes, NUL — is a way around the route table and is refused up front.
 *
 * @example
 *   const why = checkPathSafety('/v2/room/%2e%2e/admin');   // 'dot segment ("." or "..") in the path'
 *   if (why) throw new GatewayError('bad_request', { why });
 *   const name = decodeSegment('My%20Room');                // 'My Room'
 */

const HEX = /^[0-9A-Fa-f]{2}$/;

/**
 * Returns a short reason when `rawPath` is unsafe, or null when it may be matched and forwarded.
 * `rawPath` is the path part of the request target exactly as received: before `?`, still
 * percent-encoded. Reasons never echo the input. `maxBytes` bounds the raw path (default 8 KiB).
 *
 * Refused: no leading `/`; longer than `maxBytes`; raw characters outside visible ASCII (controls,
 * space, DEL, non-ASCII); raw backslash; `%` not followed by two hex digits; percent-encoded bytes
 * that are not UTF-8; encoded `/` or `\` (`%2F`, `%5C`); NUL or control characters, raw or encoded;
 * `.`/`..` segments in any encoding (`%2e`, `.%2E` ...), also before a `;` (`..;`, which Tomcat
 * treats as `..`); empty segments inside the path (`//`, which nginx and others merge). A single
 * trailing `/` is allowed.
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
  for (let i = 1; i <= rawPath.length; i++) {
    const c = i < rawPath.length ? rawPath.charCodeAt(i) : 0x2f; // a virtual "/" closes the last segment
    if (c === 0x2f) {
      const seg = rawPath.slice(segStart, i);
      const last = i === rawPath.length;
      if (seg === '') {
        // "/" alone and one trailing "/" are fine; "//" anywhere else is not.
        if (!last) return 'empty path segment ("//")';
      } else {
        const why = checkSegment(seg, segHasPercent);
        if (why) return why;
      }
      segStart = i + 1;
      segHasPercent = false;
      continue;
    }
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
function checkSegment(seg: string, hasPercent: boolean): string | null {
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
