import { describe, it, expect } from 'vitest';
import { extractToken, type ExtractOptions } from './extract-token.js';
import { GatewayError, type ErrorCode } from '../errors.js';

const both: ExtractOptions = { sources: ['header', 'query'], queryParam: 'auth_token', maxTokenBytes: 64 };
const headerOnly: ExtractOptions = { ...both, sources: ['header'] };
const queryOnly: ExtractOptions = { ...both, sources: ['query'] };

const T = 'aaa.bbb.ccc';
const U = 'xxx.yyy.zzz';

interface Case {
  name: string;
  auth?: string[];
  query?: string;
  opts?: ExtractOptions;
  want: { token: string; source: 'header' | 'query' } | ErrorCode;
}

const cases: Case[] = [
  { name: 'takes a Bearer token from the header', auth: [`Bearer ${T}`], want: { token: T, source: 'header' } },
  { name: 'accepts the scheme in any case', auth: [`bEaReR ${T}`], want: { token: T, source: 'header' } },
  { name: 'tolerates several spaces after the scheme', auth: [`Bearer    ${T}  `], want: { token: T, source: 'header' } },
  { name: 'takes the token from the query', query: `auth_token=${T}`, want: { token: T, source: 'query' } },
  { name: 'finds the query parameter among others', query: `a=1&auth_token=${T}&b=2`, want: { token: T, source: 'query' } },
  { name: 'percent-decodes the query value', query: 'auth_token=a%2Eb.c', want: { token: 'a.b.c', source: 'query' } },
  { name: 'matches a percent-encoded parameter name', query: `auth%5Ftoken=${T}`, want: { token: T, source: 'query' } },
  { name: 'decodes + as a space (so a token with + is malformed)', query: 'auth_token=a+b', want: 'token_malformed' },
  { name: 'uses a configured query parameter name', query: `t=${T}`, opts: { ...both, queryParam: 't' }, want: { token: T, source: 'query' } },
  { name: 'accepts equal header and query tokens (source header)', auth: [`Bearer ${T}`], query: `auth_token=${T}`, want: { token: T, source: 'header' } },
  { name: 'rejects different header and query tokens', auth: [`Bearer ${T}`], query: `auth_token=${U}`, want: 'token_conflict' },
  { name: 'rejects two Bearer header values, even equal ones', auth: [`Bearer ${T}`, `Bearer ${T}`], want: 'token_conflict' },
  { name: 'rejects a repeated query parameter, even with equal values', query: `auth_token=${T}&auth_token=${T}`, want: 'token_conflict' },
  { name: 'reports a missing token', want: 'token_missing' },
  { name: 'reports a missing token for an empty header list', auth: [], query: 'a=1', want: 'token_missing' },
  { name: 'treats Basic as not a token source', auth: ['Basic dXNlcjpwYXNz'], want: 'token_missing' },
  { name: 'uses the query token next to a Basic header', auth: ['Basic dXNlcjpwYXNz'], query: `auth_token=${T}`, want: { token: T, source: 'query' } },
  { name: 'uses the one Bearer value next to a Basic value', auth: ['Basic dXNlcjpwYXNz', `Bearer ${T}`], want: { token: T, source: 'header' } },
  { name: 'ignores the query when the query source is off', query: `auth_token=${T}`, opts: headerOnly, want: 'token_missing' },
  { name: 'ignores repeated query params when the query source is off', auth: [`Bearer ${T}`], query: `auth_token=${U}&auth_token=${T}`, opts: headerOnly, want: { token: T, source: 'header' } },
  { name: 'ignores the header when the header source is off', auth: [`Bearer ${T}`], opts: queryOnly, want: 'token_missing' },
  { name: 'ignores a conflicting header when the header source is off', auth: [`Bearer ${U}`], query: `auth_token=${T}`, opts: queryOnly, want: { token: T, source: 'query' } },
  { name: 'rejects an empty Bearer value', auth: ['Bearer'], want: 'token_malformed' },
  { name: 'rejects a Bearer value of only spaces', auth: ['Bearer    '], want: 'token_malformed' },
  { name: 'rejects whitespace inside the token', auth: ['Bearer aaa bbb'], want: 'token_malformed' },
  { name: 'rejects a tab inside the token', auth: ['Bearer aaa\tbbb'], want: 'token_malformed' },
  // SPEC §1.3: an empty `auth_token=` counts as no token (was token_malformed before the SPEC said so).
  { name: 'counts an empty query value as no token', query: 'auth_token=', want: 'token_missing' },
  { name: 'counts a query parameter without a value as no token', query: 'auth_token', want: 'token_missing' },
  { name: 'uses the header token next to an empty query parameter', auth: [`Bearer ${T}`], query: 'auth_token=', want: { token: T, source: 'header' } },
  { name: 'still counts an empty repeated parameter as a repetition', auth: [`Bearer ${T}`], query: `auth_token=&auth_token=${T}`, want: 'token_conflict' },
  { name: 'rejects an undecodable query value', query: 'auth_token=%E0%A4%A', want: 'token_malformed' },
  // Look-alikes of the token parameter (SPEC §1.3): refused whatever their value, never a token.
  ...[
    'AUTH_TOKEN', 'Auth_Token', 'auth_token[]', 'auth_token%5B%5D', 'auth_token[0]', 'auth.token', 'AUTH.TOKEN', 'auth+token',
    'auth%20token', 'auth token', 'auth[token', 'auth_token%00', 'auth_token%00x', 'auth%255Ftoken', 'auth%25255Ftoken', 'auth%u005Ftoken',
    'x;auth_token', 'auth_token;x', '%20auth_token', 'auth_token%3Dx', 'x%26auth_token', 'ａｕｔｈ＿ｔｏｋｅｎ', 'auth_toKen',
  ].flatMap((name): Case[] => [
    { name: `refuses the look-alike ${name} next to a valid header token`, auth: [`Bearer ${T}`], query: `${name}=${U}`, want: 'token_conflict' },
    { name: `refuses the look-alike ${name} even when empty`, auth: [`Bearer ${T}`], query: `${name}=`, want: 'token_conflict' },
    { name: `refuses the look-alike ${name} as the only token`, query: `${name}=${U}`, want: 'token_conflict' },
  ]),
  { name: 'refuses a ;-separated token parameter inside another value', auth: [`Bearer ${T}`], query: `x=1;auth_token=${U}`, want: 'token_conflict' },
  { name: 'refuses a ;-separated look-alike after the token itself', query: `auth_token=${T};AUTH_TOKEN=${U}`, want: 'token_conflict' },
  { name: 'refuses a look-alike next to the exact query token', query: `auth_token=${T}&auth.token=${T}`, want: 'token_conflict' },
  { name: 'treats an encoded spelling of the exact name as the parameter itself (repeated)', query: `auth_token=${T}&auth%5Ftoken=${T}`, want: 'token_conflict' },
  { name: 'keeps names that merely contain the parameter', auth: [`Bearer ${T}`], query: 'my_auth_token=1&auth_tokens=2&auth_token_x=3&xauth.token=4', want: { token: T, source: 'header' } },
  { name: 'keeps a value that spells the parameter', auth: [`Bearer ${T}`], query: 'next=auth_token%3Dx&q=AUTH_TOKEN', want: { token: T, source: 'header' } },
  { name: 'ignores look-alikes when the query source is off', auth: [`Bearer ${T}`], query: `AUTH_TOKEN=${U}`, opts: headerOnly, want: { token: T, source: 'header' } },
  { name: 'folds look-alikes of a configured name', auth: [`Bearer ${T}`], query: `ACCESS.TOKEN=${U}`, opts: { ...both, queryParam: 'access_token' }, want: 'token_conflict' },
  // Comma-merged Authorization values (what a Fetch Headers object, and so the Hono door, sees).
  { name: 'rejects two Bearer tokens merged into one value', auth: [`Bearer ${T}, Bearer ${U}`], want: 'token_conflict' },
  { name: 'rejects two equal Bearer tokens merged into one value', auth: [`Bearer ${T}, Bearer ${T}`], want: 'token_conflict' },
  { name: 'rejects merged Bearer tokens without the space', auth: [`Bearer ${T},Bearer ${U}`], want: 'token_conflict' },
  { name: 'rejects merged Bearer tokens in any case', auth: [`bearer ${T},  BEARER ${U}`], want: 'token_conflict' },
  { name: 'rejects a merged Bearer value next to another Bearer value', auth: [`Basic dXNlcjpwYXNz, Bearer ${T}`, `Bearer ${U}`], want: 'token_conflict' },
  { name: 'uses the Bearer token of a merged Basic + Bearer value', auth: [`Basic dXNlcjpwYXNz, Bearer ${T}`], want: { token: T, source: 'header' } },
  { name: 'uses the Bearer token of a merged Bearer + Basic value', auth: [`Bearer ${T}, Basic dXNlcjpwYXNz`], want: { token: T, source: 'header' } },
  // Several Authorization fields decide as the one value Fetch merges them into (so the Node door,
  // which sees each field, answers as the Bun and Hono doors, which see the merged value).
  { name: 'reads a Bearer field followed by an empty one as Fetch merges them ("Bearer t, ": malformed)', auth: [`Bearer ${T}`, ''], want: 'token_malformed' },
  { name: 'answers that pair as its merged value does', auth: [`Bearer ${T}, `], want: 'token_malformed' },
  { name: 'reads an empty field followed by a Bearer one as Fetch merges them (", Bearer t": the token)', auth: ['', `Bearer ${T}`], want: { token: T, source: 'header' } },
  { name: 'answers that pair as its merged value does', auth: [`, Bearer ${T}`], want: { token: T, source: 'header' } },
  { name: 'rejects a Bearer credential containing a comma', auth: [`Bearer ${T},x`], want: 'token_malformed' },
  { name: 'rejects a query token containing a comma', query: 'auth_token=a%2Cb', want: 'token_malformed' },
  { name: 'accepts a token of exactly maxTokenBytes', auth: [`Bearer ${'a'.repeat(64)}`], want: { token: 'a'.repeat(64), source: 'header' } },
  { name: 'rejects a token longer than maxTokenBytes', auth: [`Bearer ${'a'.repeat(65)}`], want: 'token_malformed' },
  { name: 'counts bytes, not characters', auth: [`Bearer ${'é'.repeat(33)}`], want: 'token_malformed' },
];

