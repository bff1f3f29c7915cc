import { afterAll, describe, expect, it } from 'vitest';
import { decodeProtectedHeader, exportJWK, generateKeyPair } from 'jose';
import { createTokenVerifier } from '../auth/verify-token.js';
import { ConfigError } from '../errors.js';
import { generateKeys, issuerConfig, randomSecret, tempDir, tokensConfig, type TempDir } from '../../test/helpers/tokens.js';
import { createTokenSigner, type KeyRingSource } from './issue.js';

const NOW = Date.UTC(2030, 0, 1);
const clock = () => NOW;
const dirs: TempDir[] = [];
afterAll(async () => Promise.all(dirs.map((d) => d.cleanup())));

const groupClaims = { subject: 'cl_1', clientType: 'group' as const, scopes: ['send_notification', 'view_room'], clientId: 'cl_1', group: '42' };

describe('createTokenSigner', () => {
  it('signs HS tokens the gateway verifies to the same principal, with iss, aud, client_id, jti, iat, exp', async () => {
    const secret = randomSecret();
    const iss = { name: 'local', issuer: 'scopegate', audience: ['api', 'other'], algorithms: ['HS256'], secrets: [secret] };
    const signer = await createTokenSigner(issuerConfig(iss), { configPath: 'token_service.issuer' });
    expect([signer.source, signer.alg]).toEqual(['secrets', 'HS256']);
    const { token, exp } = await signer.sign({ ...groupClaims, room: '7', roomName: 'ops' }, { jti: 'at_1', nowMs: NOW, ttlS: 3600 });
    expect(exp).toBe(NOW / 1000 + 3600);
    const payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    expect(payload).toEqual({
      iss: 'scopegate', aud: 'api', iat: NOW / 1000, exp: NOW / 1000 + 3600, jti: 'at_1', client_id: 'cl_1',
      sub: 'cl_1', client_type: 'group', scope: 'send_notification view_room', room_id: '7', room_name: 'ops', group_id: '42',
    });
    const verifier = await createTokenVerifier(tokensConfig({ issuers: [iss] }), { clock });
    expect(await verifier.verify(token)).toMatchObject({ subject: 'cl_1', clientType: 'group', scopes: ['send_notification', 'view_room'], room: '7', roomName: 'ops', group: '42', tokenId: 'at_1', iss: 'scopegate' });
    expect(await signer.publicJwks()).toEqual({ keys: [] });
  });

  it("writes the issuer's claim names and reverse-maps client types and scopes", async () => {
    const secret = randomSecret();
    const iss = {
      name: 'idp', algorithms: ['HS512', 'HS256'], secrets: [secret],
      claims: { subject: 'uid', client_type: { claim: 'kind', map: { app: 'group' } }, scopes: { claim: 'perms', map: { 'rooms:read': 'view_room' } }, group: 'tenant', token_id: 'tid' },
    };
    const signer = await createTokenSigner(issuerConfig(iss), { configPath: 'p' });
    const { token } = await signer.sign(groupClaims, { jti: 'at_2', nowMs: NOW, ttlS: 60 });
    const payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    expect(payload).toMatchObject({ uid: 'cl_1', kind: 'app', perms: 'send_notification rooms:read', tenant: '42', tid: 'at_2', jti: 'at_2' });
    expect(decodeProtectedHeader(token).alg).toBe('HS512');
    const verifier = await createTokenVerifier(tokensConfig({ issuers: [iss] }), { clock });
    expect(await verifier.verify(token)).toMatchObject({ subject: 'cl_1', clientType: 'group', scopes: ['send_notification', 'view_room'], group: '42', tokenId: 'at_2' });
  });

  it('signs with a private_key_file and publishes its public half with a kid', async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const keys = await generateKeys('ES256');
    const file = await dir.write('key.pem', keys.privatePem);
    const iss = { name: 'pk', issuer: 'pk', algorithms: ['ES256'], private_key_file: file };
    const signer = await createTokenSigner(issuerConfig(iss), { configPath: 'p', baseDir: dir.path });
    const { token } = await signer.sign(groupClaims, { jti: 'at_3', nowMs: NOW, ttlS: 60 });
    const jwks = await signer.publicJwks();
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    expect(jwks.keys[0]!['d']).toBeUndefined();
    expect(decodeProtectedHeader(token).kid).toBe(jwks.keys[0]!.kid);
    const jwksFile = await dir.write('jwks.json', JSON.stringify(jwks));
    const verifier = await createTokenVerifier(tokensConfig({ issuers: [{ name: 'pk', issuer: 'pk', algorithms: ['ES256'], jwks_file: jwksFile }] }), { clock });
    expect((await verifier.verify(token)).subject).toBe('cl_1');
  });

  it("signs with the key ring's ES256 key, kid in the header", async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const ring: KeyRingSource = {
      signingKey: async () => ({ kid: 'k1', alg: 'ES256', key: privateKey }),
      publicJwks: async () => ({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] }),
    };
    // An issuer with no key source at all (the schema allows that only for the token_service issuer).
    const svc = { ...issuerConfig({ name: 'svc', issuer: 'svc', algorithms: ['ES256'], jwks_file: 'x' }), jwks_file: undefined };
    const signer = await createTokenSigner(svc, { keyRing: ring, configPath: 'p' });
    expect(signer.source).toBe('store');
    const { token } = await signer.sign(groupClaims, { jti: 'at_4', nowMs: NOW, ttlS: 60 });
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'ES256', typ: 'JWT', kid: 'k1' });
  });

  it('refuses issuers that cannot sign, or would write unreadable claims, at start-up', async () => {
    const pub = await generateKeys('RS256');
    const dir = await tempDir();
    dirs.push(dir);
    const pem = await dir.write('pub.pem', pub.publicPem);
    await expect(createTokenSigner(issuerConfig({ name: 'p', algorithms: ['RS256'], public_key_file: pem }), { configPath: 'token_service.issuer' })).rejects.toThrow(ConfigError);
    const noKeys = { ...issuerConfig({ name: 'n', algorithms: ['RS256'], jwks_file: 'x' }), jwks_file: undefined };
    await expect(createTokenSigner(noKeys, { configPath: 'p', keyRing: { signingKey: () => { throw new Error('x'); }, publicJwks: () => ({ keys: [] }) } })).rejects.toThrow(/ES256/);
    await expect(createTokenSigner(issuerConfig({ name: 'm', algorithms: ['HS256'], secrets: [randomSecret()], claims: { subject: 'exp' } }), { configPath: 'p' })).rejects.toThrow(/sets itself/);
    await expect(
      createTokenSigner(issuerConfig({ name: 'm', algorithms: ['HS256'], secrets: [randomSecret()], claims: { client_type: { claim: 'ct', map: { group: 'room' } } } }), { configPath: 'p' }),
    ).rejects.toThrow(/cannot write client type/);
  });
});
