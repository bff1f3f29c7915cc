import { afterAll, beforeAll, describe, it, expect } from 'vitest';
import { createPublicKey } from 'node:crypto';
import { algorithmsForKey, loadIssuerKeys } from './keys.js';
import { ConfigError, GatewayError } from '../errors.js';
import { generateKeys, issuerConfig, randomSecret, tempDir, type TempDir, type TestKeyPair } from '../../test/helpers/tokens.js';

let dir: TempDir;
let rsa: TestKeyPair;
let ec: TestKeyPair;
let ed: TestKeyPair;

beforeAll(async () => {
  dir = await tempDir();
  [rsa, ec, ed] = await Promise.all([generateKeys('RS256', { kid: 'r' }), generateKeys('ES256', { kid: 'e' }), generateKeys('EdDSA', { kid: 'd' })]);
  await dir.write('rsa.pub.pem', rsa.publicPem);
  await dir.write('rsa.key.pem', rsa.privatePem);
  await dir.write('ec.pub.pem', ec.publicPem);
  await dir.write('ec.pub.jwk.json', JSON.stringify(ec.publicJwk));
  await dir.write('garbage.pem', '-----BEGIN PUBLIC KEY-----\nnot base64 at all\n-----END PUBLIC KEY-----\n');
  await dir.write('broken.json', '{"keys": [');
  await dir.write('not-a-set.json', '{"foo": 1}');
  await dir.write('set.json', JSON.stringify({ keys: [ec.publicJwk, { ...rsa.publicJwk, kid: undefined }] }));
});
afterAll(() => dir.cleanup());

async function configError(p: Promise<unknown>): Promise<ConfigError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  return err as ConfigError;
}

describe('loadIssuerKeys: bad key files are config errors naming the YAML path', () => {
  const cases: Array<{ name: string; issuer: Record<string, unknown>; path: string; message: RegExp }> = [
    { name: 'a missing public key file', issuer: { algorithms: ['RS256'], public_key_file: 'nope.pem' }, path: 'public_key_file', message: /cannot read key file .*nope\.pem: ENOENT/ },
    { name: 'a PEM that does not parse', issuer: { algorithms: ['RS256'], public_key_file: 'garbage.pem' }, path: 'public_key_file', message: /not a PEM public key/ },
    { name: 'a private key given as public_key_file', issuer: { algorithms: ['RS256'], public_key_file: 'rsa.key.pem' }, path: 'public_key_file', message: /holds a private key/ },
    { name: 'a key that fits none of the algorithms', issuer: { algorithms: ['RS256'], public_key_file: 'ec.pub.pem' }, path: 'public_key_file', message: /ec \(prime256v1\) key.*RS256/ },
    { name: 'a public key given as private_key_file', issuer: { algorithms: ['ES256'], private_key_file: 'ec.pub.pem' }, path: 'private_key_file', message: /not a PEM private key/ },
    { name: 'a public JWK given as private_key_file', issuer: { algorithms: ['ES256'], private_key_file: 'ec.pub.jwk.json' }, path: 'private_key_file', message: /public JWK/ },
    { name: 'a JWKS file that is not JSON', issuer: { algorithms: ['ES256'], jwks_file: 'broken.json' }, path: 'jwks_file', message: /not a JSON Web Key Set/ },
    { name: 'a JWKS file without keys', issuer: { algorithms: ['ES256'], jwks_file: 'not-a-set.json' }, path: 'jwks_file', message: /not a JSON Web Key Set/ },
  ];
  it.each(cases)('$name', async ({ issuer, path, message }) => {
    const err = await configError(loadIssuerKeys(issuerConfig({ name: 'x', ...issuer }), 2, { baseDir: dir.path }));
    expect(err.issues).toHaveLength(1);
    expect(err.issues[0]!.path).toBe(`tokens.issuers[2].${path}`);
    expect(err.issues[0]!.message).toMatch(message);
  });
});

describe('loadIssuerKeys: sources', () => {
  it('resolves relative paths against baseDir (and fails without it)', async () => {
    const issuer = issuerConfig({ name: 'x', algorithms: ['RS256'], public_key_file: 'rsa.pub.pem' });
    const keys = await loadIssuerKeys(issuer, 0, { baseDir: dir.path });
    expect(await keys.keysFor({ alg: 'RS256' })).toHaveLength(1);
    await configError(loadIssuerKeys(issuer, 0, { baseDir: '/nonexistent-dir' }));
  });

  it('accepts a public JWK file as public_key_file', async () => {
    const keys = await loadIssuerKeys(issuerConfig({ name: 'x', algorithms: ['ES256'], public_key_file: 'ec.pub.jwk.json' }), 0, { baseDir: dir.path });
    expect(await keys.keysFor({ alg: 'ES256' })).toHaveLength(1);
  });

  it('offers every HMAC secret, newest first, for HS algorithms only', async () => {
    const [a, b] = [randomSecret(), randomSecret()];
    const keys = await loadIssuerKeys(issuerConfig({ name: 'x', algorithms: ['HS256'], secrets: [a, b] }), 0);
    const got = (await keys.keysFor({ alg: 'HS256' })) as Uint8Array[];
    expect(got.map((k) => new TextDecoder().decode(k))).toEqual([a, b]);
    await expect(keys.keysFor({ alg: 'RS256' })).rejects.toMatchObject({ code: 'key_unknown' });
  });

  it('refuses an algorithm the configured key cannot verify with key_unknown', async () => {
    const keys = await loadIssuerKeys(issuerConfig({ name: 'x', algorithms: ['RS256', 'ES256'], public_key_file: 'rsa.pub.pem' }), 0, { baseDir: dir.path });
    const err = await keys.keysFor({ alg: 'ES256' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect((err as GatewayError).code).toBe('key_unknown');
  });

  it('offers every JWKS member that matches a header without kid', async () => {
    const keys = await loadIssuerKeys(issuerConfig({ name: 'x', algorithms: ['ES256', 'RS256'], jwks_file: 'set.json' }), 0, { baseDir: dir.path });
    expect(await keys.keysFor({ alg: 'RS256' })).toHaveLength(1);
    expect(await keys.keysFor({ alg: 'ES256', kid: 'e' })).toHaveLength(1);
    await expect(keys.keysFor({ alg: 'ES256', kid: 'zzz' })).rejects.toMatchObject({ code: 'key_unknown' });
  });

  it('is ready at once for local key sources', async () => {
    const keys = await loadIssuerKeys(issuerConfig({ name: 'x', algorithms: ['RS256'], private_key_file: 'rsa.key.pem' }), 0, { baseDir: dir.path });
    expect(await keys.readiness()).toEqual({ ok: true });
  });
});

describe('algorithmsForKey', () => {
  const all = ['HS256', 'RS256', 'RS512', 'PS256', 'ES256', 'ES384', 'EdDSA', 'Ed25519'];
  it.each([
    ['RSA', () => rsa, ['RS256', 'RS512', 'PS256']],
    ['EC P-256', () => ec, ['ES256']],
    ['Ed25519', () => ed, ['EdDSA', 'Ed25519']],
  ] as const)('lists what an %s key can do, in config order', (_n, keys, want) => {
    expect(algorithmsForKey(createPublicKey(keys().publicPem), all)).toEqual(want);
  });
});