describe('extractToken', () => {
  it.each(cases)('$name', ({ auth, query = '', opts = both, want }) => {
    const run = () => extractToken(auth, query, opts);
    if (typeof want === 'string') {
      let err: unknown;
      try {
        run();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(GatewayError);
      expect((err as GatewayError).code).toBe(want);
    } else {
      expect(run()).toEqual(want);
    }
  });

  it('marks presented-token failures and explains them without echoing the token', () => {
    const secretish = 'eyJsecret.part two';
    for (const run of [
      () => extractToken([`Bearer ${secretish}`], '', both),
      () => extractToken([`Bearer ${T}`], `auth_token=${encodeURIComponent(secretish)}`, both),
      () => extractToken(undefined, `auth_token=${'x'.repeat(100)}`, both),
    ]) {
      try {
        run();
        expect.unreachable();
      } catch (e) {
        const err = e as GatewayError;
        expect(err.detail.tokenPresented).toBe(true);
        expect(err.detail.why).toBeTruthy();
        expect(err.message).not.toContain('eyJsecret');
        expect(err.detail.why).not.toContain('eyJsecret');
        expect(err.detail.why).not.toContain('xxxxxxxx');
      }
    }
  });

  it('marks a missing token as not presented and names the scheme it ignored', () => {
    try {
      extractToken(['Basic dXNlcjpwYXNz'], '', both);
      expect.unreachable();
    } catch (e) {
      const err = e as GatewayError;
      expect(err.code).toBe('token_missing');
      expect(err.detail.tokenPresented).toBe(false);
      expect(err.detail.why).toContain('Basic');
      expect(err.detail.why).not.toContain('dXNlcjpwYXNz');
    }
  });
});
