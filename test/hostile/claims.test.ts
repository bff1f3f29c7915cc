/**
 * Hostile claims through the real gateway (SPEC §3, issue 10 rules 6, 8, 9): correctly signed
 * tokens whose claims are not representable exactly, room names made of digits, and re-spelled
 * signatures. The gateway listens on 127.0.0.1:0 in front of a real echo upstream; every refusal
 * is asserted by its status and reason AND by the upstream having received nothing.
 *
 * @example
 *   npx vitest run test/hostile/claims.test.ts
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway.js';
import { hsToken } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { rawRequest, type RawResponse } from '../helpers/http.js';

let up: Upstream;
let gw: TestGateway;

const RATE_LIMIT = `rate_limit:
  store: memory
  key: token
  default: { limit: 1000, window_s: 300 }
  client_types:
    group: { limit: 2, window_s: 300 }`;

beforeAll(async () => {
  up = await startUpstream();
  gw = await startTestGateway(baseConfig({ upstream: up.url, rateLimit: RATE_LIMIT }));
});
afterAll(async () => {
  await gw?.close();
  await up?.close();
});
beforeEach(() => {
  up.requests.length = 0;
});

/** A correctly signed token (TEST_SECRET, iss/aud the gateway expects) with these claims on top. No jti unless given. */
function mint(over: Record<string, unknown> = {}): Promise<string> {
  const iat = Math.floor(Date.now() / 1000);
  return hsToken(TEST_SECRET, {
    iss: 'scopegate-test',
    aud: 'api',
    sub: 'alice',
    iat,
    exp: iat + 3600,
    client_type: 'user',
    scope: 'view_group view_room send_notification',
    ...over,
  });
}

const get = (path: string, token: string): Promise<RawResponse> => rawRequest(gw.url, 'GET', path, { authorization: `Bearer ${token}` });

function reason(res: RawResponse): string | undefined {
  return (JSON.parse(res.body) as { error?: { reason?: string } }).error?.reason;
}

async function expectRefused(res: RawResponse, status: number, why: string): Promise<void> {
  expect(res.status).toBe(status);
  expect(reason(res)).toBe(why);
  // Give a forwarded request (if there were one) time to land before asserting there was none.
  await new Promise((r) => setTimeout(r, 20));
  expect(up.requests).toHaveLength(0);
}

describe('an identity that is not exact is 401 token_malformed and never reaches the upstream', () => {
  it('forwards a clean subject exactly (the control case)', async () => {
    const res = await get('/v2/room', await mint({ sub: 'admin' }));
    expect(res.status).toBe(200);
    expect(up.requests).toHaveLength(1);
    expect(up.requests[0]!.headers['x-auth-subject']).toBe('admin');
  });

  it.each<[string, unknown]>([
    ['"admin\\u0000"', 'admin\u0000'],
    ['"ad\\u0007min"', 'ad\u0007min'],
    ['"  admin  "', '  admin  '],
    ['"admin\\r\\nX-Auth-Scopes: admin_group"', 'admin\r\nX-Auth-Scopes: admin_group'],
    ['"admin\\u0085"', 'admin\u0085'],
    ['"admin\\u2028"', 'admin\u2028'],
    ['"\\u00a0admin"', '\u00a0admin'],
    ['"admin\\ud800"', 'admin\ud800'],
    ['["admin"]', ['admin']],
    ['{"name":"admin"}', { name: 'admin' }],
    ['true', true],
    ['null', null],
    ['42.5', 42.5],
    ['2**53', 2 ** 53],
  ])('sub %s', async (_what, sub) => {
    await expectRefused(await get('/v2/room', await mint({ sub })), 401, 'token_malformed');
  });

  it('refuses subjects longer than 1024 bytes instead of cutting two different ones to the same header', async () => {
    const a = await mint({ sub: `${'a'.repeat(1024)}-alice` });
    const b = await mint({ sub: `${'a'.repeat(1024)}-mallory` });
    await expectRefused(await get('/v2/room', a), 401, 'token_malformed');
    await expectRefused(await get('/v2/room', b), 401, 'token_malformed');
    const exact = await get('/v2/room', await mint({ sub: 'a'.repeat(1024) }));
    expect(exact.status).toBe(200);
    expect(up.requests[0]!.headers['x-auth-subject']).toBe('a'.repeat(1024));
  });

  it.each<[string, unknown]>([
    ['"x admin_group" in an array', ['view_group', 'x admin_group']],
    ['a tab in the string', 'view_group\tadmin_group'],
    ['a newline in the string', 'view_group\nadmin_group'],
    ['a number in the array', ['view_group', 1]],
    ['a number', 7],
  ])('scope with %s', async (_what, scope) => {
    await expectRefused(await get('/v2/admin/users', await mint({ scope })), 401, 'token_malformed');
  });

  it('never turns a scope element "x admin_group" into an admin_group scope upstream', async () => {
    await expectRefused(await get('/v2/admin/users', await mint({ scope: ['view_group', 'x admin_group'] })), 401, 'token_malformed');
    // The same route with the scopes spelled properly is allowed: the refusal above was the claim, not the route.
    const ok = await get('/v2/admin/users', await mint({ scope: ['view_group', 'admin_group'] }));
    expect(ok.status).toBe(200);
    expect(up.requests[0]!.headers['x-auth-scopes']).toBe('view_group admin_group');
  });

  it.each<[string, unknown]>([
    ['a number', 3],
    ['an object', { type: 'user' }],
    ['"user\\u0000"', 'user\u0000'],
  ])('client type %s', async (_what, client_type) => {
    await expectRefused(await get('/v2/room', await mint({ client_type })), 401, 'token_malformed');
  });
});

