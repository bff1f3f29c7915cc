/**
 * The request target (path and query) of a Fetch `Request.url`, for the doors that only get a URL
 * (the Bun door, the Hono middleware). It starts exactly where Hono's router starts the path it
 * routes (hono/utils/url getPath: the first "/" after the scheme's ":" plus 4), so the Hono
 * middleware's decision and the application read the same spelling; for any URL a runtime builds
 * (a non-empty authority) that is simply the first "/" after the authority.
 *
 * Null when `url` is not absolute. Bun.serve hands over the target as received when the request
 * had no usable Host (HTTP/1.0 without one, an empty or unparseable one: `/x/v2/capabilities`)
 * and for CONNECT's authority form (`example.com:443`). The Bun door then decides on and forwards
 * that target as it is (bun/target.ts); the Hono middleware refuses it, since Hono cuts such a URL
 * at a "/" chosen by the first ":" anywhere in it.
 *
 * @example
 *   targetOfUrl('http://api.example/v2/room/42?x=1') // '/v2/room/42?x=1'
 *   targetOfUrl('/v2/room/42')                        // null
 */
export function targetOfUrl(url: string): string | null {
  // A relative URL starts with "/"; one with "://" later on (`/x?a=://y`) is still relative.
  if (url.charCodeAt(0) === 47 /* '/' */) return null;
  const colon = url.indexOf(':');
  if (colon === -1 || !url.startsWith('//', colon + 1)) return null;
  const slash = url.indexOf('/', colon + 4);
  return slash === -1 ? '/' : url.slice(slash);
}
