/**
 * The token-store contract (SPEC §9 "Store"): ONE suite, run against the embedded store (PGlite in a
 * temp directory) and PostgreSQL (a private schema of the real server). Every method, the atomic
 * ones under real concurrency, and revocation push on postgres across two store instances.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayError } from '../../src/errors.js';
import type { ClientRecord, KeyRecord, RefreshRecord, RevocationRecord, TokenRecord, TokenStore } from '../../src/token-service/store.js';
import { openTokenStore } from '../../src/token-service/store/open.js';
import { createTestSchema, pgIsAvailable, postgresUrl, type TestSchema } from '../helpers/postgres.js';

const T0 = 1_700_000_000_000;
let seq = 0;
const uid = (p: string) => `${p}-${++seq}-${Math.random().toString(36).slice(2, 8)}`;

function client(over: Partial<ClientRecord> = {}): ClientRecord {
  return { id: uid('cl'), name: 'Build bot', secretHash: 'scrypt$16$1$1$c2FsdA$aGFzaA', clientType: 'group', scopes: ['send_notification', 'view_group', 'admin_room'], createdAt: T0, ...over };
}
function token(over: Partial<TokenRecord> = {}): TokenRecord {
  return { jti: uid('jti'), kind: 'access', ownerType: 'client', ownerId: 'owner', subject: 'sub', scopes: ['view_group'], createdAt: T0, expiresAt: T0 + 3_600_000, ...over };
}
function refresh(over: Partial<RefreshRecord> = {}): RefreshRecord {
  return { id: uid('rt'), secretHash: 'h', familyId: uid('fam'), clientId: 'c1', subject: 'sub', ownerType: 'user', scopes: ['a'], createdAt: T0, expiresAt: T0 + 86_400_000, ...over };
}
function key(kid: string, createdAt = T0): KeyRecord {
  return { kid, alg: 'ES256', privateJwk: `{"kid":"${kid}","d":"x"}`, publicJwk: `{"kid":"${kid}"}`, createdAt };
}

interface Backend {
  name: 'embedded' | 'postgres';
  setup(): Promise<void>;
  /** The store under test (one per suite: opening PGlite costs seconds). */
  store(): TokenStore;
  /** A second, independent instance on the same data (postgres only: the embedded store is one process). */
  second?(): Promise<TokenStore>;
  /** The postgres schema (the listener's LISTEN names it). */
  schema?(): string;
  teardown(): Promise<void>;
}

