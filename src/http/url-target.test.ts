/**
 * targetOfUrl (src/http/url-target.ts) against Hono's own router input: for any URL a Fetch
 * Request can carry, the path the Hono middleware decides on is the path Hono's getPath routes
 * (before its percent-decoding), so an allowed decision is always about the handler that runs.
 */
import fc from 'fast-check';
import { getPath } from 'hono/utils/url';
import { describe, expect, it } from 'vitest';
import { targetOfUrl } from './url-target.js';

const pathOf = (t: string) => {
  const q = t.indexOf('?');
  return q === -1 ? t : t.slice(0, q);
};

describe('targetOfUrl', () => {
  it.each([
    ['http://api.example/v2/room/42?x=1', '/v2/room/42?x=1'],
    ['https://[::1]:8443/v2/capabilities', '/v2/capabilities'],
    ['http://u:p@api.example/v2/x', '/v2/x'],
    ['http://api.example/', '/'],
    ['/v2/room/42', null],
    ['/x/v2/capabilities?a=:123/v2/room/42', null],
    ['/x?a=://y/v2/room/42', null],
    ['example.com:443', null],
    ['', null],
  ])('%j → %j', (url, target) => {
    expect(targetOfUrl(url)).toBe(target);
  });

  const piece = fc.constantFrom('/', 'v2', 'room', '42', ':', '@', '.', '..', '?', '=', '&', ';', '~', '//', 'é', 'a:b', '%20', 'x');
  const path = fc.array(piece, { maxLength: 12 }).map((xs) => `/${xs.join('')}`);
  const host = fc.constantFrom('api.example', 'api.example:8080', '[::1]', '[::1]:80', 'x', '127.0.0.1:1'); // a Request refuses credentials in its URL

  it("decides on the path Hono's router routes, for any URL a Request carries", () => {
    fc.assert(
      fc.property(fc.constantFrom('http', 'https'), host, path, (scheme, h, p) => {
        const req = new Request(`${scheme}://${h}${p}`);
        const target = targetOfUrl(req.url);
        expect(target).not.toBeNull();
        const routed = getPath(req);
        // getPath percent-decodes what it routes; compare like with like.
        expect(routed).toBe(decodeURI(pathOf(target!)));
      }),
      { numRuns: 3000 },
    );
  });

  it('answers null for every string that is not an absolute URL, and never throws', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 60 }), (s) => {
        const t = targetOfUrl(s);
        if (s.startsWith('/') || !/^[^:]*:\/\//.test(s)) expect(t).toBeNull();
        else expect(t === '/' || s.endsWith(t!)).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });
});
