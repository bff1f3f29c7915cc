/**
 * Issue 10, rule 7 (SPEC §1.3, §1.6, §5): look-alike query parameters, through a real gateway and
 * a real upstream. PHP, ASP.NET and `;`-splitting servers fold `AUTH_TOKEN`, `auth.token`,
 * `auth_token[]`, `x=1;auth_token=…` and friends into `auth_token`, so a forged `alg: none` token
 * sent under such a name next to a valid header token must be refused (400 token_conflict) and
 * never reach the upstream. A misspelt auth_test probe (`auth_test=1`, `AUTH_TEST=true`, ...) is
 * 400 bad_request, never a real, side-effecting call; `auth_test=TRUE` is the 202 probe, and
 * `auth_test=false` a normal call forwarded without auth_test.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway.js';
import { rawRequest } from '../helpers/http.js';
import { hsToken, nowS, unsecuredToken } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

let up: Upstream;
let gw: TestGateway;
let valid: string;
let forged: string;

const claims = (over: Record<string, unknown> = {}) => ({
  iss: 'scopegate-test',
  aud: 'api',
  sub: 'query-user',
  iat: nowS(),
  exp: nowS() + 600,
  client_type: 'user',
  scope: 'view_group',
  ...over,
});

beforeAll(async () => {
  up = await startUpstream();
  gw = await startTestGateway(baseConfig({ upstream: up.url }));
  valid = await hsToken(TEST_SECRET, claims());
  forged = unsecuredToken(claims({ sub: 'root', scope: 'admin_group view_group view_room' }));
});
afterAll(async () => {
  await gw?.close();
  await up?.close();
});

/** Sends one request and reports what the client saw and whether the upstream saw anything. */
async function send(path: string, headers: Record<string, string | string[]> = {}) {
  const before = up.requests.length;
  const res = await rawRequest(gw.url, 'GET', path, headers);
  // The gateway answers only after it forwarded (or decided not to): nothing can arrive later.
  const reached = up.requests.slice(before);
  let reason: string | undefined;
  try {
    reason = (JSON.parse(res.body) as { error?: { reason?: string } }).error?.reason;
  } catch {
    reason = undefined;
  }
  return { status: res.status, reason, body: res.body, reached };
}

const bearer = () => ({ authorization: `Bearer ${valid}` });

