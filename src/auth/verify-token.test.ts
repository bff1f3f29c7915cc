import { createHash, createHmac } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, it, expect } from 'vitest';
import type { JWTPayload } from 'jose';
import { createTokenVerifier, type AuthObserver, type TokenVerifier } from './verify-token.js';
import { GatewayError, type ErrorCode } from '../errors.js';
import {
  algConfusionToken,
  craftToken,
  generateKeys,
  hsToken,
  randomSecret,
  selfSignedCertPem,
  signToken,
  tempDir,
  testClock,
  tokensConfig,
  unsecuredToken,
  type TempDir,
  type TestKeyPair,
} from '../../test/helpers/tokens.js';
import { startJwksServer, type JwksServer } from '../../test/helpers/jwks-server.js';

const T0 = Date.UTC(2030, 0, 1);
const NOW = T0 / 1000;

/** Asserts the verify failure code and that the failure is marked and never echoes the token. */
async function expectCode(p: Promise<unknown>, token: string, code: ErrorCode): Promise<GatewayError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeInstanceOf(GatewayError);
  const g = err as GatewayError;
  expect(g.code).toBe(code);
  expect(g.detail.tokenPresented).toBe(true);
  expect(g.detail.why).toBeTruthy();
  const sig = token.split('.')[2] ?? '';
  for (const s of [g.message, g.detail.why ?? '']) {
    expect(s).not.toContain(token);
    if (sig.length > 8) expect(s).not.toContain(sig);
  }
  return g;
}

function recorder() {
  const cache: string[] = [];
  const jwks: string[] = [];
  const observer: AuthObserver = {
    tokenCache: (r) => cache.push(r),
    jwksRefresh: (issuer, r) => jwks.push(`${issuer}:${r}`),
  };
  return { cache, jwks, observer };
}

let dir: TempDir;
let rsa: TestKeyPair;
let otherRsa: TestKeyPair;
let ec: TestKeyPair;
let ed: TestKeyPair;
const secret = randomSecret();
const oldSecret = randomSecret();

beforeAll(async () => {
  dir = await tempDir();
  [rsa, otherRsa, ec, ed] = await Promise.all([
    generateKeys('RS256', { kid: 'rsa-1' }),
    generateKeys('RS256', { kid: 'rsa-1' }),
    generateKeys('ES256', { kid: 'ec-1' }),
    generateKeys('EdDSA', { kid: 'ed-1' }),
  ]);
  await dir.write('rsa.pub.pem', rsa.publicPem);
  await dir.write('ec.jwks.json', JSON.stringify({ keys: [ec.publicJwk] }));
  await dir.write('ed.private.jwk.json', JSON.stringify(ed.privateJwk));
});
afterAll(() => dir.cleanup());

/** A local HS issuer (`iss: local`) and an RSA issuer (`iss: idp`) side by side. */
function baseIssuers(overrides: { local?: Record<string, unknown>; idp?: Record<string, unknown> } = {}) {
  return [
    { name: 'local', issuer: 'local', algorithms: ['HS256'], secrets: [secret, oldSecret], ...overrides.local },
    { name: 'idp', issuer: 'idp', audience: 'api', algorithms: ['RS256', 'PS256'], public_key_file: 'rsa.pub.pem', ...overrides.idp },
  ];
}

async function verifier(tokens: Record<string, unknown> = {}, observer?: AuthObserver, clock = testClock(T0)): Promise<TokenVerifier> {
  return createTokenVerifier(tokensConfig({ issuers: baseIssuers(), ...tokens }), { clock, baseDir: dir.path, observer });
}

const local = (claims: JWTPayload = {}) => ({ iss: 'local', sub: 'u1', client_type: 'user', scope: 'view_group', iat: NOW, exp: NOW + 3600, ...claims });
const idp = (claims: JWTPayload = {}) => ({ iss: 'idp', aud: 'api', sub: 'svc', client_type: 'group', iat: NOW, exp: NOW + 3600, ...claims });

