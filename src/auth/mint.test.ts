import { afterAll, beforeAll, describe, it, expect } from 'vitest';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { mintToken, parseTtl, TOKEN_KINDS, type TokenKind } from './mint.js';
import { createTokenVerifier } from './verify-token.js';
import { generateKeys, randomSecret, tempDir, testClock, tokensConfig, type TempDir } from '../../test/helpers/tokens.js';

const T0 = Date.UTC(2030, 0, 1);
const NOW = T0 / 1000;
let dir: TempDir;

beforeAll(async () => {
  dir = await tempDir();
  const [rsa, ec, ed] = await Promise.all([generateKeys('RS256', { kid: 'r1' }), generateKeys('ES256', { kid: 'e1' }), generateKeys('EdDSA', { kid: 'd1' })]);
  await dir.write('rsa.key.pem', rsa.privatePem);
  await dir.write('ec.key.jwk.json', JSON.stringify(ec.privateJwk));
  await dir.write('ed.key.pem', ed.privatePem);
});
afterAll(() => dir.cleanup());

describe('parseTtl', () => {
  it.each([
    ['30s', 30],
    ['15m', 900],
    ['1h', 3600],
    ['365d', 365 * 86_400],
    ['never', null],
  ])('parses %s', (s, want) => {
    expect(parseTtl(s)).toBe(want);
  });

  it.each(['', '0s', '1', 'h', '1.5h', '-1h', '1 h', '1H', '1w', 'forever', ' 1h'])('rejects %j with a TypeError', (s) => {
    expect(() => parseTtl(s)).toThrow(
      new TypeError(`invalid ttl "${s}": use a positive whole number followed by s, m, h or d (30s, 15m, 1h, 365d), or "never"`),
    );
  });
});

const issuers = [
  { name: 'hs', issuer: 'hs', audience: ['api', 'other'], algorithms: ['HS256'], secrets: [randomSecret(), randomSecret()] },
  { name: 'rsa', issuer: 'rsa', algorithms: ['PS256', 'RS256'], private_key_file: 'rsa.key.pem' },
  { name: 'ec', issuer: 'ec', algorithms: ['ES256'], private_key_file: 'ec.key.jwk.json' },
  { name: 'ed', algorithms: ['EdDSA'], private_key_file: 'ed.key.pem' },
  {
    name: 'mapped',
    issuer: 'mapped',
    algorithms: ['HS512'],
    secrets: [randomSecret()],
    claims: { subject: 'uid', client_type: { claim: 'kind', map: { install: 'group', person: 'user', channel: 'room' } }, scopes: 'scp', room: 'channel_id', token_id: 'tid' },
  },
];

describe('mintToken', () => {
  const kinds = Object.keys(TOKEN_KINDS) as TokenKind[];
  const matrix = issuers.flatMap((iss) => kinds.map((kind) => ({ issuer: iss.name, kind })));

  it.each(matrix)('a $kind token minted by issuer $issuer verifies with the same config', async ({ issuer, kind }) => {
    const clock = testClock(T0);
    const cfg = tokensConfig({ issuers });
    const iss = cfg.issuers.find((i) => i.name === issuer)!;
    const token = await mintToken(iss, { kind, sub: 'alice', room: '42', clock, baseDir: dir.path });
    const verifier = await createTokenVerifier(cfg, { clock, baseDir: dir.path });
    const p = await verifier.verify(token);
    const k = TOKEN_KINDS[kind];
    expect(p).toMatchObject({ issuerName: issuer, subject: 'alice', clientType: k.clientType, scopes: k.scopes, room: '42' });
    expect(p.exp).toBe(NOW + parseTtl(k.ttl)!);
    expect(p.tokenId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('writes the issuer claim names, reversing a client-type map', async () => {
    const cfg = tokensConfig({ issuers });
    const iss = cfg.issuers.find((i) => i.name === 'mapped')!;
    const token = await mintToken(iss, { kind: 'room-notification', sub: 'bot', room: '7', jti: 'J', clock: testClock(T0) });
    expect(decodeProtectedHeader(token)).toMatchObject({ alg: 'HS512', typ: 'JWT' });
    expect(decodeJwt(token)).toEqual({ iss: 'mapped', iat: NOW, exp: NOW + 365 * 86_400, jti: 'J', tid: 'J', uid: 'bot', kind: 'channel', scp: 'send_notification', channel_id: '7' });
  });

  it('sets iss, the first audience, iat and a random jti; signs with the first allowed fitting algorithm', async () => {
    const cfg = tokensConfig({ issuers });
    const hs = decodeJwt(await mintToken(cfg.issuers[0]!, { clock: testClock(T0) }));
    expect(hs).toMatchObject({ iss: 'hs', aud: 'api', iat: NOW, exp: NOW + 3600, client_type: 'user' });
    const a = await mintToken(cfg.issuers[1]!, { baseDir: dir.path });
    const b = await mintToken(cfg.issuers[1]!, { baseDir: dir.path });
    expect(decodeJwt(a).jti).not.toBe(decodeJwt(b).jti);
    expect(decodeProtectedHeader(a).alg).toBe('PS256');
    expect(decodeProtectedHeader(await mintToken(cfg.issuers[2]!, { baseDir: dir.path }))).toMatchObject({ alg: 'ES256', kid: 'e1' });
  });

  it('honours explicit client type, scopes, group, room name and ttl', async () => {
    const cfg = tokensConfig({ issuers });
    const t = await mintToken(cfg.issuers[0]!, { kind: 'addon', clientType: 'room', scopes: ['x', 'y'], group: 'g', roomName: 'Ops', ttl: '30s', clock: testClock(T0) });
    expect(decodeJwt(t)).toMatchObject({ client_type: 'room', scope: 'x y', group_id: 'g', room_name: 'Ops', exp: NOW + 30 });
  });

  it('mints a token without exp for ttl never when the issuer allows it', async () => {
    const cfg = tokensConfig({ issuers: [{ ...issuers[0], require_exp: false }] });
    const t = await mintToken(cfg.issuers[0]!, { kind: 'personal', ttl: 'never' });
    expect(decodeJwt(t).exp).toBeUndefined();
    await expect((await createTokenVerifier(cfg, { clock: Date.now })).verify(t)).resolves.toBeDefined();
  });

  it('refuses ttl never when the issuer requires exp', async () => {
    const cfg = tokensConfig({ issuers });
    await expect(mintToken(cfg.issuers[0]!, { ttl: 'never' })).rejects.toThrow(/require_exp/);
  });

  it('refuses a room-notification token without a room', async () => {
    const cfg = tokensConfig({ issuers });
    await expect(mintToken(cfg.issuers[0]!, { kind: 'room-notification' })).rejects.toThrow(TypeError);
  });

  it('refuses an issuer without private key material', async () => {
    const cfg = tokensConfig({ issuers: [{ name: 'pub', algorithms: ['RS256'], jwks_url: 'https://idp.example.com/jwks' }] });
    await expect(mintToken(cfg.issuers[0]!, {})).rejects.toThrow(new Error('issuer "pub" has no signing key (needs secrets or private_key_file)'));
  });
});
