/**
 * The refresh grant's order of writes (src/token-service/endpoint.ts), on a real embedded store
 * behind the real token service (harness.ts), with the store's writes held or failed at chosen
 * moments to make the interleavings that a busy deployment produces by chance:
 *   - a refresh token presented twice at once — a thief racing the client, the case RFC 9700
 *     §4.14.2's reuse detection is for: one gets a new pair, the other is a replay that revokes the
 *     family, and the winner's new access token must be revoked with it, however the two
 *     interleave (it was not when the replay's revocation ran between the winner's rotation and the
 *     recording of its access token: a live access token from a revoked family);
 *   - a store failure while the access token is recorded is a 503 that consumed nothing: the same
 *     refresh token works on the retry the 503 invites (it was consumed, and the retry was a replay
 *     that revoked the family);
 *   - a refused refresh (family revoked) leaves no live token record behind.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openEmbeddedStore } from '../../src/token-service/store/embedded.js';
import type { TokenRecord, TokenStore } from '../../src/token-service/store.js';
import { tempDir, type TempDir } from '../helpers/tokens.js';
import { jwtPayload, serviceConfig, startService, type ServiceHarness } from './harness.js';

type Hooks = { recordToken?: (t: TokenRecord) => Promise<void> | void; afterRevokeFamily?: () => void };

/** The embedded store, with hooks (set per test) before recordToken and after revokeFamily. */
async function hookedStore(path: string, hooks: () => Hooks): Promise<TokenStore> {
  const real = await openEmbeddedStore(path, { control: false });
  return {
    ...real,
    async recordToken(t) {
      await hooks().recordToken?.(t);
      return real.recordToken(t);
    },
    async revokeFamily(familyId, now) {
      const out = await real.revokeFamily(familyId, now);
      hooks().afterRevokeFamily?.();
      return out;
    },
  };
}

// One store for the file (PGlite's initdb is slow); each test has its own client and family.
let dir: TempDir;
let store: TokenStore;
let h: ServiceHarness;
let hooks: Hooks = {};
beforeAll(async () => {
  dir = await tempDir();
  store = await hookedStore(`${dir.path}/store`, () => hooks);
  h = await startService(serviceConfig(), { store, dir });
}, 60_000);
afterEach(() => {
  hooks = {};
});
afterAll(async () => {
  await h?.close();
  await store?.close();
  await dir?.cleanup();
});

/** A new client and a new refresh family (livedigital's client_credentials answer carries a refresh token). */
async function setUp(with_: Hooks = {}) {
  const c = await h.createClient({ clientType: 'group', scopes: ['view_group'] });
  const post = async (body: Record<string, string>) => {
    const res = await fetch(`${h.url}/v1/auth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...body, client_id: c.id, client_secret: c.secret }) });
    return { status: res.status, body: (await res.json()) as Record<string, string> };
  };
  const grant = await post({ grant_type: 'client_credentials' });
  expect(grant.status).toBe(200);
  hooks = with_;
  const refresh = (rt: string) => post({ grant_type: 'refresh_token', refresh_token: rt });
  const replays = () => h.logs.filter((l) => l.includes('"event":"refresh_replay"') && l.includes(c.id)).length;
  return { c, rt: grant.body['refresh_token']!, refresh, replays };
}

describe('the refresh grant under interleavings', () => {
  it('a refresh token presented twice at once: the winner\'s new pair is revoked with the family, whichever way they interleave', async () => {
    // Hold every access-token record of a refresh until the replay's revocation has run, or until
    // both racers are waiting to record: the order that leaked the winner's token, if there is one.
    let open = false;
    let wake!: () => void;
    const gate = new Promise<void>((r) => (wake = r));
    const release = () => ((open = true), wake());
    let waiting = 0;
    let timedOut = false;
    const { c, rt, refresh, replays } = await setUp({
      recordToken: async () => {
        if (++waiting >= 2) release();
        const timer = new Promise<void>((r) => setTimeout(() => ((timedOut ||= !open), r()), 5000).unref());
        await Promise.race([gate, timer]);
      },
      afterRevokeFamily: () => release(),
    });
    const [x, y] = await Promise.all([refresh(rt), refresh(rt)]);
    expect(timedOut, 'the racers were released by the timeout, not by the interleaving').toBe(false);
    const answers = [x, y].sort((p, q) => p.status - q.status);
    expect(answers.map((a) => a.status)).toEqual([200, 400]);
    expect(answers[1]!.body['error']).toBe('invalid_grant');
    expect(replays()).toBe(1);

    const won = answers[0]!.body;
    const jti = String(jwtPayload(won['access_token']!)['jti']);
    expect((await store.getToken(jti))?.revokedAt, 'the winner\'s access token is still live in a revoked family').toBeDefined();
    expect(h.service.denylist.has(jti)).toBe(true);
    expect(await store.listTokens({ clientId: c.id }, Date.now())).toEqual([]);
    expect((await refresh(won['refresh_token']!)).status).toBe(400);
  });

  it('a store failure while recording the access token is a 503 that consumed nothing: the retry works', async () => {
    let failNext = false;
    const { rt, refresh, replays } = await setUp({
      recordToken: () => {
        if (!failNext) return;
        failNext = false;
        throw new Error('connection terminated unexpectedly');
      },
    });
    failNext = true;
    const failed = await refresh(rt);
    expect(failed).toMatchObject({ status: 503, body: { error: 'temporarily_unavailable' } });
    const retry = await refresh(rt);
    expect(retry.status).toBe(200);
    expect(replays()).toBe(0);
    // And it rotated: the retried token is spent now.
    expect((await refresh(retry.body['refresh_token']!)).status).toBe(200);
    expect((await refresh(rt)).body['error']).toBe('invalid_grant');
  });

  it('a refresh refused because its family is revoked leaves no live token record; a replay counts the tokens that were handed out', async () => {
    const { c, rt, refresh } = await setUp();
    const next = await refresh(rt);
    expect(next.status).toBe(200);
    const before = await h.counter('scopegate_revocations_total');
    expect((await refresh(rt)).body['error']).toBe('invalid_grant'); // replay: family revoked
    // The grant's access token and the rotation's: two (the replay's own never left the service).
    expect((await h.counter('scopegate_revocations_total')) - before).toBe(2);
    expect(h.logs.filter((l) => l.includes('"event":"refresh_replay"') && l.includes(c.id)).map((l) => JSON.parse(l).revoked_access_tokens)).toEqual([2]);
    const live = await store.listTokens({ clientId: c.id }, Date.now());
    expect(live).toEqual([]);
    expect((await refresh(next.body['refresh_token']!)).body['error']).toBe('invalid_grant');
    expect(await store.listTokens({ clientId: c.id }, Date.now())).toEqual([]);
  });
});
