/**
 * bunTarget (src/doors/bun/target.ts): the target the Bun door decides on and forwards, from the
 * `req.url` Bun.serve gives — absolute when the request had a usable Host, as received when not.
 * The examples are the shapes Bun 1.4.5 produced (test/doors/proxy-parity.test.ts sends them to a
 * real Bun door); the properties hold for any target.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bunTarget } from './target.js';

describe('bunTarget', () => {
  it.each([
    ['http://api.example/v2/room/42?x=1', '/v2/room/42?x=1'],
    ['https://api.example:8443/v2/room/42', '/v2/room/42'],
    ['http://[::1]:8080/v2/capabilities', '/v2/capabilities'],
    ['http://api.example', '/'],
    ['http://api.example?x=1', '/'],
    // No usable Host (HTTP/1.0 without one, an empty or unparseable one): the target as received.
    ['/v2/room/42', '/v2/room/42'],
    ['/v2/room/42?auth_token=t', '/v2/room/42?auth_token=t'],
    ['//v2/room/42', '//v2/room/42'],
    ['/', '/'],
    // CONNECT's authority form and OPTIONS' asterisk stay as they are: not origin-form, refused by checkTarget.
    ['example.com:443', 'example.com:443'],
    ['*', '*'],
    ['', ''],
  ])('%j → %j', (url, target) => {
    expect(bunTarget(url)).toBe(target);
  });

  const pathPiece = fc.constantFrom('/', 'v2', 'room', '42', '.', '..', '%2F', '?', '&', '=', 'auth_token', '//', ':', '@', 'http://', '#', '%00', 'é');
  const originForm = fc.array(pathPiece, { maxLength: 12 }).map((xs) => `/${xs.join('')}`);
  const host = fc.constantFrom('api.example', 'api.example:8080', '[::1]:80', 'x', '127.0.0.1');

  it('gives back an origin-form target unchanged, whether Bun made it absolute or not', () => {
    fc.assert(
      fc.property(originForm, host, fc.constantFrom('http', 'https'), (t, h, scheme) => {
        expect(bunTarget(t)).toBe(t);
        expect(bunTarget(`${scheme}://${h}${t}`)).toBe(t);
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws, and what it returns is either the whole input or a suffix of it starting with "/"', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 80 }), (url) => {
        const t = bunTarget(url);
        expect(t === url || t === '/' || (t.startsWith('/') && url.endsWith(t))).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});