describe('createTokenVerifier: HMAC issuer', () => {
  it('verifies a good token and maps its claims', async () => {
    const v = await verifier();
    const t = await hsToken(secret, local({ room_id: 42, jti: 'j1' }));
    await expect(v.verify(t)).resolves.toMatchObject({
      issuerName: 'local',
      iss: 'local',
      subject: 'u1',
      clientType: 'user',
      scopes: ['view_group'],
      room: '42',
      tokenId: 'j1',
      exp: NOW + 3600,
    });
  });

  it('still verifies a token signed with an older rotated secret', async () => {
    const v = await verifier();
    await expect(v.verify(await hsToken(oldSecret, local()))).resolves.toMatchObject({ subject: 'u1' });
  });

  it('rejects a token signed with a secret that is not configured', async () => {
    const v = await verifier();
    const t = await hsToken(randomSecret(), local());
    await expectCode(v.verify(t), t, 'signature_invalid');
  });

  it('rejects a token whose payload was altered after signing', async () => {
    const v = await verifier();
    const good = await hsToken(secret, local());
    const forged = await hsToken(secret, local({ scope: 'admin_group' }));
    const t = `${good.split('.')[0]}.${forged.split('.')[1]}.${good.split('.')[2]}`;
    await expectCode(v.verify(t), t, 'signature_invalid');
  });

  it('rejects alg "none", whatever its case', async () => {
    const v = await verifier();
    for (const alg of ['none', 'None', 'NONE']) {
      const t = unsecuredToken(local(), { alg });
      await expectCode(v.verify(t), t, 'algorithm_forbidden');
    }
  });

  it('rejects an algorithm no issuer allows', async () => {
    const v = await verifier();
    const t = await hsToken(secret, local(), { alg: 'HS512' });
    await expectCode(v.verify(t), t, 'algorithm_forbidden');
  });

  it('rejects a token without exp unless the issuer waives require_exp', async () => {
    const t = await hsToken(secret, local({ exp: undefined }));
    await expectCode((await verifier()).verify(t), t, 'token_malformed');
    const lax = await createTokenVerifier(tokensConfig({ issuers: baseIssuers({ local: { require_exp: false } }) }), {
      clock: testClock(T0),
      baseDir: dir.path,
    });
    await expect(lax.verify(t)).resolves.toMatchObject({ exp: undefined });
  });

  it('rejects a revoked jti', async () => {
    const v = await createTokenVerifier(tokensConfig({ issuers: baseIssuers({ local: { revoked_jti: ['gone'] } }) }), {
      clock: testClock(T0),
      baseDir: dir.path,
    });
    const t = await hsToken(secret, local({ jti: 'gone' }));
    await expectCode(v.verify(t), t, 'token_revoked');
    await expect(v.verify(await hsToken(secret, local({ jti: 'kept' })))).resolves.toBeDefined();
  });

  it('rejects a token whose iss matches no issuer', async () => {
    const v = await verifier();
    const t = await hsToken(secret, local({ iss: 'somebody-else' }));
    await expectCode(v.verify(t), t, 'issuer_unknown');
    const noIss = await hsToken(secret, local({ iss: undefined }));
    await expectCode(v.verify(noIss), noIss, 'issuer_unknown');
  });

  it('sends a token without a known iss to the one issuer that has no `issuer`', async () => {
    const v = await createTokenVerifier(tokensConfig({ issuers: baseIssuers({ local: { issuer: undefined } }) }), {
      clock: testClock(T0),
      baseDir: dir.path,
    });
    await expect(v.verify(await hsToken(secret, local({ iss: undefined })))).resolves.toMatchObject({ issuerName: 'local', iss: undefined });
  });
});

