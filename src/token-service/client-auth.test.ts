import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { isGatewayError } from '../errors.js';
import { clientCredentialsFrom, createClientAuthenticator } from './client-auth.js';
import { hashSecret, newSecret } from './secrets.js';
import type { ClientRecord } from './store.js';

const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;
const params = (o: Record<string, string>) => new Map(Object.entries(o));

describe('clientCredentialsFrom', () => {
  it('HipChat takes Basic only', () => {
    expect(clientCredentialsFrom('hipchat', basic('c1', 's'), params({}))).toEqual({ ok: true, creds: { method: 'client_secret_basic', id: 'c1', secret: 's' } });
    expect(clientCredentialsFrom('hipchat', null, params({ client_id: 'c1' }))).toMatchObject({ ok: false, code: 'invalid_client', challenge: true });
    expect(clientCredentialsFrom('hipchat', null, params({ client_id: 'c1', client_secret: 's' }))).toMatchObject({ ok: false, code: 'invalid_request' });
    expect(clientCredentialsFrom('hipchat', 'Bearer x.y.z', params({}))).toMatchObject({ ok: false, code: 'invalid_client', challenge: true });
  });
  it('livedigital takes the JSON body and ignores its Bearer header', () => {
    expect(clientCredentialsFrom('livedigital', 'Bearer x.y.z', params({ client_id: 'c1', client_secret: 's' }))).toEqual({
      ok: true,
      creds: { method: 'client_secret_post', id: 'c1', secret: 's' },
    });
    expect(clientCredentialsFrom('livedigital', null, params({ client_id: 'c1' }))).toMatchObject({ ok: false, code: 'invalid_client', challenge: false });
    expect(clientCredentialsFrom('livedigital', basic('c1', 's'), params({ client_id: 'c1', client_secret: 's' }))).toMatchObject({ ok: false, code: 'invalid_request' });
  });
  it('standard takes Basic or the form body, never both', () => {
    expect(clientCredentialsFrom('standard', basic('c1', 's'), params({ client_id: 'c1' }))).toMatchObject({ ok: true, creds: { method: 'client_secret_basic' } });
    expect(clientCredentialsFrom('standard', null, params({ client_id: 'c1', client_secret: 's' }))).toMatchObject({ ok: true, creds: { method: 'client_secret_post' } });
    expect(clientCredentialsFrom('standard', basic('c1', 's'), params({ client_id: 'c2' }))).toMatchObject({ ok: false, code: 'invalid_request' });
    expect(clientCredentialsFrom('standard', basic('c1', 's'), params({ client_secret: 's' }))).toMatchObject({ ok: false, code: 'invalid_request' });
    expect(clientCredentialsFrom('standard', null, params({}))).toMatchObject({ ok: false, code: 'invalid_client', challenge: true });
    expect(clientCredentialsFrom('standard', null, params({ client_id: 'c1' }))).toMatchObject({ ok: false, code: 'invalid_client', challenge: false });
    expect(clientCredentialsFrom('standard', 'Basic %%%', params({ client_id: 'c1', client_secret: 's' }))).toMatchObject({ ok: false, code: 'invalid_client', challenge: true });
  });
  it('only ever yields a client id the request itself carried', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('hipchat' as const, 'livedigital' as const, 'standard' as const),
        fc.option(fc.oneof(fc.string({ maxLength: 40 }), fc.tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 })).map(([a, b]) => basic(a, b))), { nil: null }),
        fc.dictionary(fc.constantFrom('client_id', 'client_secret', 'grant_type'), fc.string({ minLength: 1, maxLength: 10 })),
        (dialect, auth, body) => {
          const r = clientCredentialsFrom(dialect, auth, params(body));
          if (!r.ok) return;
          let fromBasic: string | undefined;
          try {
            if (auth?.startsWith('Basic ')) fromBasic = decodeURIComponent(Buffer.from(auth.slice(6), 'base64').toString().split(':')[0]!.replace(/\+/g, ' '));
          } catch {
            fromBasic = undefined;
          }
          expect([fromBasic, body['client_id']]).toContain(r.creds.id);
          expect(r.creds.id).not.toBe('');
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('createClientAuthenticator', () => {
  async function client(secret: string): Promise<ClientRecord> {
    return { id: 'cl_1', name: 'c', secretHash: await hashSecret(secret), clientType: 'group', scopes: ['view_room'], createdAt: 0 };
  }

  it('accepts the right secret, refuses a wrong one and an unknown client as invalid_client', async () => {
    const secret = newSecret();
    const rec = await client(secret);
    const auth = createClientAuthenticator({ getClient: async (id) => (id === rec.id ? rec : undefined), clock: () => 0 });
    await expect(auth.authenticate({ method: 'client_secret_basic', id: 'cl_1', secret })).resolves.toEqual(rec);
    for (const creds of [
      { id: 'cl_1', secret: `${secret}x` },
      { id: 'cl_2', secret },
      { id: 'cl_1', secret: 'x'.repeat(2000) },
    ]) {
      const e = await auth.authenticate({ method: 'client_secret_post', ...creds }).catch((err: unknown) => err);
      expect(isGatewayError(e) && e.code).toBe('invalid_client');
      expect(String((e as Error).message)).not.toContain(secret);
    }
  });

  it('serves a hot client from its cache, but not once the stored hash changed or the entry expired', async () => {
    const secret = newSecret();
    let rec = await client(secret);
    let now = 0;
    let reads = 0;
    const auth = createClientAuthenticator({ getClient: async () => (reads++, rec), clock: () => now, cacheTtlMs: 60_000 });
    await auth.authenticate({ method: 'client_secret_basic', id: 'cl_1', secret });
    expect(auth.cacheSize).toBe(1);
    // Same secret again: answered from the cache (the store is still read for the current hash).
    await expect(auth.authenticate({ method: 'client_secret_basic', id: 'cl_1', secret })).resolves.toBeTruthy();
    expect(reads).toBe(2);
    // A wrong secret is never accepted from the cache.
    await expect(auth.authenticate({ method: 'client_secret_basic', id: 'cl_1', secret: 'nope' })).rejects.toMatchObject({ code: 'invalid_client' });
    // rotate-secret: the old secret stops working at once.
    const next = newSecret();
    rec = { ...rec, secretHash: await hashSecret(next) };
    await expect(auth.authenticate({ method: 'client_secret_basic', id: 'cl_1', secret })).rejects.toMatchObject({ code: 'invalid_client' });
    await expect(auth.authenticate({ method: 'client_secret_basic', id: 'cl_1', secret: next })).resolves.toBeTruthy();
    now += 60_001;
    await expect(auth.authenticate({ method: 'client_secret_basic', id: 'cl_1', secret: next })).resolves.toBeTruthy();
  });

  it('validates its options once', () => {
    expect(() => createClientAuthenticator({ getClient: async () => undefined, clock: () => 0, cacheTtlMs: -1 })).toThrow(/cacheTtlMs/);
  });
});