describe('look-alikes of the token parameter (SPEC §1.3)', () => {
  const names = [
    // from the issue
    'AUTH_TOKEN',
    'auth_token[]',
    'auth.token',
    'auth+token',
    'auth_token%00',
    // other case foldings
    'Auth_Token',
    'aUtH_tOkEn',
    'AUTH.TOKEN',
    // brackets
    'auth_token[0]',
    'auth_token[x]',
    'auth_token%5B%5D',
    'auth_token%5b%5d',
    'auth.token[]',
    'auth[token',
    // spaces, dots and NULs written as escapes
    'auth%20token',
    'auth%2Etoken',
    'auth%2Btoken',
    'auth_token%00junk',
    '%20auth_token',
    // double (and triple) encoding, IIS %u
    'auth%255Ftoken',
    'auth%25255Ftoken',
    'auth%252Etoken',
    'auth_token%255B%255D',
    'auth%u005Ftoken',
    // `;` and encoded separators
    'x;auth_token',
    'auth_token;x',
    'x%26auth_token',
    'x%3Bauth_token',
    'auth_token%3Dx',
    // Latin-1 text a latin1-reading server case-folds (the Kelvin sign is beyond Node's client)
    'AUTH_TOKEN%C2%A0',
  ];

  it.each(names)('refuses %s=<forged> next to a valid header token; the upstream receives nothing', async (name) => {
    const r = await send(`/v2/room/42?a=1&${name}=${forged}`, bearer());
    expect({ status: r.status, reason: r.reason, reached: r.reached.length }).toEqual({ status: 400, reason: 'token_conflict', reached: 0 });
  });

  it.each(['AUTH_TOKEN', 'auth_token[]', 'auth.token'])('refuses an empty look-alike %s= too', async (name) => {
    const r = await send(`/v2/room/42?${name}=`, bearer());
    expect({ status: r.status, reason: r.reason, reached: r.reached.length }).toEqual({ status: 400, reason: 'token_conflict', reached: 0 });
  });

  it.each([
    ['a ;-separated token parameter', `x=1;auth_token=${forged}`],
    ['a ;-separated token parameter after the first piece', `a=b&x=1;auth_token=${forged}&c=d`],
    ['a ;-separated look-alike', `x=1;AUTH_TOKEN=${forged}`],
    ['a look-alike glued to the real parameter', `auth_token=${valid};auth_token=${forged}`],
    ['the real parameter and a look-alike', `auth_token=${valid}&auth.token=${forged}`],
    ['an encoded spelling of the exact name, repeated', `auth_token=${valid}&auth%5Ftoken=${forged}`],
  ])('refuses %s; the upstream receives nothing', async (_n, query) => {
    const r = await send(`/v2/room/42?${query}`, query.startsWith('auth_token=') ? {} : bearer());
    expect({ status: r.status, reason: r.reason, reached: r.reached.length }).toEqual({ status: 400, reason: 'token_conflict', reached: 0 });
  });

  it('refuses a look-alike carrying the only token (it is never read as a token)', async () => {
    const r = await send(`/v2/room/42?AUTH_TOKEN=${valid}`);
    expect({ status: r.status, reason: r.reason, reached: r.reached.length }).toEqual({ status: 400, reason: 'token_conflict', reached: 0 });
  });

  it('refuses two Bearer tokens merged into one Authorization value (what the Hono door sees)', async () => {
    const r = await send('/v2/room/42', { authorization: `Bearer ${valid}, Bearer ${forged}` });
    expect({ status: r.status, reason: r.reason, reached: r.reached.length }).toEqual({ status: 400, reason: 'token_conflict', reached: 0 });
  });

  it('never echoes the forged token in the refusal', async () => {
    const r = await send(`/v2/room/42?AUTH_TOKEN=${forged}`, bearer());
    expect(r.status).toBe(400);
    expect(r.body).not.toContain(forged);
    expect(r.body).not.toContain(forged.split('.')[1]);
  });

  it('accepts the exact parameter carrying the only token and forwards without it', async () => {
    const r = await send(`/v2/room/42?a=1&auth_token=${valid}&b=2`);
    expect(r.status).toBe(200);
    expect(r.reached.map((q) => q.url)).toEqual(['/v2/room/42?a=1&b=2']);
  });

  it('accepts an encoded spelling of the exact name as the parameter', async () => {
    const r = await send(`/v2/room/42?auth%5Ftoken=${valid}`);
    expect(r.status).toBe(200);
    expect(r.reached.map((q) => q.url)).toEqual(['/v2/room/42']);
  });

  it('counts an empty auth_token= as no token: 401 token_missing, nothing forwarded', async () => {
    const r = await send('/v2/room/42?auth_token=');
    expect({ status: r.status, reason: r.reason, reached: r.reached.length }).toEqual({ status: 401, reason: 'token_missing', reached: 0 });
  });

  it('forwards names that merely contain the parameter, byte for byte', async () => {
    const r = await send('/v2/room/42?my_auth_token=1&auth_tokens=2&auth_token_x=3&q=AUTH_TOKEN&n=auth_token%3Dx', bearer());
    expect(r.status).toBe(200);
    expect(r.reached.map((q) => q.url)).toEqual(['/v2/room/42?my_auth_token=1&auth_tokens=2&auth_token_x=3&q=AUTH_TOKEN&n=auth_token%3Dx']);
  });

  // Public routes skip token extraction (SPEC §1.2), so nothing refuses there: the look-alikes
  // must still never be forwarded (SPEC §1.3, §5) — core/decide.ts strips them with stripParams.
  it('strips look-alikes from what a public route forwards', async () => {
    const r = await send(`/v2/capabilities?a=1&AUTH_TOKEN=${forged}&auth.token=x&b=2;auth_token=y&auth_token[]=z&AUTH_TEST=true`);
    expect(r.status).toBe(200);
    expect(r.reached.map((q) => q.url)).toEqual(['/v2/capabilities?a=1&b=2']);
  });
});

describe('strict auth_test (SPEC §1.6)', () => {
  it.each(['TRUE', 'true', 'True', '%74rue'])('answers auth_test=%s with the 202 probe; the upstream receives nothing', async (v) => {
    const r = await send(`/v2/room/42?auth_test=${v}`, bearer());
    expect(r.status).toBe(202);
    expect(JSON.parse(r.body)).toEqual({ success: { code: 202, message: 'This auth_token has access to use this method.', type: 'Accepted' } });
    expect(r.reached).toHaveLength(0);
  });

  it('forwards auth_test=false as a normal call, without auth_test in the query', async () => {
    const r = await send('/v2/room/42?a=1&auth_test=false&b=2', bearer());
    expect(r.status).toBe(200);
    expect(r.reached.map((q) => q.url)).toEqual(['/v2/room/42?a=1&b=2']);
  });

  it('forwards auth_test=FALSE without auth_test as well', async () => {
    const r = await send('/v2/room/42?auth_test=FALSE', bearer());
    expect(r.status).toBe(200);
    expect(r.reached.map((q) => q.url)).toEqual(['/v2/room/42']);
  });

  // core/decide.ts asks authTestMode (the old isAuthTest forwarded every one of these).
  it.each([
    'auth_test',
    'auth_test=',
    'auth_test=1',
    'auth_test=yes',
    'auth_test=on',
    'auth_test=true%20',
    'auth_test=true+',
    'auth_test=%20true',
    'auth_test=true;x=1',
    'auth_test=true&auth_test=true',
    'auth_test=false&auth_test=true',
    'AUTH_TEST=true',
    'Auth_Test=TRUE',
    'auth.test=true',
    'auth+test=true',
    'auth%20test=true',
    'auth_test[]=true',
    'auth_test%5B%5D=true',
    'auth_test[0]=true',
    'auth_test%00=true',
    'auth%255Ftest=true',
    'x;auth_test=true',
    'x=1;auth_test=true',
  ])('refuses %s as 400 bad_request; the upstream receives nothing', async (query) => {
    const r = await send(`/v2/room/42?${query}`, bearer());
    expect({ status: r.status, reason: r.reason, reached: r.reached.length }).toEqual({ status: 400, reason: 'bad_request', reached: 0 });
  });
});
