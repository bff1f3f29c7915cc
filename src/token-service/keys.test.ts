import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, jwtVerify, SignJWT, type JWK } from 'jose';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKeyRing, maxTokenLifetimeMs } from './keys.js';
import type { TokenStore } from './store.js';
import { openEmbeddedStore } from './store/embedded.js';

// One real store for the file (opening PGlite costs seconds); the tests run in order over its key list.
let dir: string;
let store: TokenStore;
let now = 1_700_000_000_000;
const clock = () => now;
const LIFETIME = 3_600_000;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sg-keys-'));
  store = await openEmbeddedStore(dir, { control: false });
}, 60_000);
afterAll(async () => {
  await store?.close();
  await rm(dir, { recursive: true, force: true });
});

async function sign(ring: ReturnType<typeof createKeyRing>): Promise<string> {
  const { kid, key } = await ring.signingKey();
  return new SignJWT({ sub: 'x' }).setProtectedHeader({ alg: 'ES256', kid }).setIssuedAt(Math.floor(now / 1000)).sign(key);
}

async function verifies(token: string, jwks: { keys: JWK[] }): Promise<boolean> {
  try {
    await jwtVerify(token, createLocalJWKSet(jwks), { algorithms: ['ES256'], currentDate: new Date(now) });
    return true;
  } catch {
    return false;
  }
}

describe('createKeyRing', () => {
  it('validates its options once', () => {
    expect(() => createKeyRing(store, { clock, maxLifetimeMs: -1 })).toThrow(TypeError);
    expect(() => createKeyRing(store, { clock, maxLifetimeMs: Number.NaN })).toThrow(TypeError);
    expect(() => createKeyRing(store, { clock: 5 as unknown as () => number, maxLifetimeMs: 1 })).toThrow(TypeError);
    expect(() => createKeyRing(store, { clock, maxLifetimeMs: 1, refreshMs: -5 })).toThrow(TypeError);
  });

  it('has no signing key before ensureKey', async () => {
    await expect(createKeyRing(store, { clock, maxLifetimeMs: LIFETIME }).signingKey()).rejects.toMatchObject({ code: 'keys_unavailable', message: expect.stringMatching(/ensureKey/) });
    expect(await createKeyRing(store, { clock, maxLifetimeMs: LIFETIME }).publicJwks()).toEqual({ keys: [] });
  });

  it('ensureKey from several rings at once on one store yields ONE key, named by its RFC 7638 thumbprint', async () => {
    const rings = [1, 2, 3].map(() => createKeyRing(store, { clock, maxLifetimeMs: LIFETIME }));
    await Promise.all(rings.map((r) => r.ensureKey()));
    await rings[0]!.ensureKey();
    const keys = await store.listKeys();
    expect(keys).toHaveLength(1);
    const pub = JSON.parse(keys[0]!.publicJwk) as JWK;
    expect(keys[0]!.kid).toBe(await calculateJwkThumbprint({ kty: pub.kty!, crv: pub.crv!, x: pub.x!, y: pub.y! }, 'sha256'));
    const kids = await Promise.all(rings.map(async (r) => (await r.signingKey()).kid));
    expect(new Set(kids)).toEqual(new Set([keys[0]!.kid]));
  });

  it('signs tokens that verify against publicJwks, which holds only public members', async () => {
    const ring = createKeyRing(store, { clock, maxLifetimeMs: LIFETIME });
    const jwks = await ring.publicJwks();
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toEqual({ kty: 'EC', crv: 'P-256', x: expect.any(String), y: expect.any(String), kid: (await ring.signingKey()).kid, alg: 'ES256', use: 'sig' });
    expect(JSON.stringify(jwks)).not.toContain('"d"');
    expect(await verifies(await sign(ring), jwks)).toBe(true);
  });

  it('rotate: the new key signs, the old one stays published until retiredAt + maxLifetimeMs, then is gone', async () => {
    const ring = createKeyRing(store, { clock, maxLifetimeMs: LIFETIME });
    const oldToken = await sign(ring);
    const oldKid = decodeProtectedHeader(oldToken).kid;
    now += 1000;
    const retiredAt = now;
    const newKid = await ring.rotate();
    expect(newKid).not.toBe(oldKid);
    expect((await ring.signingKey()).kid).toBe(newKid);
    const newToken = await sign(ring);

    now = retiredAt + LIFETIME - 1;
    ring.invalidate();
    let jwks = await ring.publicJwks();
    expect(jwks.keys.map((k) => k.kid)).toEqual([newKid, oldKid]);
    expect(await verifies(oldToken, jwks)).toBe(true);

    now = retiredAt + LIFETIME;
    ring.invalidate();
    jwks = await ring.publicJwks();
    expect(jwks.keys.map((k) => k.kid)).toEqual([newKid]);
    expect(await verifies(oldToken, jwks)).toBe(false);
    expect(await verifies(newToken, jwks)).toBe(true);
  });

  it('picks up a rotation made elsewhere (another replica, the CLI) once its cache is older than refreshMs', async () => {
    const a = createKeyRing(store, { clock, maxLifetimeMs: LIFETIME, refreshMs: 5_000 });
    const b = createKeyRing(store, { clock, maxLifetimeMs: LIFETIME });
    const before = (await a.signingKey()).kid;
    const rotated = await b.rotate();
    now += 4_999;
    expect((await a.signingKey()).kid).toBe(before); // cached
    now += 1;
    expect((await a.signingKey()).kid).toBe(rotated);
  });
});

describe('maxTokenLifetimeMs', () => {
  it('is the longest signed-token lifetime plus the clock tolerance (refresh tokens are opaque, not signed)', () => {
    expect(maxTokenLifetimeMs({ lifetimes: { access_s: 3600, user_s: 7200, personal_s: 100 } }, 60)).toBe(7260_000);
    expect(maxTokenLifetimeMs({ lifetimes: { access_s: 1, user_s: 1, personal_s: 31_536_000 } })).toBe((31_536_000 + 60) * 1000);
  });
});
