/**
 * The request target the Hono middleware decides on, from `c.req.url`: the path and query from
 * exactly where Hono's router starts the path it routes (hono/utils/url getPath: the first "/"
 * after the scheme's ":" plus 4), so the decision and the application read the same spelling.
 * Null for a URL that is not absolute: Bun.serve hands over `/x/v2/capabilities` for a request
 * without a usable Host, which Hono cuts at a "/" chosen by the first ":" anywhere in it, so no
 * target the decision could pick is sure to be the one the application runs (the middleware
 * refuses it, 400).
 *
 * @example
 *   requestTarget('http://api.example/v2/room/42?x=1') // '/v2/room/42?x=1'
 *   requestTarget('/v2/room/42')                        // null
 */
export function requestTarget(url: string): string | null {
  const colon = url.indexOf(':');
  if (colon === -1 || !url.startsWith('//', colon + 1)) return null;
  const slash = url.indexOf('/', colon + 4);
  return slash === -1 ? '/' : url.slice(slash);
}
