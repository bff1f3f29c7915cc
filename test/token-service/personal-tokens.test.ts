/**
 * Personal and room notification tokens through the real gateway (embedded store, real
 * upstream): created with a user token, shown once, listed without the token, used on a route,
 * deleted and then refused; who may manage which; `last_used_at` via the usage recorder; and
 * property tests of the create-request parser.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPersonalTokens, createUsageRecorder, parseOwnTokenRequest } from '../../src/token-service/personal-tokens.js';
import { hashSecret, newId, newSecret } from '../../src/token-service/secrets.js';
import type { TokenStore } from '../../src/token-service/store.js';
import { openTokenStore } from '../../src/token-service/store/open.js';
import { openEmbeddedStore } from '../../src/token-service/store/embedded.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { startTestGateway, TEST_ISSUER, type TestGateway } from '../helpers/gateway.js';
import { tempDir, testClock, type TempDir } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { basic, jwtPayload } from './harness.js';

function gatewayYaml(o: { upstream: string; store: string }): string {
  return `
realm: api
shutdown_timeout_ms: 2000
upstreams:
  default: { url: ${o.upstream}, timeout_ms: 2000, connect_timeout_ms: 500 }
tokens:
  issuers:
    - name: svc
      issuer: https://auth.scopegate.test
      audience: api
      algorithms: [ES256]
${TEST_ISSUER}
token_service:
  issuer: svc
  store: ${o.store}
  password_grant: true
  lifetimes: { personal_s: 864000 }
  revocation: { max_lag_ms: 200 }
routes:
  - id: send-room-notification
    path: /v2/room/{room_id_or_name}/notification
    methods: [POST]
    scopes: [send_notification]
    client_types: [group, room, user]
    room_param: room_id_or_name
  - id: get-all-rooms
    path: /v2/room
    methods: [GET]
    scopes: [view_group, view_room]
    client_types: [group, user]
`;
}

interface Fixture {
  gw: TestGateway;
  up: Upstream;
  dir: TempDir;
  store: TokenStore;
  client: { id: string; secret: string };
  userToken(user: string): Promise<string>;
  close(): Promise<void>;
}

async function fixture(): Promise<Fixture> {
  const up = await startUpstream({ routes: { '/v2/room/42/notification': { kind: 'respond', status: 204 } } });
  const dir = await tempDir();
  const gw = await startTestGateway(gatewayYaml({ upstream: up.url, store: `${dir.path}/store` }));
  const store = await openTokenStore(`${dir.path}/store`, { attach: true });
  await store.putUser({ username: 'alice', passwordHash: await hashSecret('alice-pw'), scopes: ['view_group', 'view_room', 'send_notification'], createdAt: Date.now() });
  await store.putUser({ username: 'rhea', passwordHash: await hashSecret('rhea-pw'), scopes: ['view_group', 'admin_room', 'send_notification'], createdAt: Date.now() });
  const secret = newSecret();
  const id = newId('cl');
  await store.createClient({ id, name: 'app', secretHash: await hashSecret(secret), clientType: 'group', scopes: ['view_group', 'view_room', 'send_notification', 'admin_room'], createdAt: Date.now() });
  return {
    gw,
    up,
    dir,
    store,
    client: { id, secret },
    async userToken(user) {
      const res = await fetch(`${gw.url}/oauth/token`, {
        method: 'POST',
        headers: { authorization: basic(id, secret), 'content-type': 'application/x-www-form-urlencoded' },
        body: `grant_type=password&username=${user}&password=${user}-pw`,
      });
      expect(res.status).toBe(200);
      return ((await res.json()) as { access_token: string }).access_token;
    },
    async close() {
      await store.close();
      await gw.close();
      await up.close();
      await dir.cleanup();
    },
  };
}

const json = (t: string, body: unknown) => ({ method: 'POST', headers: { authorization: `Bearer ${t}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
const bearer = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });
const reason = async (res: Response) => ((await res.json()) as { error: { reason: string } }).error.reason;

describe('personal tokens: POST/GET/DELETE /v2/oauth/personal-tokens', () => {
  let f: Fixture;
  let alice: string;
  beforeAll(async () => {
    f = await fixture();
    alice = await f.userToken('alice');
  }, 60_000);
  afterAll(() => f.close());

  it('creates one (201, the token shown this once), lists it without the token, and the gateway accepts it', async () => {
    const res = await fetch(`${f.gw.url}/v2/oauth/personal-tokens`, json(alice, { name: 'ci bot', scopes: ['view_room', 'view_group'], expires_in_s: 3600 }));
    expect(res.status).toBe(201);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const made = (await res.json()) as { id: string; token: string; name: string; scopes: string[]; created_at: string; expires_at: string };
    expect(made).toMatchObject({ name: 'ci bot', scopes: ['view_group', 'view_room'] });
    // exp is whole seconds (JWT NumericDate) from the creation time.
    const life = Date.parse(made.expires_at) - Date.parse(made.created_at);
    expect(life).toBeGreaterThan(3_599_000);
    expect(life).toBeLessThanOrEqual(3_600_000);
    const claims = jwtPayload(made.token);
    expect(claims).toMatchObject({ sub: 'alice', client_type: 'user', jti: made.id, client_id: 'personal' });
    expect(made.id.startsWith('pt_')).toBe(true);

    const list = await fetch(`${f.gw.url}/v2/oauth/personal-tokens`, bearer(alice));
    const text = await list.text();
    expect(text).not.toContain(made.token.split('.')[2]!);
    const { tokens } = JSON.parse(text) as { tokens: Array<Record<string, unknown>> };
    expect(tokens).toEqual([{ id: made.id, name: 'ci bot', scopes: ['view_group', 'view_room'], created_at: made.created_at, last_used_at: null, expires_at: made.expires_at }]);

    const n = f.up.requests.length;
    const api = await fetch(`${f.gw.url}/v2/room`, bearer(made.token));
    expect(api.status).toBe(200);
    const seen = f.up.requests[n]!;
    expect(seen.headers['x-auth-subject']).toBe('alice');
    expect(seen.headers['x-auth-token-id']).toBe(made.id);
  });

  it('deletes one (204): its session is gone and the list no longer has it', async () => {
    const made = (await (await fetch(`${f.gw.url}/v2/oauth/personal-tokens`, json(alice, { name: 'short-lived', scopes: 'view_group' }))).json()) as { id: string; token: string; expires_at: string };
    expect((await fetch(`${f.gw.url}/v2/room`, bearer(made.token))).status).toBe(200); // now cached as verified
    // Without expires_in_s: the longest lifetime (lifetimes.personal_s, 10 days here).
    expect(Date.parse(made.expires_at) - Date.now()).toBeGreaterThan(864_000_000 - 60_000);
    const del = await fetch(`${f.gw.url}/v2/oauth/personal-tokens/${made.id}`, { method: 'DELETE', ...bearer(alice) });
    expect(del.status).toBe(204);
    const { tokens } = (await (await fetch(`${f.gw.url}/v2/oauth/personal-tokens`, bearer(alice))).json()) as { tokens: Array<{ id: string }> };
    expect(tokens.map((t) => t.id)).not.toContain(made.id);
    const session = await fetch(`${f.gw.url}/v2/oauth/token/${made.token}`, bearer(made.token));
    expect(session.status).toBe(401);
    expect(await reason(session)).toBe('token_revoked');
    const n = f.up.requests.length;
    const api = await fetch(`${f.gw.url}/v2/room`, bearer(made.token));
    expect(api.status).toBe(401);
    expect(await reason(api)).toBe('token_revoked');
    expect(f.up.requests).toHaveLength(n);
  });

  it('refuses a personal token managing personal tokens, a client token, and scopes beyond the caller\'s', async () => {
    const made = (await (await fetch(`${f.gw.url}/v2/oauth/personal-tokens`, json(alice, { name: 'p', scopes: ['view_group'] }))).json()) as { token: string };
    const byPersonal = await fetch(`${f.gw.url}/v2/oauth/personal-tokens`, json(made.token, { name: 'nested', scopes: ['view_group'] }));
    expect(byPersonal.status).toBe(403);
    expect(await reason(byPersonal)).toBe('client_type_forbidden');
    expect((await fetch(`${f.gw.url}/v2/oauth/personal-tokens`, bearer(made.token))).status).toBe(403);

    const cc = await fetch(`${f.gw.url}/v2/oauth/token`, { method: 'POST', headers: { authorization: basic(f.client.id, f.client.secret), 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials' });
    const clientToken = ((await cc.json()) as { access_token: string }).access_token;
    const byClient = await fetch(`${f.gw.url}/v2/oauth/personal-tokens`, json(clientToken, { name: 'x', scopes: ['view_group'] }));
    expect(byClient.status).toBe(403);
    expect(await reason(byClient)).toBe('client_type_forbidden');

    const tooMuch = await fetch(`${f.gw.url}/v2/oauth/personal-tokens`, json(alice, { name: 'x', scopes: ['view_group', 'admin_group'] }));
    expect(tooMuch.status).toBe(400);
    expect(await reason(tooMuch)).toBe('invalid_scope');
    const noName = await fetch(`${f.gw.url}/v2/oauth/personal-tokens`, json(alice, { scopes: ['view_group'] }));
    expect(noName.status).toBe(400);
    expect(await reason(noName)).toBe('invalid_request');
    const tooLong = await fetch(`${f.gw.url}/v2/oauth/personal-tokens`, json(alice, { name: 'x', scopes: ['view_group'], expires_in_s: 864_001 }));
    expect(tooLong.status).toBe(400);
    const notJson = await fetch(`${f.gw.url}/v2/oauth/personal-tokens`, { method: 'POST', headers: { authorization: `Bearer ${alice}`, 'content-type': 'text/plain' }, body: '{}' });
    expect(notJson.status).toBe(400);
    expect((await fetch(`${f.gw.url}/v2/oauth/personal-tokens`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).status).toBe(401);
  });

  it("lets nobody delete another user's token (403 not_owner), and the token keeps working", async () => {
    const rhea = await f.userToken('rhea');
    const made = (await (await fetch(`${f.gw.url}/v2/oauth/personal-tokens`, json(alice, { name: 'mine', scopes: ['view_group'] }))).json()) as { id: string; token: string };
    const del = await fetch(`${f.gw.url}/v2/oauth/personal-tokens/${made.id}`, { method: 'DELETE', ...bearer(rhea) });
    expect(del.status).toBe(403);
    expect(await reason(del)).toBe('not_owner');
    expect((await fetch(`${f.gw.url}/v2/oauth/token/${made.token}`, bearer(made.token))).status).toBe(200);
  });

  it('records last_used_at at most once per 10 minutes per token, from any replica', async () => {
    const made = (await (await fetch(`${f.gw.url}/v2/oauth/personal-tokens`, json(alice, { name: 'used', scopes: ['view_group'] }))).json()) as { id: string };
    const clock = testClock(Date.UTC(2031, 0, 1));
    // Another replica: its own recorder on the same store (here through the control socket).
    const usage = createUsageRecorder(f.store, { clock });
    usage.seen(made.id);
    await usage.flush();
    const lastUsed = async () => ((await (await fetch(`${f.gw.url}/v2/oauth/personal-tokens`, bearer(alice))).json()) as { tokens: Array<{ id: string; last_used_at: string | null }> }).tokens.find((t) => t.id === made.id)!.last_used_at;
    expect(await lastUsed()).toBe('2031-01-01T00:00:00.000Z');
    clock.advance(9 * 60_000);
    usage.seen(made.id);
    await usage.flush();
    expect(await lastUsed()).toBe('2031-01-01T00:00:00.000Z');
    clock.advance(60_000);
    usage.seen(made.id);
    await usage.flush();
    expect(await lastUsed()).toBe('2031-01-01T00:10:00.000Z');
  });
});

describe('room notification tokens: /v2/room/{room}/notification-tokens', () => {
  let f: Fixture;
  let rhea: string;
  beforeAll(async () => {
    f = await fixture();
    rhea = await f.userToken('rhea');
  }, 60_000);
  afterAll(() => f.close());
  const base = () => `${f.gw.url}/v2/room/42/notification-tokens`;

  it('makes a send_notification token bound to room 42, which notifies room 42 and no other', async () => {
    const res = await fetch(base(), json(rhea, { name: 'builds' }));
    expect(res.status).toBe(201);
    const made = (await res.json()) as { id: string; token: string; scopes: string[]; room: string };
    expect(made).toMatchObject({ scopes: ['send_notification'], room: '42' });
    expect(made.id.startsWith('rn_')).toBe(true);
    expect(jwtPayload(made.token)).toMatchObject({ client_type: 'room', room_id: '42', scope: 'send_notification' });
    const n = f.up.requests.length;
    const ok = await fetch(`${f.gw.url}/v2/room/42/notification`, { method: 'POST', headers: { authorization: `Bearer ${made.token}`, 'content-type': 'application/json' }, body: '{"message":"hi"}' });
    expect(ok.status).toBe(204);
    expect(f.up.requests[n]?.headers['x-auth-room']).toBe('42');
    const other = await fetch(`${f.gw.url}/v2/room/43/notification`, { method: 'POST', headers: { authorization: `Bearer ${made.token}` }, body: '{}' });
    expect(other.status).toBe(403);
    expect(await reason(other)).toBe('room_forbidden');
    expect(f.up.requests).toHaveLength(n + 1);

    const list = (await (await fetch(base(), bearer(rhea))).json()) as { tokens: Array<{ id: string; room: string }> };
    expect(list.tokens.map((t) => t.id)).toContain(made.id);
    expect((await fetch(`${f.gw.url}/v2/room/43/notification-tokens`, bearer(rhea)).then((r) => r.json())) as unknown).toEqual({ tokens: [] });
    expect((await fetch(`${base()}/${made.id}`, { method: 'DELETE', ...bearer(rhea) })).status).toBe(204);
    // Deleted: a token for another room path cannot be deleted through room 43 either.
    expect((await fetch(`${f.gw.url}/v2/room/43/notification-tokens/${made.id}`, { method: 'DELETE', ...bearer(rhea) })).status).toBe(403);
  });

  it('needs admin_room or admin_group (403 scope_insufficient) and only send_notification', async () => {
    const alice = await f.userToken('alice');
    const res = await fetch(base(), json(alice, { name: 'x' }));
    expect(res.status).toBe(403);
    expect(await reason(res)).toBe('scope_insufficient');
    const wider = await fetch(base(), json(rhea, { name: 'x', scopes: ['send_notification', 'view_group'] }));
    expect(wider.status).toBe(400);
    expect(await reason(wider)).toBe('invalid_scope');
  });

  it('binds a room given by name to that name', async () => {
    const res = await fetch(`${f.gw.url}/v2/room/Ops%20Room/notification-tokens`, json(rhea, { name: 'ops' }));
    expect(res.status).toBe(201);
    const made = (await res.json()) as { token: string; room: string };
    expect(made.room).toBe('Ops Room');
    expect(jwtPayload(made.token)).toMatchObject({ client_type: 'room', room_name: 'Ops Room' });
    expect(jwtPayload(made.token)['room_id']).toBeUndefined();
  });
});

describe('create-request parser and the usage recorder', () => {
  const allowed = ['view_group', 'view_room', 'send_notification'];

  it('never throws, and never yields a scope, name or lifetime outside the bounds', () => {
    const body = fc.oneof(
      fc.anything(),
      fc.record(
        {
          name: fc.oneof(fc.string({ maxLength: 200 }), fc.anything()),
          scopes: fc.oneof(fc.array(fc.oneof(fc.constantFrom(...allowed, 'admin_group', ''), fc.string({ maxLength: 12 })), { maxLength: 70 }), fc.string({ maxLength: 60 }), fc.anything()),
          expires_in_s: fc.oneof(fc.integer(), fc.double(), fc.string({ maxLength: 14 }), fc.anything()),
        },
        { requiredKeys: [] },
      ),
    );
    fc.assert(
      fc.property(body, fc.boolean(), (b, room) => {
        const r = parseOwnTokenRequest(b, room ? { allowed: ['send_notification'], maxLifetimeS: 1000, fixedScopes: ['send_notification'] } : { allowed, maxLifetimeS: 1000 });
        if (!r.ok) return;
        expect(r.value.scopes.length).toBeGreaterThan(0);
        for (const s of r.value.scopes) expect(room ? ['send_notification'] : allowed).toContain(s);
        expect(new Set(r.value.scopes).size).toBe(r.value.scopes.length);
        expect(Number.isSafeInteger(r.value.expiresInS) && r.value.expiresInS >= 1 && r.value.expiresInS <= 1000).toBe(true);
        expect(r.value.name.trim()).not.toBe('');
        // eslint-disable-next-line no-control-regex
        expect(/[\x00-\x1f\x7f]/.test(r.value.name)).toBe(false);
      }),
      { numRuns: 2000 },
    );
    expect(parseOwnTokenRequest({ name: 'n', scopes: 'view_room view_group' }, { allowed, maxLifetimeS: 10 })).toEqual({ ok: true, value: { name: 'n', scopes: ['view_group', 'view_room'], expiresInS: 10 } });
    expect(parseOwnTokenRequest({ name: 'n', scopes: ['x'] }, { allowed, maxLifetimeS: 10 })).toMatchObject({ ok: false, code: 'invalid_scope' });
    expect(parseOwnTokenRequest({ name: '\u0000', scopes: ['view_group'] }, { allowed, maxLifetimeS: 10 })).toMatchObject({ ok: false, code: 'invalid_request' });
  });

  it('a failed touch is counted and retried on the next sighting, a good one throttled; bad options are refused at once', async () => {
    const dir = await tempDir();
    const store = await openEmbeddedStore(`${dir.path}/store`, { control: false });
    const clock = testClock(Date.UTC(2031, 0, 1));
    const now = clock();
    await store.recordToken({ jti: 'pt_x', kind: 'personal', ownerType: 'user', ownerId: 'u', subject: 'u', scopes: [], createdAt: now, expiresAt: now + 3_600_000 });
    const metrics = createMetrics({ processMetrics: false });
    const usage = createUsageRecorder(store, { clock, metrics });
    const errors = async () => (await metrics.registry.getSingleMetric('scopegate_store_errors_total')?.get())?.values.find((v) => v.labels['op'] === 'touchToken')?.value ?? 0;
    usage.seen('pt_x');
    usage.seen('pt_x'); // throttled: one write
    await usage.flush();
    expect((await store.getToken('pt_x'))?.lastUsedAt).toBe(now);
    await store.close(); // from here on every write fails
    await dir.cleanup();
    clock.advance(600_000);
    usage.seen('pt_x');
    await usage.flush();
    expect(await errors()).toBe(1);
    usage.seen('pt_x'); // not remembered after the failure: tried again at once
    await usage.flush();
    expect(await errors()).toBe(2);
    expect(() => createUsageRecorder(store, { clock, intervalMs: 0 })).toThrow(/intervalMs/);
    expect(() => createPersonalTokens(undefined as never)).toThrow(/required/);
  }, 60_000);
});