function embeddedBackend(): Backend {
  let dir = '';
  let s: TokenStore;
  return {
    name: 'embedded',
    async setup() {
      dir = await mkdtemp(join(tmpdir(), 'sg-contract-'));
      s = await openTokenStore(dir);
    },
    store: () => s,
    async teardown() {
      await s?.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function postgresBackend(): Backend {
  let schema: TestSchema;
  let s: TokenStore;
  const extra: TokenStore[] = [];
  return {
    name: 'postgres',
    async setup() {
      schema = await createTestSchema('contract');
      s = await openTokenStore(schema.url, { reconnectMinMs: 50, reconnectMaxMs: 200 });
    },
    store: () => s,
    schema: () => schema.name,
    async second() {
      const t = await openTokenStore(schema.url, { reconnectMinMs: 50, reconnectMaxMs: 200 });
      extra.push(t);
      return t;
    },
    async teardown() {
      for (const t of extra) await t.close();
      await s?.close();
      await schema?.drop();
    },
  };
}

const backends: Backend[] = [embeddedBackend()];
if (pgIsAvailable()) backends.push(postgresBackend());
else if (process.env.CI) {
  it('needs a reachable PostgreSQL (CI is set)', () => {
    throw new Error(`PostgreSQL is not reachable at ${postgresUrl()}`);
  });
} else console.warn(`\n[token-store contract] postgres backend SKIPPED: not reachable at ${postgresUrl()}\n`);

/** Resolves when `pred` holds, polling; rejects after `ms`. */
async function until(pred: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.each(backends)('token store contract: $name', (b) => {
  beforeAll(() => b.setup(), 60_000);
  afterAll(() => b.teardown(), 30_000);
  const s = () => b.store();

  it('reports its kind and answers ping', async () => {
    expect(s().kind).toBe(b.name);
    await expect(s().ping()).resolves.toBeUndefined();
  });

  describe('clients', () => {
    it('creates, reads back exactly (scope order kept, absent fields undefined), lists and rotates the secret', async () => {
      const c = client({ roomId: '42', roomName: 'Ops', clientType: 'room' });
      await s().createClient(c);
      const got = await s().getClient(c.id);
      expect(got).toEqual(c);
      expect(got!.groupId).toBeUndefined();
      expect(got!.scopes).toEqual(['send_notification', 'view_group', 'admin_room']);
      expect((await s().listClients()).map((x) => x.id)).toContain(c.id);
      expect(await s().setClientSecret(c.id, 'new-hash')).toBe(true);
      expect((await s().getClient(c.id))!.secretHash).toBe('new-hash');
      expect(await s().setClientSecret('no-such-client', 'x')).toBe(false);
      expect(await s().getClient('no-such-client')).toBeUndefined();
    });

    it('refuses a second client with the same id in the error vocabulary', async () => {
      const c = client();
      await s().createClient(c);
      const err = await s().createClient(c).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(GatewayError);
      expect((err as GatewayError).code).toBe('store_unavailable');
      expect((err as GatewayError).detail.why).toMatch(/createClient/);
      expect((err as GatewayError).detail.why).not.toContain(c.secretHash);
    });

    it('deleteClient returns the jtis of its live tokens only, revokes them and its refresh tokens', async () => {
      const c = client();
      await s().createClient(c);
      const now = T0 + 1000;
      const live1 = token({ clientId: c.id, ownerId: c.id });
      const live2 = token({ clientId: c.id, ownerId: c.id, createdAt: T0 + 1 });
      const expired = token({ clientId: c.id, ownerId: c.id, expiresAt: T0 + 500 });
      const revoked = token({ clientId: c.id, ownerId: c.id });
      const other = token({ clientId: 'someone-else' });
      for (const t of [live1, live2, expired, revoked, other]) await s().recordToken(t);
      await s().revoke([{ jti: revoked.jti, expiresAt: revoked.expiresAt }], T0 + 10);
      const rt = refresh({ clientId: c.id });
      await s().createRefresh(rt);

      const jtis = await s().deleteClient(c.id, now);
      expect(jtis).toEqual([live1.jti, live2.jti]);
      expect(await s().getClient(c.id)).toBeUndefined();
      expect(await s().deleteClient(c.id, now)).toBeUndefined();
      // The store revoked them itself (denylist + rows), so a caller's own revoke is an idempotent no-op.
      const since = (await s().revokedSince(now, now)).map((r) => r.jti);
      expect(since).toEqual(expect.arrayContaining([live1.jti, live2.jti]));
      expect(since).not.toContain(other.jti);
      expect((await s().getToken(live1.jti))!.revokedAt).toBe(now);
      expect(await s().listTokens({ clientId: c.id }, now)).toEqual([]);
      expect(await s().rotateRefresh(rt.id, refresh({ familyId: rt.familyId }), now)).toEqual({ ok: false, reason: 'revoked' });
    });
  });

  describe('users', () => {
    it('puts (upserting), gets, lists in username order and deletes', async () => {
      const name = uid('zed');
      await s().putUser({ username: name, passwordHash: 'p1', scopes: ['view_room'], createdAt: T0 });
      await s().putUser({ username: `a${name}`, passwordHash: 'p', scopes: [], displayName: 'Ann', groupId: 'g1', createdAt: T0 });
      await s().putUser({ username: name, passwordHash: 'p2', scopes: ['view_room', 'send_message'], displayName: 'Zed', createdAt: T0 + 5 });
      const u = await s().getUser(name);
      expect(u).toEqual({ username: name, passwordHash: 'p2', scopes: ['view_room', 'send_message'], displayName: 'Zed', groupId: undefined, createdAt: T0 });
      const names = (await s().listUsers()).map((x) => x.username);
      expect(names.indexOf(`a${name}`)).toBeLessThan(names.indexOf(name));
      expect(await s().deleteUser(name)).toBe(true);
      expect(await s().deleteUser(name)).toBe(false);
      expect(await s().getUser(name)).toBeUndefined();
    });
  });

  describe('signing keys', () => {
    // Keys are global to a store: this block runs in order and reasons about the whole list.
    it('adds a first key only if none exists, even when asked several times at once', async () => {
      const results = await Promise.all([1, 2, 3, 4].map((i) => s().addKey(key(`k-first-${i}`), { now: T0, maxLifetimeMs: 1000, onlyIfNone: true })));
      expect(results.filter(Boolean)).toHaveLength(1);
      const keys = await s().listKeys();
      expect(keys).toHaveLength(1);
      expect(keys[0]!.retiredAt).toBeUndefined();
      expect(await s().addKey(key('k-late'), { now: T0, maxLifetimeMs: 1000, onlyIfNone: true })).toBe(false);
    });

    it('a new key retires the current one, which stays published for maxLifetimeMs', async () => {
      const [first] = await s().listKeys();
      expect(await s().addKey(key('k-second', T0 + 10), { now: T0 + 10, maxLifetimeMs: 5_000 })).toBe(true);
      const keys = await s().listKeys();
      expect(keys.map((k) => k.kid)).toEqual(['k-second', first!.kid]); // newest first
      expect(keys[0]!.retiredAt).toBeUndefined();
      expect(keys[1]).toMatchObject({ retiredAt: T0 + 10, publishUntil: T0 + 5_010, privateJwk: first!.privateJwk });
    });

    it('purgeExpired removes a retired key only after publishUntil, never the current one', async () => {
      await s().purgeExpired(T0 + 5_009);
      expect((await s().listKeys()).map((k) => k.kid)).toHaveLength(2);
      await s().purgeExpired(T0 + 5_010);
      expect((await s().listKeys()).map((k) => k.kid)).toEqual(['k-second']);
      await s().purgeExpired(T0 + 10 ** 12);
      expect((await s().listKeys()).map((k) => k.kid)).toEqual(['k-second']);
    });

    if (b.name === 'postgres') {
      it('two replicas adding a first key at once on a fresh schema end with ONE key', async () => {
        const schema = await createTestSchema('keys');
        try {
          const [x, y] = await Promise.all([openTokenStore(schema.url), openTokenStore(schema.url)]);
          try {
            const r = await Promise.all([
              x.addKey(key('kx'), { now: T0, maxLifetimeMs: 1, onlyIfNone: true }),
              y.addKey(key('ky'), { now: T0, maxLifetimeMs: 1, onlyIfNone: true }),
            ]);
            expect(r.filter(Boolean)).toHaveLength(1);
            expect(await x.listKeys()).toHaveLength(1);
            expect(await y.listKeys()).toEqual(await x.listKeys());
          } finally {
            await x.close();
            await y.close();
          }
        } finally {
          await schema.drop();
        }
      });
    }
  });

  describe('issued tokens', () => {
    it('records, reads back exactly and touches', async () => {
      const t = token({ kind: 'personal', ownerType: 'user', ownerId: 'alice', name: 'laptop', roomId: undefined, familyId: 'f1', clientId: undefined });
      await s().recordToken(t);
      expect(await s().getToken(t.jti)).toEqual(t);
      await s().touchToken(t.jti, T0 + 99);
      expect((await s().getToken(t.jti))!.lastUsedAt).toBe(T0 + 99);
      expect(await s().getToken('nope')).toBeUndefined();
    });

    it('listTokens: live at `now` only, every filter field applies', async () => {
      const owner = uid('owner');
      const a = token({ ownerId: owner, kind: 'personal', createdAt: T0 });
      const bb = token({ ownerId: owner, kind: 'room_notification', roomId: '7', clientId: 'cx', createdAt: T0 + 1 });
      const old = token({ ownerId: owner, kind: 'personal', expiresAt: T0 + 10 });
      const gone = token({ ownerId: owner, kind: 'personal' });
      const other = token({ ownerId: uid('other'), kind: 'personal' });
      for (const t of [a, bb, old, gone, other]) await s().recordToken(t);
      await s().revoke([{ jti: gone.jti, expiresAt: gone.expiresAt }], T0 + 1);
      const ids = async (f: Parameters<TokenStore['listTokens']>[0], now = T0 + 20) => (await s().listTokens(f, now)).map((t) => t.jti);
      expect(await ids({ ownerId: owner })).toEqual([a.jti, bb.jti]);
      expect((await ids({ ownerId: owner }, T0 + 5)).sort()).toEqual([a.jti, bb.jti, old.jti].sort());
      expect(await ids({ ownerId: owner, kind: 'personal' })).toEqual([a.jti]);
      expect(await ids({ ownerId: owner, roomId: '7' })).toEqual([bb.jti]);
      expect(await ids({ clientId: 'cx', ownerId: owner })).toEqual([bb.jti]);
      expect(await ids({ ownerId: owner, kind: 'access' })).toEqual([]);
      expect(await ids({ ownerId: owner }, T0 + 3_600_000)).toEqual([]); // exactly at expiry: no longer live
    });
  });

  describe('refresh tokens', () => {
    it('rotates once; presenting the replaced one again is a replay naming the family', async () => {
      const r1 = refresh();
      await s().createRefresh(r1);
      expect(await s().getRefresh(r1.id)).toEqual(r1);
      const r2 = refresh({ familyId: r1.familyId });
      const res = await s().rotateRefresh(r1.id, r2, T0 + 1);
      expect(res).toEqual({ ok: true, previous: r1 });
      expect((await s().getRefresh(r1.id))!.replacedBy).toBe(r2.id);
      expect(await s().getRefresh(r2.id)).toEqual(r2);
      const again = await s().rotateRefresh(r1.id, refresh({ familyId: r1.familyId }), T0 + 2);
      expect(again).toMatchObject({ ok: false, reason: 'replayed', familyId: r1.familyId, previous: { id: r1.id, replacedBy: r2.id } });
    });

    it('unknown, expired and revoked are told apart', async () => {
      expect(await s().rotateRefresh('missing', refresh(), T0)).toEqual({ ok: false, reason: 'unknown' });
      const r = refresh({ expiresAt: T0 + 5 });
      await s().createRefresh(r);
      expect(await s().rotateRefresh(r.id, refresh({ familyId: r.familyId }), T0 + 5)).toEqual({ ok: false, reason: 'expired' });
      const q = refresh();
      await s().createRefresh(q);
      await s().revokeFamily(q.familyId, T0 + 1);
      expect(await s().rotateRefresh(q.id, refresh({ familyId: q.familyId }), T0 + 2)).toEqual({ ok: false, reason: 'revoked' });
    });

    it('refuses a successor from another family (programmer error), changing nothing', async () => {
      const r = refresh();
      await s().createRefresh(r);
      await expect(s().rotateRefresh(r.id, refresh(), T0 + 1)).rejects.toThrow(TypeError);
      expect((await s().getRefresh(r.id))!.replacedBy).toBeUndefined();
    });

    it('two concurrent rotations of one refresh token: exactly one wins, the other sees replayed', async () => {
      for (let round = 0; round < 5; round++) {
        const r = refresh();
        await s().createRefresh(r);
        const other = b.second ? await b.second() : s();
        const [x, y] = await Promise.all([
          s().rotateRefresh(r.id, refresh({ familyId: r.familyId }), T0 + 1),
          other.rotateRefresh(r.id, refresh({ familyId: r.familyId }), T0 + 1),
        ]);
        const oks = [x, y].filter((v) => v.ok);
        expect(oks).toHaveLength(1);
        const loser = [x, y].find((v) => !v.ok)!;
        expect(loser).toMatchObject({ ok: false, reason: 'replayed', familyId: r.familyId });
      }
    });

    it('revokeFamily revokes every refresh and access token of the family and returns the access entries', async () => {
      const fam = uid('fam');
      const r1 = refresh({ familyId: fam });
      await s().createRefresh(r1);
      const r2 = refresh({ familyId: fam });
      await s().rotateRefresh(r1.id, r2, T0 + 1);
      const a1 = token({ familyId: fam, expiresAt: T0 + 100_000 });
      const a2 = token({ familyId: fam, expiresAt: T0 + 200_000 });
      const stranger = token({ familyId: uid('fam') });
      for (const t of [a1, a2, stranger]) await s().recordToken(t);
      const out = await s().revokeFamily(fam, T0 + 50);
      expect(out.map((r) => r.jti).sort()).toEqual([a1.jti, a2.jti].sort());
      expect(out.find((r) => r.jti === a1.jti)).toEqual({ jti: a1.jti, expiresAt: a1.expiresAt, revokedAt: T0 + 50 });
      expect((await s().getRefresh(r2.id))!.revokedAt).toBe(T0 + 50);
      expect((await s().getToken(stranger.jti))!.revokedAt).toBeUndefined();
      expect(await s().revokeFamily(fam, T0 + 60)).toEqual([]); // idempotent
    });
  });

  describe('revocation', () => {
    it('revoke is idempotent and revokedSince returns entries revoked since, not yet expired', async () => {
      const base = T0 + 10_000_000;
      const t1 = token({ expiresAt: base + 1_000 });
      await s().recordToken(t1);
      await s().revoke([{ jti: t1.jti, expiresAt: t1.expiresAt }, { jti: 'minted-elsewhere', expiresAt: base + 2_000 }], base);
      await s().revoke([{ jti: t1.jti, expiresAt: t1.expiresAt }], base + 500); // again: no change
      const later = { jti: uid('later'), expiresAt: base + 3_000 };
      await s().revoke([later], base + 10);
      const all = await s().revokedSince(base, base);
      expect(all).toEqual(expect.arrayContaining([
        { jti: t1.jti, expiresAt: base + 1_000, revokedAt: base },
        { jti: 'minted-elsewhere', expiresAt: base + 2_000, revokedAt: base },
        { jti: later.jti, expiresAt: base + 3_000, revokedAt: base + 10 },
      ]));
      expect((await s().revokedSince(base + 1, base)).map((r) => r.jti)).toEqual([later.jti]);
      expect((await s().revokedSince(base, base + 1_000)).map((r) => r.jti)).not.toContain(t1.jti); // expired
      expect((await s().getToken(t1.jti))!.revokedAt).toBe(base);
      await s().revoke([], base);
    });

    /** The highest seq in the log (every row counts as live at now = 0). */
    async function head(): Promise<number> {
      let at = 0;
      for (;;) {
        const page = await s().revocationsAfter(at, 0, { limit: 10_000 });
        at = page.cursor;
        if (page.done) return at;
      }
    }

    it('revocationsAfter: the log after a cursor in seq order, live entries only, pages with cursor and done', async () => {
      const base = T0 + 20_000_000;
      const start = await head();
      const a = { jti: uid('log-a'), expiresAt: base + 10_000 };
      const gone = { jti: uid('log-expired'), expiresAt: base + 5 };
      const c = { jti: uid('log-c'), expiresAt: base + 10_000 };
      await s().revoke([a, gone], base);
      await s().revoke([a], base + 1); // idempotent: no new row, no new seq in the log
      await s().revoke([c], base + 2);
      const page = await s().revocationsAfter(start, base + 10);
      expect(page.records).toEqual([
        { jti: a.jti, expiresAt: a.expiresAt, revokedAt: base },
        { jti: c.jti, expiresAt: c.expiresAt, revokedAt: base + 2 },
      ]);
      expect(page.done).toBe(true);
      expect(page.cursor).toBeGreaterThan(start);
      // The expired one is in the log too, for a reader whose clock says it is still live.
      expect((await s().revocationsAfter(start, base)).records.map((r) => r.jti)).toEqual([a.jti, gone.jti, c.jti]);
      // Nothing after the cursor; the cursor stays where it was when there is nothing.
      expect(await s().revocationsAfter(page.cursor, base + 10)).toEqual({ records: [], cursor: page.cursor, done: true });
      // One row a page: the cursor walks, done only on the page that came back short.
      const one = await s().revocationsAfter(start, base + 10, { limit: 1 });
      expect(one.records.map((r) => r.jti)).toEqual([a.jti]);
      expect(one.done).toBe(false);
      const two = await s().revocationsAfter(one.cursor, base + 10, { limit: 1 });
      expect(two.records.map((r) => r.jti)).toEqual([c.jti]);
      expect(two.cursor).toBe(page.cursor);
      expect(two.cursor).toBeGreaterThan(one.cursor);
      expect((await s().revocationsAfter(two.cursor, base + 10, { limit: 1 })).done).toBe(true);
      // throughSeq stops at a seq (inclusive); minRevokedAt keeps only recent revocations.
      expect((await s().revocationsAfter(start, base + 10, { throughSeq: one.cursor })).records.map((r) => r.jti)).toEqual([a.jti]);
      expect((await s().revocationsAfter(start, base + 10, { minRevokedAt: base + 1 })).records.map((r) => r.jti)).toEqual([c.jti]);
      // revokedSince still answers in one read, as before.
      expect((await s().revokedSince(base, base + 10)).map((r) => r.jti).sort()).toEqual([a.jti, c.jti].sort());
    });

    it('revocationsAfter pages through a burst of 5000 once; the re-read below the cursor is bounded by its window, not by the burst', async () => {
      const base = T0 + 30_000_000;
      const start = await head();
      const burst = Array.from({ length: 5000 }, (_, i) => ({ jti: `burst-${uid('b')}-${i}`, expiresAt: base + 3_600_000 }));
      await s().revoke(burst, base); // one call, one transaction
      const later = { jti: uid('after-burst'), expiresAt: base + 3_600_000 };
      await s().revoke([later], base + 60_001);
      const seen: string[] = [];
      const cursors: number[] = [];
      let at = start;
      let pages = 0;
      for (;;) {
        const page = await s().revocationsAfter(at, base, { limit: 1000 });
        pages++;
        seen.push(...page.records.map((r) => r.jti));
        cursors.push(page.cursor);
        at = page.cursor;
        if (page.done) break;
        expect(page.records).toHaveLength(1000);
      }
      expect(pages).toBe(6); // 5001 rows: five full pages and one short
      expect(seen).toEqual([...burst.map((e) => e.jti), later.jti]); // every row once, in the order they were written
      expect(cursors).toEqual([...cursors].sort((x, y) => x - y));
      // The denylist's re-read: the last 1000 seqs below the cursor — at most 1000 rows however big the burst was.
      const reread = await s().revocationsAfter(Math.max(0, at - 1000), base, { limit: 1000, throughSeq: at });
      expect(reread.records.length).toBeLessThanOrEqual(1000);
      expect(reread.records.length).toBeGreaterThan(900); // no gaps beyond a few burned seqs here
      expect(reread.records.at(-1)!.jti).toBe(later.jti);
      expect(reread.records.map((r) => r.jti).slice(0, -1)).toEqual(burst.slice(5000 - (reread.records.length - 1)).map((e) => e.jti));
      // Restricted to what was revoked since a minute after the burst: only the later one.
      expect((await s().revocationsAfter(Math.max(0, at - 1000), base, { limit: 1000, throughSeq: at, minRevokedAt: base + 60_000 })).records.map((r) => r.jti)).toEqual([later.jti]);
    });

    it('revocationsAfter refuses a bad cursor or limit with a TypeError, before any query', async () => {
      for (const bad of [-1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 2]) await expect(s().revocationsAfter(bad, T0)).rejects.toThrow(/afterSeq/);
      for (const limit of [0, -5, 10_001, 2.5]) await expect(s().revocationsAfter(0, T0, { limit })).rejects.toThrow(/limit/);
      await expect(s().revocationsAfter(0, T0, { throughSeq: -1 })).rejects.toThrow(/throughSeq/);
      await expect(s().revocationsAfter(0, Number.POSITIVE_INFINITY)).rejects.toThrow(/now/);
    });

    it('purgeExpired deletes expired tokens, refresh tokens and denylist entries in batches', async () => {
      const now = T0 + 10 ** 11;
      const before = await s().purgeExpired(now - 1); // clear earlier tests' rows
      expect(before).toBeGreaterThanOrEqual(0);
      const exp = now - 1;
      for (let i = 0; i < 5; i++) await s().recordToken(token({ expiresAt: exp }));
      for (let i = 0; i < 3; i++) await s().createRefresh(refresh({ expiresAt: exp }));
      await s().revoke([{ jti: uid('r'), expiresAt: exp }, { jti: uid('r'), expiresAt: exp }], exp - 10);
      const keep = token({ expiresAt: now + 1 });
      await s().recordToken(keep);
      expect(await s().purgeExpired(now, 2)).toBe(10);
      expect(await s().purgeExpired(now, 2)).toBe(0);
      expect(await s().getToken(keep.jti)).toBeDefined();
      await expect(s().purgeExpired(now, 0)).rejects.toThrow(TypeError);
    });
  });

  describe('revocation push', () => {
    it('watchRevocations tells a watcher about each new revocation once; unsubscribing stops it', async () => {
      const watcher = b.second ? await b.second() : s();
      const seen: RevocationRecord[] = [];
      const stop = watcher.watchRevocations!((r) => seen.push(r), () => {});
      // give the listener time to LISTEN (postgres); a revocation before that is what the re-sync is for
      await new Promise((r) => setTimeout(r, 300));
      const jti = uid('pushed');
      await s().revoke([{ jti, expiresAt: T0 + 10 ** 12 }], T0 + 7);
      await until(() => seen.some((r) => r.jti === jti));
      expect(seen.find((r) => r.jti === jti)).toEqual({ jti, expiresAt: T0 + 10 ** 12, revokedAt: T0 + 7 });
      await s().revoke([{ jti, expiresAt: T0 + 10 ** 12 }], T0 + 8); // idempotent: no second notification
      const fam = uid('fam');
      const a = token({ familyId: fam });
      await s().recordToken(a);
      await s().revokeFamily(fam, T0 + 9);
      await until(() => seen.some((r) => r.jti === a.jti));
      expect(seen.filter((r) => r.jti === jti)).toHaveLength(1);
      stop();
      const after = uid('after');
      await s().revoke([{ jti: after, expiresAt: T0 + 10 ** 12 }], T0 + 10);
      await new Promise((r) => setTimeout(r, 300));
      expect(seen.some((r) => r.jti === after)).toBe(false);
    });

    if (b.name === 'postgres') {
      it('survives the listening connection being killed: onListening fires again and later notifications still arrive', async () => {
        const watcher = await b.second!();
        const seen: string[] = [];
        let listenings = 0;
        const stop = watcher.watchRevocations!((r) => seen.push(r.jti), () => listenings++);
        const admin = new (await import('pg')).default.Client({ connectionString: postgresUrl() });
        await admin.connect();
        try {
          // onListening fires for the first LISTEN too (what committed before it is in the table, not pushed).
          await until(() => listenings === 1);
          const early = uid('before-kill');
          await s().revoke([{ jti: early, expiresAt: T0 + 10 ** 12 }], T0);
          await until(() => seen.includes(early));
          const killed = await admin.query(
            `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = 'scopegate-revocations' AND query LIKE 'LISTEN %' AND query LIKE $1`,
            [`%${b.schema!()}%`],
          );
          expect(killed.rows.length).toBeGreaterThanOrEqual(1);
          await until(() => listenings >= 2);
          const late = uid('after-kill');
          let n = 0;
          await until(async () => {
            await s().revoke([{ jti: `${late}-${n++}`, expiresAt: T0 + 10 ** 12 }], T0);
            return seen.some((j) => j.startsWith(late));
          });
        } finally {
          stop();
          await admin.end();
        }
      });

      it('a watcher added while the listener is already LISTENing is told so at once, and one added later hears only later commits', async () => {
        const watcher = await b.second!();
        const first: string[] = [];
        let firstListening = 0;
        const stopFirst = watcher.watchRevocations!((r) => first.push(r.jti), () => firstListening++);
        await until(() => firstListening === 1);
        const before = uid('before-second');
        await s().revoke([{ jti: before, expiresAt: T0 + 10 ** 12 }], T0);
        await until(() => first.includes(before));
        const second: string[] = [];
        let secondListening = 0;
        const stopSecond = watcher.watchRevocations!((r) => second.push(r.jti), () => secondListening++);
        await until(() => secondListening === 1);
        const after = uid('after-second');
        await s().revoke([{ jti: after, expiresAt: T0 + 10 ** 12 }], T0);
        await until(() => second.includes(after) && first.includes(after));
        expect(second).not.toContain(before);
        expect(firstListening).toBe(1); // the shared listener did not reconnect for the second watcher
        stopSecond();
        stopFirst();
      });
    }
  });

  it('a closed store rejects with store_unavailable, never hangs or throws synchronously', async () => {
    const extra = b.name === 'postgres' ? await b.second!() : undefined;
    if (!extra) return; // the embedded store is closed in teardown; see the embedded-only test below
    await extra.close();
    const err = await extra.listClients().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('store_unavailable');
  });
});

/** Writes a store as a build with only migration 1 left it, with three revocations in it. */
async function writeVersion1Store(run: (sql: string, params?: unknown[]) => Promise<unknown>): Promise<void> {
  const { MIGRATIONS } = await import('../../src/token-service/store/sql.js');
  for (const stmt of MIGRATIONS[0]!.split(';').map((x) => x.trim()).filter(Boolean)) await run(stmt);
  await run('CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)');
  await run('INSERT INTO schema_version (version, applied_at) VALUES (1, 0)');
  for (const [jti, revokedAt] of [['v1-b', T0 + 2], ['v1-a', T0 + 1], ['v1-c', T0 + 3]] as const) {
    await run('INSERT INTO revocations (jti, expires_at, revoked_at) VALUES ($1, $2, $3)', [jti, T0 + 10 ** 12, revokedAt]);
  }
}

describe.each(backends.map((x) => x.name))('a store written before the revocation log (schema version 1): %s', (name) => {
  it('is migrated at open: its revocations get seqs, new ones come after them, nothing is lost', async () => {
    let location: string;
    let done: () => Promise<void>;
    if (name === 'embedded') {
      const dir = await mkdtemp(join(tmpdir(), 'sg-v1-'));
      const { PGlite } = await import('@electric-sql/pglite');
      const pg = await PGlite.create({ dataDir: join(dir, 'pgdata') });
      await writeVersion1Store((sql, params) => pg.query(sql, params));
      await pg.close();
      location = dir;
      done = () => rm(dir, { recursive: true, force: true });
    } else {
      const schema = await createTestSchema('v1');
      const c = await schema.client();
      await writeVersion1Store((sql, params) => c.query(sql, params));
      await c.end();
      location = schema.url;
      done = () => schema.drop();
    }
    try {
      const store = await openTokenStore(location, { control: false });
      try {
        const old = await store.revocationsAfter(0, T0);
        expect(old.records.map((r) => r.jti).sort()).toEqual(['v1-a', 'v1-b', 'v1-c']);
        expect(old.done).toBe(true);
        await store.revoke([{ jti: 'v2-new', expiresAt: T0 + 10 ** 12 }], T0 + 4);
        const next = await store.revocationsAfter(old.cursor, T0);
        expect(next.records.map((r) => r.jti)).toEqual(['v2-new']);
        expect((await store.revokedSince(0, T0)).map((r) => r.jti).sort()).toEqual(['v1-a', 'v1-b', 'v1-c', 'v2-new']);
      } finally {
        await store.close();
      }
    } finally {
      await done();
    }
  }, 60_000);
});

describe('embedded store specifics', () => {
  it('revocationsAfter works through the control socket, an omitted option bag included', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sg-ctl-'));
    try {
      const holder = await openTokenStore(dir);
      try {
        const cli = await openTokenStore(dir, { attach: true });
        try {
          await cli.revoke([{ jti: 'via-socket', expiresAt: T0 + 10 ** 12 }], T0);
          const page = await cli.revocationsAfter(0, T0);
          expect(page).toEqual(await holder.revocationsAfter(0, T0));
          // An explicit undefined crosses the socket as null.
          expect(await cli.revocationsAfter(0, T0, undefined)).toEqual(page);
          expect(page.records.map((r) => r.jti)).toEqual(['via-socket']);
          expect((await cli.revocationsAfter(0, T0, { limit: 1, throughSeq: page.cursor })).records).toHaveLength(1);
          const err = await cli.revocationsAfter(0, T0, { limit: 0 }).catch((e: unknown) => e);
          expect(err).toBeInstanceOf(GatewayError);
          expect((err as GatewayError).detail.why).toMatch(/limit/);
        } finally {
          await cli.close();
        }
      } finally {
        await holder.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('migrations are idempotent across reopen, data persists, and a closed store rejects with store_unavailable', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sg-reopen-'));
    try {
      const a = await openTokenStore(dir);
      const c = client();
      await a.createClient(c);
      await a.close();
      const err = await a.getClient(c.id).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(GatewayError);
      expect((err as GatewayError).code).toBe('store_unavailable');
      const again = await openTokenStore(dir);
      try {
        expect(await again.getClient(c.id)).toEqual(c);
      } finally {
        await again.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
