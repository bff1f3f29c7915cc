import { describe, it, expect } from 'vitest';
import {
  authTestMode,
  formDecode,
  formDecodeStrict,
  isLookAlike,
  looseDecode,
  parseQuery,
  redactParams,
  stripParams,
  tokenParamValues,
} from './raw-query.js';
import { GatewayError } from '../errors.js';

const DROP = ['auth_token', 'auth_test'];

describe('parseQuery', () => {
  it('splits on & once and form-decodes names and values', () => {
    expect(parseQuery('a=1&b&c=x+y%21&&%zz=%E0')).toEqual([
      { rawName: 'a', rawValue: '1', name: 'a', value: '1' },
      { rawName: 'b', rawValue: undefined, name: 'b', value: undefined },
      { rawName: 'c', rawValue: 'x+y%21', name: 'c', value: 'x y!' },
      { rawName: '%zz', rawValue: '%E0', name: '%zz', value: '%E0' },
    ]);
  });

  it('keeps everything after the first = in the value', () => {
    expect(parseQuery('a=b=c')).toEqual([{ rawName: 'a', rawValue: 'b=c', name: 'a', value: 'b=c' }]);
  });

  it('returns no pairs for an empty query', () => {
    expect(parseQuery('')).toEqual([]);
  });
});

describe('formDecode', () => {
  it.each([
    ['auth%5Ftoken', 'auth_token'],
    ['a+b', 'a b'],
    ['a%2Bb', 'a+b'],
    ['%zz', '%zz'],
    ['%E0%A4%A', '%E0%A4%A'],
  ])('%s → %s', (raw, want) => expect(formDecode(raw)).toBe(want));

  it('reports a malformed escape in strict mode', () => {
    expect(formDecodeStrict('%E0%A4%A')).toBeUndefined();
    expect(formDecodeStrict('a%20b')).toBe('a b');
  });
});

describe('looseDecode', () => {
  it.each([
    ['auth%5Ftoken', 'auth_token'],
    ['auth_token%00%E0', 'auth_token\u0000\uFFFD'],
    ['auth%u005Ftoken', 'auth_token'],
    ['a%zz+b', 'a%zz b'],
    ['%C3%A9', 'é'],
    ['é%41', 'éA'],
  ])('%s → %j', (raw, want) => expect(looseDecode(raw)).toBe(want));
});

describe('isLookAlike', () => {
  it.each([
    'AUTH_TOKEN', 'Auth_token', 'auth_token[]', 'auth_token%5B%5D', 'auth_token%5b%5d', 'auth_token[0]', 'auth_token[a][b]', 'auth.token',
    'AUTH.TOKEN', 'auth+token', 'auth%20token', 'auth%2Btoken', 'auth[token', 'auth_token%00', 'auth_token%00junk', 'auth%255Ftoken',
    'auth%25255Ftoken', 'auth%u005Ftoken', 'x;auth_token', 'auth_token;x', '%20auth_token', 'auth_token%20', 'auth_token%3Dx',
    'x%26auth_token', 'x%3Bauth_token', 'auth.token[]', 'ａｕｔｈ＿ｔｏｋｅｎ', 'auth_to\u212Aen',
  ])('%s is a look-alike of auth_token', (name) => expect(isLookAlike(name, 'auth_token')).toBe(true));

  it.each(['auth_token', 'auth%5Ftoken', 'auth%5ftoken', 'xauth_token', 'auth_tokens', 'auth_token_x', 'my_auth_token', 'auth-token', 'authtoken', 'auth__token', 'auth[token]', 'token', ''])(
    '%s is not a look-alike of auth_token',
    (name) => expect(isLookAlike(name, 'auth_token')).toBe(false),
  );

  it('folds the configured name the same way', () => {
    expect(isLookAlike('access_token', 'access.token')).toBe(true);
    expect(isLookAlike('access.token', 'access.token')).toBe(false);
  });
});

describe('tokenParamValues', () => {
  const P = 'auth_token';
  it.each<[string, string, (string | null)[], number]>([
    ['no query', '', [], 0],
    ['no parameter', 'a=1&b=2', [], 0],
    ['the parameter', 'a=1&auth_token=abc', ['abc'], 0],
    ['decoded value', 'auth_token=a%2Eb', ['a.b'], 0],
    ['encoded exact name', 'auth%5Ftoken=abc', ['abc'], 0],
    ['repeated', 'auth_token=a&auth%5Ftoken=b', ['a', 'b'], 0],
    ['empty and bare', 'auth_token=&auth_token', ['', ''], 0],
    ['undecodable value', 'auth_token=%E0%A4%A', [null], 0],
    ['look-alike position', 'a=1&&AUTH_TOKEN=x', [], 3],
    ['first look-alike only', 'auth.token=1&AUTH_TOKEN=2', [], 1],
    [';-segment look-alike', 'auth_token=a&x=1;auth_token=b', ['a'], 2],
    ['exact with a ;-segment look-alike', 'auth_token=a;AUTH_TOKEN=b', [], 1],
    [';-segment without look-alike', 'auth_token=a;b=c', ['a;b=c'], 0],
  ])('%s', (_n, q, values, lookAlikeAt) => {
    expect(tokenParamValues(q, P)).toEqual({ values, lookAlikeAt });
  });
});