describe('createTokenVerifier: time claims at the tolerance edges (60 s)', () => {
  const cases: Array<{ name: string; claims: JWTPayload; want: ErrorCode | 'ok' }> = [
    { name: 'exp 59 s ago is accepted', claims: { exp: NOW - 59 }, want: 'ok' },
    { name: 'exp exactly 60 s ago is expired', claims: { exp: NOW - 60 }, want: 'token_expired' },
    { name: 'exp 61 s ago is expired', claims: { exp: NOW - 61 }, want: 'token_expired' },
    { name: 'nbf 60 s ahead is accepted', claims: { nbf: NOW + 60 }, want: 'ok' },
    { name: 'nbf 61 s ahead is not yet valid', claims: { nbf: NOW + 61 }, want: 'token_not_yet_valid' },
    { name: 'iat 60 s ahead is accepted', claims: { iat: NOW + 60 }, want: 'ok' },
    { name: 'iat 61 s ahead is not yet valid', claims: { iat: NOW + 61 }, want: 'token_not_yet_valid' },
    { name: 'a non-numeric exp is malformed', claims: { exp: 'tomorrow' as unknown as number }, want: 'token_malformed' },
    { name: 'a non-numeric nbf is malformed', claims: { nbf: 'now' as unknown as number }, want: 'token_malformed' },
  ];
  it.each(cases)('$name', async ({ claims, want }) => {
    const v = await verifier({ cache: { max_entries: 0 } });
    const t = await hsToken(secret, local(claims));
    if (want === 'ok') await expect(v.verify(t)).resolves.toBeDefined();
    else await expectCode(v.verify(t), t, want);
  });

  const ageCases: Array<{ name: string; claims: JWTPayload; want: ErrorCode | 'ok' }> = [
    { name: 'iat exactly max age + tolerance ago is accepted', claims: { iat: NOW - 3600 - 60 }, want: 'ok' },
    { name: 'iat max age + tolerance + 1 s ago is too old', claims: { iat: NOW - 3600 - 61 }, want: 'token_too_old' },
    { name: 'a token without iat is too old to judge', claims: { iat: undefined }, want: 'token_too_old' },
    { name: 'iat 61 s ahead is still not yet valid', claims: { iat: NOW + 61 }, want: 'token_not_yet_valid' },
  ];
  it.each(ageCases)('max_token_age_s: $name', async ({ claims, want }) => {
    const v = await createTokenVerifier(
      tokensConfig({ issuers: baseIssuers({ local: { max_token_age_s: 3600 } }), cache: { max_entries: 0 } }),
      { clock: testClock(T0), baseDir: dir.path },
    );
    const t = await hsToken(secret, local(claims));
    if (want === 'ok') await expect(v.verify(t)).resolves.toBeDefined();
    else await expectCode(v.verify(t), t, want);
  });

  it('uses the configured clock tolerance', async () => {
    const v = await verifier({ clock_tolerance_s: 0, cache: { max_entries: 0 } });
    const t = await hsToken(secret, local({ exp: NOW }));
    await expectCode(v.verify(t), t, 'token_expired');
    await expect(v.verify(await hsToken(secret, local({ exp: NOW + 1 })))).resolves.toBeDefined();
  });
});

describe('createTokenVerifier: malformed input', () => {
  const cases: Array<{ name: string; token: string }> = [
    { name: 'a single word', token: 'garbage' },
    { name: 'two parts', token: 'eyJhbGciOiJIUzI1NiJ9.e30' },
    { name: 'four parts', token: 'a.b.c.d' },
    { name: 'non-base64url characters', token: 'eyJ!.eyJ.abc' },
    { name: 'an empty header part', token: '.e30.abc' },
    { name: 'a header that is not JSON', token: craftToken('not json', {}, 'abc') },
    { name: 'a header without alg', token: craftToken({ typ: 'JWT' }, { iss: 'local' }, 'abc') },
    { name: 'a payload that is not JSON', token: craftToken({ alg: 'HS256' }, 'not json', 'abc') },
    { name: 'a JSON array payload', token: craftToken({ alg: 'HS256' }, [1, 2], 'abc') },
    { name: 'a token over max_token_bytes', token: `${craftToken({ alg: 'HS256' }, { iss: 'local', pad: 'x'.repeat(9000) })}abc` },
  ];
  it.each(cases)('rejects $name as token_malformed', async ({ token }) => {
    await expectCode((await verifier()).verify(token), token, 'token_malformed');
  });

  it('rejects a well-formed JWS with an empty signature as signature_invalid or malformed, never valid', async () => {
    const t = craftToken({ alg: 'HS256' }, local(), '');
    const err = await (await verifier()).verify(t).catch((e: unknown) => e);
    expect(['signature_invalid', 'token_malformed']).toContain((err as GatewayError).code);
  });
});

