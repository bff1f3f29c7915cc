import { describe, expect, it } from 'vitest';
import { checkPathSafety, checkTarget, decodeSegment } from './path-safety.js';

describe('checkPathSafety', () => {
  const safe = [
    '/',
    '/v2/room',
    '/v2/room/',
    '/v2/room/My%20Room',
    '/v2/room/My%20Room/notification',
    '/v2/user/a@b.com',
    '/v2/user/a%40b.com',
    '/a/b.c/d..e',
    '/a/.hidden',
    '/a/..x',
    '/a/x..',
    '/a/...',
    '/a/%2e%2e%2e',
    '/a/%3Bb',
    '/a/b%3Bc=d',
    '/v2/user/bob%23/photo',
    '/v2/room/100%25',
    '/v2/room/%E2%9C%93',
    '/v2/room/caf%C3%A9',
    "/a/-._~!$&'()*+,=:@",
    '/v2/admin/*',
    '/a/%7E',
    `/${'a'.repeat(8191)}`,
  ];
  it.each(safe)('accepts %s', (p) => {
    expect(checkPathSafety(p)).toBeNull();
  });

  const unsafe: Array<[string, string, RegExp]> = [
    ['empty', '', /start with/],
    ['relative', 'v2/room', /start with/],
    ['asterisk form', '*', /start with/],
    ['absolute URL', 'http://evil/v2', /start with/],
    ['encoded slash', '/v2/room/a%2Fb', /encoded "\/"/],
    ['encoded slash lower case', '/v2/room/a%2fb', /encoded "\/"/],
    ['encoded backslash', '/v2/room/a%5Cb', /encoded "\/" or "\\"/],
    ['encoded backslash lower case', '/v2/room/a%5cb', /encoded/],
    ['raw backslash', '/v2/room\\..\\admin', /backslash/],
    ['dot segment', '/v2/./room', /dot segment/],
    ['dot-dot segment', '/v2/room/../admin', /dot segment/],
    ['trailing dot-dot', '/v2/room/..', /dot segment/],
    ['trailing dot', '/v2/room/.', /dot segment/],
    ['trailing dot-dot slash', '/v2/room/../', /dot segment/],
    ['encoded dot', '/v2/%2e/room', /dot segment/],
    ['encoded dot upper case', '/v2/%2E/room', /dot segment/],
    ['encoded dot-dot', '/v2/%2e%2e/admin', /dot segment/],
    ['mixed case encoded dot-dot', '/v2/%2E%2e/admin', /dot segment/],
    ['half encoded dot-dot', '/v2/.%2e/admin', /dot segment/],
    ['other half encoded dot-dot', '/v2/%2e./admin', /dot segment/],
    ['dot-dot before path parameter (Tomcat)', '/v2/..;/admin', /dot segment/],
    ['dot-dot with parameter value', '/v2/..;x=1/admin', /dot segment/],
    ['encoded dot-dot before semicolon', '/v2/%2e%2e;/admin', /dot segment/],
    ['dot before semicolon', '/v2/.;/admin', /dot segment/],
    ['raw NUL', '/v2/room\0', /NUL/],
    ['encoded NUL', '/v2/room%00.json', /NUL/],
    ['encoded control char', '/v2/room%0d%0aX-Injected:%201', /control/],
    ['encoded DEL', '/v2/room%7F', /control/],
    ['raw tab', '/v2/ro\tom', /control/],
    ['raw newline', '/v2/room\n', /control/],
    ['raw space', '/v2/My Room', /control, space/],
    ['raw DEL', '/v2/room\x7f', /control/],
    ['raw non-ASCII', '/v2/café', /non-ASCII/],
    ['truncated escape', '/v2/room%', /malformed/],
    ['one hex digit', '/v2/room%2', /malformed/],
    ['non-hex escape', '/v2/room/%zz', /malformed/],
    ['half hex escape', '/v2/room/%4g', /malformed/],
    ['invalid UTF-8', '/v2/room/%FF', /not UTF-8/],
    ['overlong UTF-8 slash', '/v2/room/%C0%AF', /not UTF-8/],
    ['overlong UTF-8 dot', '/v2/%C0%AE%C0%AE/admin', /not UTF-8/],
    ['truncated UTF-8 sequence', '/v2/room/%E2%9C', /not UTF-8/],
    ['double slash', '//v2/room', /empty path segment/],
    ['double slash inside', '/v2//room', /empty path segment/],
    ['double trailing slash', '/v2/room//', /empty path segment/],
    ['too long', `/${'a'.repeat(8192)}`, /longer than 8192 bytes/],
    // "#": WHATWG URL, url.parse and Flask cut the path there
    ['fragment before a public suffix', '/v2/user/bob#/photo', /"#" in the request target/],
    ['trailing fragment', '/v2/user/bob#', /"#"/],
    ['fragment alone', '/#', /"#"/],
    ['fragment after a slash', '/v2/room/#x', /"#"/],
    // ";": Tomcat, Jetty and Spring cut each segment at it (path parameters)
    ['path parameter on a literal', '/v2/admin;x/users', /raw ";"/],
    ['path parameter ending a segment', '/v2/user/bob;/photo', /raw ";"/],
    ['segment that is only a path parameter', '/a/;b', /raw ";"/],
    ['path parameter with a value', '/a/b;c=d', /raw ";"/],
    ['jsessionid', '/v2/room;jsessionid=1', /raw ";"/],
    ['semicolon alone', '/;', /raw ";"/],
  ];
  it.each(unsafe)('rejects %s', (_name, p, reason) => {
    expect(checkPathSafety(p)).toMatch(reason);
  });

  it('honours a smaller byte limit', () => {
    expect(checkPathSafety('/abcdef', 6)).toMatch(/longer than 6 bytes/);
    expect(checkPathSafety('/abcde', 6)).toBeNull();
  });

  it('never echoes the input in its reason', () => {
    const attack = `/${'A'.repeat(100_000)}/%2e%2e/secret-token-value`;
    const reason = checkPathSafety(attack) ?? '';
    expect(reason.length).toBeLessThan(120);
    expect(reason).not.toContain('secret-token-value');
    const dots = checkPathSafety('/secret-token-value/%2e%2e') ?? '';
    expect(dots).not.toContain('secret-token-value');
  });
});