describe('authTestMode', () => {
  it.each([
    ['', 'normal'],
    ['a=1', 'normal'],
    ['auth_test=true', 'probe'],
    ['auth_test=TRUE', 'probe'],
    ['a=1&auth_test=True&b=2', 'probe'],
    ['auth%5Ftest=true', 'probe'],
    ['auth_test=%74rue', 'probe'],
    ['auth_test=false', 'normal'],
    ['auth_test=FALSE&a=1', 'normal'],
    ['xauth_test=true', 'normal'],
    ['auth_tests=true', 'normal'],
    ['q=auth_test%3Dtrue', 'normal'],
  ] as const)('%j → %s', (q, want) => {
    expect(authTestMode(q)).toBe(want);
  });

  it.each([
    'auth_test',
    'auth_test=',
    'auth_test=1',
    'auth_test=yes',
    'auth_test=true%20',
    'auth_test=true+',
    'auth_test=%20true',
    'auth_test=tru',
    'auth_test=truee',
    'auth_test=true;x=1',
    'auth_test=%E0%A4%A',
    'auth_test=true&auth_test=true',
    'auth_test=true&auth_test=false',
    'AUTH_TEST=true',
    'Auth_Test=true',
    'auth.test=true',
    'auth+test=true',
    'auth%20test=true',
    'auth_test[]=true',
    'auth_test%5B%5D=true',
    'auth_test%00=true',
    'auth%255Ftest=true',
    'x;auth_test=true',
    'x=1;auth_test=true',
    'auth_test=false;auth_test=true',
    'auth_te\u017Ft=true',
  ])('%j is a bad request', (q) => {
    let err: unknown;
    try {
      authTestMode(q);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('bad_request');
    expect((err as GatewayError).detail.why).toMatch(/auth_test/);
  });
});

describe('stripParams (the stripQueryParams contract, plus look-alikes)', () => {
  it.each([
    ['removes auth_token and keeps the rest', 'auth_token=abc&expand=items.user', 'expand=items.user'],
    ['removes auth_test', 'auth_test=true&max-results=10', 'max-results=10'],
    ['removes both', 'auth_test=TRUE&auth_token=abc', ''],
    ['removes a percent-encoded name', 'a=1&auth%5Ftoken=abc', 'a=1'],
    ['removes a name with lower-case escapes', 'auth%5ftoken=abc&b=2', 'b=2'],
    ['removes a bare name without value', 'auth_token&x=1', 'x=1'],
    ['removes every occurrence', 'auth_token=a&q=1&auth_token=b', 'q=1'],
    ['keeps repeated names in order', 'a=1&auth_token=t&a=2', 'a=1&a=2'],
    ['keeps escapes byte for byte', 'x=%2F&y=%2f%20+z', 'x=%2F&y=%2f%20+z'],
    ['keeps empty values', 'a=&b&auth_token=t', 'a=&b'],
    ['keeps empty pieces', 'a=1&&b=2', 'a=1&&b=2'],
    ['keeps names that only contain the dropped name', 'my_auth_token=1&auth_token_x=2', 'my_auth_token=1&auth_token_x=2'],
    ['keeps a value that looks like the name', 'q=auth_token%3Dx', 'q=auth_token%3Dx'],
    ['keeps a malformed escape', 'a=%zz&%E0%A4%A=1', 'a=%zz&%E0%A4%A=1'],
    ['keeps a ; inside an ordinary value', 'filter=a;b=c&d=1', 'filter=a;b=c&d=1'],
    ['returns empty for empty input', '', ''],
    ['returns empty when only the token was there', 'auth_token=abc', ''],
    // SPEC §1.3: `;` is a separator for look-alikes, so the old "does not split on ;" case changed.
    ['removes a ;-separated token parameter from another value', 'a=1;auth_token=t&b=2', 'a=1&b=2'],
    ['removes only the ;-segment that names it', 'a=1;x=2;AUTH_TEST=true;y=3', 'a=1;x=2;y=3'],
    ['removes a name ;-glued to the parameter', 'x;auth_token=t&b=2', 'b=2'],
    ['removes look-alikes of either name', 'AUTH_TOKEN=a&auth.test=1&auth_token[]=b&auth%255Ftoken=c&k=v', 'k=v'],
    ['removes an exact piece that also hides a look-alike', 'auth_token=a;auth_token=b&k=v', 'k=v'],
  ])('%s', (_name, input, expected) => {
    expect(stripParams(input, DROP)).toBe(expected);
  });

  it('uses the configured names only', () => {
    expect(stripParams('access_token=x&auth_token=y', new Set(['access_token']))).toBe('auth_token=y');
  });

  it('returns the very same string when nothing can match', () => {
    const q = 'expand=items.user&max-results=10';
    expect(stripParams(q, DROP)).toBe(q);
  });
});

describe('redactParams', () => {
  const R = '[R]';
  it.each([
    ['the parameter', 'x=1&auth_token=abc', `x=1&auth_token=${R}`],
    ['an encoded exact name keeps its name', 'auth%5Ftoken=abc', `auth%5Ftoken=${R}`],
    ['a plain look-alike keeps its name', 'AUTH_TOKEN=abc&auth.token=d', `AUTH_TOKEN=${R}&auth.token=${R}`],
    ['an escaped look-alike is replaced whole (the token may sit in its name)', 'a=1&auth_token%3Dsecret&b', `a=1&${R}&b`],
    ['a NUL-cut look-alike is replaced whole', 'auth_token%00secret=v', R],
    ['a ;-glued look-alike is replaced whole', 'x;auth_token=v', R],
    ['a ;-segment look-alike censors the value it sits in', 'x=1;auth_token=secret&y=2', `x=${R}&y=2`],
    ['empty values stay empty', 'auth_token=&auth_token', 'auth_token=&auth_token'],
    ['other pieces byte for byte', 'a=%2F&&b=c+d', 'a=%2F&&b=c+d'],
  ])('%s', (_n, q, want) => {
    expect(redactParams(q, ['auth_token'], R)).toBe(want);
  });
});