describe('createTokenVerifier: asymmetric issuers', () => {
  it('verifies RS256 and PS256 tokens against a PEM public key', async () => {
    const v = await verifier();
    await expect(v.verify(await signToken(rsa, idp()))).resolves.toMatchObject({ issuerName: 'idp', clientType: 'group' });
    await expect(v.verify(await signToken(rsa, idp({ jti: 'ps' }), { alg: 'PS256' }))).resolves.toBeDefined();
  });

  it('rejects algorithm confusion: HS256 keyed with the RSA public key PEM', async () => {
    const v = await verifier();
    // HS256 is allowed for another issuer, so only the per-issuer allowlist stops it.
    const t = algConfusionToken(rsa.publicPem, idp());
    await expectCode(v.verify(t), t, 'algorithm_forbidden');
    const alone = await createTokenVerifier(tokensConfig({ issuers: [baseIssuers()[1]!] }), { clock: testClock(T0), baseDir: dir.path });
    await expectCode(alone.verify(t), t, 'algorithm_forbidden');
  });

  it('rejects a token signed by another RSA key with the same kid', async () => {
    const v = await verifier();
    const t = await signToken(otherRsa, idp());
    await expectCode(v.verify(t), t, 'signature_invalid');
  });

  it('rejects a wrong or missing audience', async () => {
    const v = await verifier();
    const wrong = await signToken(rsa, idp({ aud: 'other-api' }));
    await expectCode(v.verify(wrong), wrong, 'audience_mismatch');
    const missing = await signToken(rsa, idp({ aud: undefined }));
    await expectCode(v.verify(missing), missing, 'audience_mismatch');
  });

  it('accepts an audience list that contains the expected audience', async () => {
    const v = await verifier();
    await expect(v.verify(await signToken(rsa, idp({ aud: ['x', 'api'] })))).resolves.toBeDefined();
  });

  it('rejects an RSA-signed token claiming the HMAC issuer', async () => {
    const v = await verifier();
    const t = await signToken(rsa, local());
    await expectCode(v.verify(t), t, 'algorithm_forbidden');
  });

  it('verifies with an X.509 certificate as public_key_file', async () => {
    const certDir = await tempDir();
    try {
      await certDir.write('cert.pem', await selfSignedCertPem(rsa));
      const v = await createTokenVerifier(tokensConfig({ issuers: baseIssuers({ idp: { public_key_file: 'cert.pem' } }) }), {
        clock: testClock(T0),
        baseDir: certDir.path,
      });
      await expect(v.verify(await signToken(rsa, idp()))).resolves.toBeDefined();
    } finally {
      await certDir.cleanup();
    }
  });

  it('verifies ES256 through a local JWKS file and refuses an unknown kid', async () => {
    const v = await createTokenVerifier(
      tokensConfig({ issuers: [{ name: 'ec', issuer: 'ec', algorithms: ['ES256'], jwks_file: 'ec.jwks.json' }] }),
      { clock: testClock(T0), baseDir: dir.path },
    );
    await expect(v.verify(await signToken(ec, { iss: 'ec', exp: NOW + 60 }))).resolves.toMatchObject({ issuerName: 'ec' });
    const t = await signToken(ec, { iss: 'ec', exp: NOW + 60 }, { header: { kid: 'nope' } });
    await expectCode(v.verify(t), t, 'key_unknown');
  });

  it('verifies EdDSA with the public half of a private JWK file', async () => {
    const v = await createTokenVerifier(
      tokensConfig({ issuers: [{ name: 'ed', issuer: 'ed', algorithms: ['EdDSA'], private_key_file: 'ed.private.jwk.json' }] }),
      { clock: testClock(T0), baseDir: dir.path },
    );
    await expect(v.verify(await signToken(ed, { iss: 'ed', exp: NOW + 60 }))).resolves.toMatchObject({ issuerName: 'ed' });
  });
});