describe('room binding is never skipped (rule 6)', () => {
  it.each<[string, unknown]>([
    ['an array', [7]],
    ['an array of the path value', ['42']],
    ['an object', { id: 42 }],
    ['a boolean', true],
    ['null', null],
    ['a float', 42.0001],
    ['an empty string', ''],
  ])('a room claim that is %s on a room_param route is 401, not forwarded', async (_what, room_id) => {
    await expectRefused(await get('/v2/room/42', await mint({ room_id })), 401, 'token_malformed');
  });

  it('a room claim that is an integer binds the token to that room', async () => {
    const t = await mint({ client_type: 'room', room_id: 7 });
    await expectRefused(await get('/v2/room/42', t), 403, 'room_forbidden');
    const own = await get('/v2/room/7', t);
    expect(own.status).toBe(200);
    expect(up.requests[0]!.url).toBe('/v2/room/7');
    expect(up.requests[0]!.headers['x-auth-room']).toBe('7');
  });

  it('a room name made of digits does not reach the room whose id is that number', async () => {
    const t = await mint({ client_type: 'room', room_id: 7, room_name: '42' });
    await expectRefused(await get('/v2/room/42', t), 403, 'room_forbidden');
    for (const spelled of ['042', '%34%32', '+42', '%EF%BC%94%EF%BC%92' /* fullwidth ４２ */]) {
      await expectRefused(await get(`/v2/room/${spelled}`, t), 403, 'room_forbidden');
    }
    const own = await get('/v2/room/7', t);
    expect(own.status).toBe(200);
    expect(up.requests).toHaveLength(1);
  });

  it('a room name that is not numeric still reaches its room by name', async () => {
    const t = await mint({ client_type: 'room', room_id: 7, room_name: 'Ops42' });
    const res = await get('/v2/room/Ops42', t);
    expect(res.status).toBe(200);
    expect(up.requests[0]!.url).toBe('/v2/room/Ops42');
  });

  it('a token without any room claim stays unbound', async () => {
    const res = await get('/v2/room/42', await mint());
    expect(res.status).toBe(200);
    expect(up.requests[0]!.headers['x-auth-room']).toBeUndefined();
  });
});

/** Every spelling of a base64url part decoding to the same bytes. */
function spellings(part: string): string[] {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const unused = part.length % 4 === 2 ? 4 : part.length % 4 === 3 ? 2 : 0;
  const base = alphabet.indexOf(part.at(-1)!) & ~((1 << unused) - 1);
  return Array.from({ length: 1 << unused }, (_, low) => part.slice(0, -1) + alphabet[base | low]!);
}

describe('one token, one budget (rule 8)', () => {
  it('of the 4 HS256 signature spellings only the canonical passes; the others are 401 and get no budget of their own', async () => {
    // A group token (limit 2 per window) without jti: its budget is keyed by the token hash.
    const token = await mint({ sub: 'budget-test', client_type: 'group' });
    const [h, p, sig] = token.split('.') as [string, string, string];
    const others = spellings(sig)
      .filter((s) => s !== sig)
      .map((s) => `${h}.${p}.${s}`);
    expect(others).toHaveLength(3);

    const first = await get('/v2/room', token);
    expect(first.status).toBe(200);
    expect(first.headers['x-ratelimit-remaining']).toBe('1');

    for (const t of others) {
      const res = await get('/v2/room', t);
      expect(res.status).toBe(401);
      expect(reason(res)).toBe('token_malformed');
      expect(res.headers['x-ratelimit-limit']).toBeUndefined();
      expect(res.headers['x-ratelimit-remaining']).toBeUndefined();
      // Through the query parameter too.
      const q = await rawRequest(gw.url, 'GET', `/v2/room?auth_token=${t}`, {});
      expect(q.status).toBe(401);
      expect(reason(q)).toBe('token_malformed');
    }

    const second = await get('/v2/room', token);
    expect(second.status).toBe(200);
    expect(second.headers['x-ratelimit-remaining']).toBe('0');
    const third = await get('/v2/room', token);
    expect(third.status).toBe(429);
    // A re-spelling cannot buy a fresh window once the token's own is spent.
    for (const t of others) expect((await get('/v2/room', t)).status).toBe(401);
    expect(up.requests).toHaveLength(2);
  });
});
