/**
 * The request target of a Bun request, from `req.url` (SPEC §3 decides on it; the Bun door
 * forwards it). Bun.serve builds `req.url` as an absolute URL from the Host header when it has a
 * usable one (`http://host/v2/room/42?x`), but hands over the target as received when it has none:
 * HTTP/1.0 without Host, an empty or unparseable Host (`/v2/room/42`), and CONNECT's authority
 * form (`example.com:443`). Slicing "after the authority" blindly would drop the first path
 * segment of a host-less request (`/v2/room/42` → `/room/42`): a client could have the gateway
 * decide on, and forward, a path it never sent. So an absolute URL gives its target
 * (http/url-target.ts), and anything else is the target itself.
 *
 * @example
 *   bunTarget('http://api.example/v2/room/42?x=1') // '/v2/room/42?x=1'
 *   bunTarget('/v2/room/42')                        // '/v2/room/42' (no usable Host)
 *   bunTarget('example.com:443')                     // 'example.com:443' (authority form: refused later as not origin-form)
 */
import { targetOfUrl } from '../../http/url-target.js';

export function bunTarget(url: string): string {
  return targetOfUrl(url) ?? url;
}