describe('createTokenVerifier: cache', () => {
  it('counts a miss then a hit for the same token', async () => {
    const rec = recorder();
    const v = await verifier({}, rec.observer);
    const t = await hsToken(secret, local());
    const first = await v.verify(t);
    const second = await v.verify(t);
    expect(second).toEqual(first);
    expect(rec.cache).toEqual(['miss', 'hit']);
  });

  it('answers cached() synchronously only for a verified, unexpired token', async () => {
    const rec = recorder();
    const clock = testClock(T0);
    const v = await verifier({}, rec.observer, clock);
    const t = await hsToken(secret, local({ exp: NOW + 10 }));
    expect(v.cached(t)).toBeUndefined(); // never verified: no answer, nothing counted
    const p = await v.verify(t);
    expect(v.cached(t)).toBe(p);
    expect(v.cached(await hsToken('another-secret-0123456789abcdef', local()))).toBeUndefined();
    clock.advance(10_000); // at exp the entry is gone
    expect(v.cached(t)).toBeUndefined();
    expect(rec.cache).toEqual(['miss', 'hit']);
  });

  it('does not use a cache entry at or after the token exp, and fails once past the tolerance', async () => {
    const rec = recorder();
    const clock = testClock(T0);
    const v = await verifier({}, rec.observer, clock);
    const t = await hsToken(secret, local({ exp: NOW + 10 }));
    await v.verify(t);
    await v.verify(t);
    clock.advance(10_000); // at exp: the entry is gone, full verification still passes (tolerance)
    await v.verify(t);
    clock.advance(60_000); // exp + 60 s: expired
    await expectCode(v.verify(t), t, 'token_expired');
    expect(rec.cache).toEqual(['miss', 'hit', 'miss', 'miss']);
  });

  it('does not cache failures', async () => {
    const rec = recorder();
    const v = await verifier({}, rec.observer);
    const t = await hsToken(randomSecret(), local());
    await expectCode(v.verify(t), t, 'signature_invalid');
    await expectCode(v.verify(t), t, 'signature_invalid');
    expect(rec.cache).toEqual(['miss', 'miss']);
  });

  it('reports disabled when max_entries is 0', async () => {
    const rec = recorder();
    const v = await verifier({ cache: { max_entries: 0 } }, rec.observer);
    const t = await hsToken(secret, local());
    await v.verify(t);
    await v.verify(t);
    expect(rec.cache).toEqual(['disabled', 'disabled']);
  });

  it('stops serving a cached token once it is older than max_token_age_s', async () => {
    const clock = testClock(T0);
    const v = await createTokenVerifier(tokensConfig({ issuers: baseIssuers({ local: { max_token_age_s: 100, require_exp: false } }), clock_tolerance_s: 0 }), {
      clock,
      baseDir: dir.path,
    });
    const t = await hsToken(secret, local({ exp: undefined }));
    await v.verify(t);
    clock.advance(101_000);
    await expectCode(v.verify(t), t, 'token_too_old');
  });
});

describe('createTokenVerifier: remote JWKS', () => {
  let server: JwksServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  async function remoteVerifier(jwks: Record<string, unknown>, observer?: AuthObserver) {
    return createTokenVerifier(
      tokensConfig({
        issuers: [{ name: 'idp', issuer: 'idp', algorithms: ['RS256', 'ES256'], jwks_url: server!.url, jwks }],
        cache: { max_entries: 0 },
      }),
      { clock: testClock(T0), observer },
    );
  }
  const claims = (jti: string) => ({ iss: 'idp', exp: NOW + 3600, jti });

  it('verifies, then follows a key rotation by refetching for the unknown kid', async () => {
    const a = await generateKeys('RS256', { kid: 'a' });
    const b = await generateKeys('ES256', { kid: 'b' });
    server = await startJwksServer([a.publicJwk]);
    const rec = recorder();
    const v = await remoteVerifier({ cooldown_ms: 0 }, rec.observer);
    await expect(v.verify(await signToken(a, claims('1')))).resolves.toBeDefined();
    expect(server.fetches).toBe(1);
    server.setKeys([b.publicJwk]);
    await expect(v.verify(await signToken(b, claims('2')))).resolves.toBeDefined();
    expect(server.fetches).toBe(2);
    expect(rec.jwks).toEqual(['idp:success', 'idp:success']);
    // The old key is gone from the set now.
    const old = await signToken(a, claims('3'));
    await expectCode(v.verify(old), old, 'key_unknown');
  });

  it('answers key_unknown without refetching while the cooldown runs', async () => {
    const a = await generateKeys('RS256', { kid: 'a' });
    const b = await generateKeys('RS256', { kid: 'b' });
    server = await startJwksServer([a.publicJwk]);
    const v = await remoteVerifier({ cooldown_ms: 600_000 });
    await v.verify(await signToken(a, claims('1')));
    server.setKeys([a.publicJwk, b.publicJwk]);
    const t = await signToken(b, claims('2'));
    await expectCode(v.verify(t), t, 'key_unknown');
    expect(server.fetches).toBe(1);
  });

  it.each(['500', 'close', 'hang', 'invalid-json'] as const)(
    'answers keys_unavailable (never a 401) when the JWKS fails from the start (%s)',
    async (mode) => {
      const a = await generateKeys('RS256', { kid: 'a' });
      server = await startJwksServer([a.publicJwk]);
      server.failWith(mode);
      const rec = recorder();
      const v = await remoteVerifier({ timeout_ms: 300 }, rec.observer);
      const t = await signToken(a, claims('1'));
      const err = await expectCode(v.verify(t), t, 'keys_unavailable');
      expect(err.status).toBe(503);
      expect(rec.jwks).toContain('idp:error');
      const ready = await v.readiness();
      expect(ready).toEqual([{ issuer: 'idp', ok: false, error: expect.any(String) }]);
    },
  );

  it('keeps verifying with the last good keys when a refresh fails (stale-if-error), then recovers', async () => {
    const a = await generateKeys('RS256', { kid: 'a' });
    server = await startJwksServer([a.publicJwk]);
    const rec = recorder();
    // cache_max_age_ms 0: every verification asks jose to refresh the set.
    const v = await remoteVerifier({ cooldown_ms: 0, cache_max_age_ms: 0 }, rec.observer);
    await expect(v.verify(await signToken(a, claims('1')))).resolves.toBeDefined();
    server.failWith('500');
    await expect(v.verify(await signToken(a, claims('2')))).resolves.toBeDefined();
    expect(rec.jwks).toEqual(['idp:success', 'idp:error', 'idp:stale']);
    expect(await v.readiness()).toEqual([{ issuer: 'idp', ok: true }]);
    server.failWith('none');
    await expect(v.verify(await signToken(a, claims('3')))).resolves.toBeDefined();
    expect(rec.jwks.at(-1)).toBe('idp:success');
  });

  it('reports ready after fetching the keys on its own', async () => {
    const a = await generateKeys('RS256', { kid: 'a' });
    server = await startJwksServer([a.publicJwk]);
    const rec = recorder();
    const v = await remoteVerifier({}, rec.observer);
    expect(await v.readiness()).toEqual([{ issuer: 'idp', ok: true }]);
    expect(server.fetches).toBe(1);
    await expect(v.verify(await signToken(a, claims('1')))).resolves.toBeDefined();
    expect(server.fetches).toBe(1);
  });
});