describe('checkTarget', () => {
  const ok = [
    '/',
    '/v2/room',
    '/v2/room?',
    '/v2/room?x=1&y=2',
    '/v2/room?auth_token=abc&expand=items.user',
    '/v2/room?a=%zz',
    '/v2/room?a=b?c',
    '/v2/room??x',
    '/v2/room?q=%23',
    '/v2/room?a=1;b=2',
    "/v2/room?x=-._~!$&'()*+,;=:@/?",
    '/v2/user/a%40b.com?x',
  ];
  it.each(ok)('accepts %s', (t) => {
    expect(checkTarget(t)).toBeNull();
  });

  const refused: Array<[string, string, RegExp]> = [
    ['empty', '', /origin-form/],
    ['absolute-form', 'http://upstream.internal/v2/admin/x', /origin-form/],
    ['absolute-form https', 'https://h/v2/room', /origin-form/],
    ['authority-form', 'upstream.internal:443', /origin-form/],
    ['asterisk-form', '*', /origin-form/],
    ['relative', 'v2/room', /origin-form/],
    ['scheme-relative', '//evil.example/v2/room', /empty path segment/],
    ['fragment in the path', '/v2/user/bob#/photo', /"#"/],
    ['fragment in the query', '/v2/capabilities?x=1#/../admin', /"#"/],
    ['fragment right after "?"', '/v2/capabilities?#', /"#"/],
    ['fragment hiding auth_token', '/v2/room?a=1#&auth_token=t', /"#"/],
    ['space in the query', '/v2/room?a=b c', /query/],
    ['tab in the query', '/v2/room?a=\tb', /query/],
    ['CR LF in the query', '/v2/room?a=b\r\nX-Injected: 1', /query/],
    ['NUL in the query', '/v2/room?a=\0', /query/],
    ['DEL in the query', '/v2/room?a=\x7f', /query/],
    ['non-ASCII in the query', '/v2/room?q=café', /non-ASCII/],
    ['unsafe path before the query', '/v2/%2e%2e/admin?x=1', /dot segment/],
    ['"?" does not hide a path problem', '/v2/room;x?y', /raw ";"/],
    ['too long a path', `/${'a'.repeat(8192)}?x`, /longer than 8192 bytes/],
  ];
  it.each(refused)('refuses %s', (_name, t, reason) => {
    expect(checkTarget(t)).toMatch(reason);
  });

  it('bounds only the path, with the given limit', () => {
    expect(checkTarget(`/a?${'q'.repeat(20_000)}`)).toBeNull();
    expect(checkTarget('/abcdef?x', 6)).toMatch(/longer than 6 bytes/);
  });

  it('never echoes the target in its reason', () => {
    for (const t of ['http://secret-token-value/x', '/x?secret-token-value#', '/secret-token-value#x', '/secret-token-value;x']) {
      expect(checkTarget(t)).not.toContain('secret-token-value');
    }
  });
});

describe('decodeSegment', () => {
  it.each([
    ['My%20Room', 'My Room'],
    ['a%40b.com', 'a@b.com'],
    ['plain', 'plain'],
    ['100%25', '100%'],
    ['caf%C3%A9', 'café'],
  ])('decodes %s to %s', (raw, decoded) => {
    expect(decodeSegment(raw)).toBe(decoded);
  });

  it('throws on malformed encoding (callers check safety first)', () => {
    expect(() => decodeSegment('%zz')).toThrow(URIError);
  });
});