/** Every spelling of a base64url part that decodes to the same bytes (the last character's unused bits varied). */
function spellings(part: string): string[] {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const unused = part.length % 4 === 2 ? 4 : part.length % 4 === 3 ? 2 : 0;
  const base = alphabet.indexOf(part.at(-1)!) & ~((1 << unused) - 1);
  return Array.from({ length: 1 << unused }, (_, low) => part.slice(0, -1) + alphabet[base | low]!);
}

describe('createTokenVerifier: one token, one spelling (canonical base64url, SPEC §3)', () => {
  const kinds = [
    { alg: 'HS256', expected: 4, mint: () => hsToken(secret, local({ jti: 'one' })) },
    { alg: 'RS256', expected: 16, mint: () => signToken(rsa, idp({ jti: 'one' })) },
    { alg: 'ES256', expected: 16, mint: () => signToken(ec, { iss: 'ec', exp: NOW + 60, jti: 'one' }) },
  ];
  async function verifierFor(alg: string, observer?: AuthObserver) {
    if (alg !== 'ES256') return verifier({}, observer);
    return createTokenVerifier(tokensConfig({ issuers: [{ name: 'ec', issuer: 'ec', algorithms: ['ES256'], jwks_file: 'ec.jwks.json' }] }), {
      clock: testClock(T0),
      baseDir: dir.path,
      observer,
    });
  }

  it.each(kinds)('$alg: only the canonical of the $expected signature spellings verifies; the others are token_malformed and never cached', async ({ alg, expected, mint }) => {
    const rec = recorder();
    const v = await verifierFor(alg, rec.observer);
    const token = await mint();
    const [h, p, sig] = token.split('.') as [string, string, string];
    const all = spellings(sig);
    expect(all).toHaveLength(expected);
    expect(all).toContain(sig);
    await expect(v.verify(token)).resolves.toMatchObject({ tokenId: 'one' });
    for (const other of all.filter((s) => s !== sig)) {
      const respelled = `${h}.${p}.${other}`;
      expect(v.cached(respelled)).toBeUndefined();
      const err = await expectCode(v.verify(respelled), respelled, 'token_malformed');
      expect(err.detail.why).toContain('signature is not canonical base64url');
      expect(v.cached(respelled)).toBeUndefined();
    }
    // The re-spellings never reached the cache: one miss for the canonical token, nothing else.
    expect(rec.cache).toEqual(['miss']);
    expect(v.cacheStats().entries).toBe(1);
  });

  it.each([
    ['protected header', 0],
    ['payload', 1],
  ] as const)('refuses a correctly signed token whose %s is spelled non-canonically', async (what, index) => {
    // Signed over the exact non-canonical text, so the signature is good: only the spelling check stops it.
    let parts: string[] = [];
    for (let pad = 0; pad < 3; pad++) {
      const t = await hsToken(secret, local({ jti: 'x'.repeat(pad) }), { header: { kid: 'k'.repeat(pad) } });
      parts = t.split('.');
      if (parts[index]!.length % 4 !== 0) break;
    }
    const variants = spellings(parts[index]!).filter((s) => s !== parts[index]);
    expect(variants.length).toBeGreaterThan(0);
    const v = await verifier();
    for (const variant of variants) {
      const input = index === 0 ? `${variant}.${parts[1]}` : `${parts[0]}.${variant}`;
      const t = `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
      const err = await expectCode(v.verify(t), t, 'token_malformed');
      expect(err.detail.why).toContain(`${what} is not canonical`);
    }
  });

  it('refuses a part whose length is 1 mod 4 (no byte string has it)', async () => {
    const t = await hsToken(secret, local());
    const [h, p, sig] = t.split('.');
    const bad = `${h}.${p}.${sig}AA`; // 43 + 2 = 45 ≡ 1 (mod 4)
    await expectCode((await verifier()).verify(bad), bad, 'token_malformed');
  });
});

describe('createTokenVerifier: tokenHash instead of the raw token', () => {
  const sha = (t: string) => createHash('sha256').update(t).digest('base64url');

  it('sets principal.tokenHash to SHA-256 base64url of the token, on a miss and on a hit', async () => {
    const v = await verifier();
    const t = await hsToken(secret, local());
    expect((await v.verify(t)).tokenHash).toBe(sha(t));
    expect((await v.verify(t)).tokenHash).toBe(sha(t));
    expect(v.cached(t)?.tokenHash).toBe(sha(t));
  });

  it('sets it with the cache disabled too (the rate limiter keys a jti-less token by it)', async () => {
    const v = await verifier({ cache: { max_entries: 0 } });
    const t = await hsToken(secret, local());
    expect((await v.verify(t)).tokenHash).toBe(sha(t));
    expect(v.cacheStats()).toEqual({ entries: 0, bytes: 0 });
  });

  it('keeps no part of the raw token in the principal', async () => {
    const v = await verifier();
    const t = await hsToken(secret, local({ jti: 'j', room_id: 7 }));
    const text = JSON.stringify(await v.verify(t));
    for (const part of t.split('.')) expect(text).not.toContain(part);
  });
});

describe('createTokenVerifier: claims that are not exact (SPEC §3)', () => {
  it.each<[string, JWTPayload]>([
    ['a subject with a NUL', { sub: 'admin\u0000' }],
    ['a subject with BEL', { sub: 'ad\u0007min' }],
    ['a padded subject', { sub: '  admin  ' }],
    ['a subject over 1024 bytes', { sub: 'a'.repeat(1025) }],
    ['an array subject', { sub: ['admin'] as unknown as string }],
    ['an array room', { room_id: [42] }],
    ['an object room', { room_id: { id: 42 } }],
    ['a boolean room', { room_id: true }],
    ['a null room', { room_id: null }],
    ['a float room', { room_id: 42.5 }],
    ['a scope element with a space', { scope: ['view_group', 'x admin_group'] }],
    ['a scope string with a tab', { scope: 'view_group\tadmin_group' }],
    ['a numeric client type', { client_type: 1 }],
  ])('refuses a correctly signed token with %s as token_malformed, and does not cache it', async (_what, claims) => {
    const rec = recorder();
    const v = await verifier({}, rec.observer);
    const t = await hsToken(secret, local(claims));
    const err = await expectCode(v.verify(t), t, 'token_malformed');
    expect(err.detail.why).toMatch(/^claim "/);
    await expectCode(v.verify(t), t, 'token_malformed');
    expect(rec.cache).toEqual(['miss', 'miss']);
    expect(v.cached(t)).toBeUndefined();
  });
});
