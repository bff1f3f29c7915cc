/**
 * SPEC §1.4 and §3 through real sockets: one gateway per key source (HMAC secrets with rotation,
 * PEM public key, local JWKS file, remote JWKS served by a real HTTP server), each proving that a
 * good token reaches the echo upstream and that the classic attacks (algorithm confusion, `alg:
 * none`, a foreign key, an unknown kid) are refused with 401 and never forwarded. The remote JWKS
 * part covers refetch on unknown kid, rotation, JWKS down from the start (503, never 401) and
 * stale-if-error (still 200, counted on /metrics). Time edges use an injected clock.
 */
import { request as httpRequest } from 'node:http';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startJwksServer, type JwksFailure, type JwksServer } from '../helpers/jwks-server.js';
import {
  algConfusionToken,
  generateKeys,
  randomSecret,
  signToken,
  tempDir,
  testClock,
  unsecuredToken,
  type TempDir,
  type TestKeyPair,
} from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One GET over a fresh connection; the path goes out byte for byte. */
function get(base: string, path: string, headers: Record<string, string> = {}): Promise<RawResponse> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, method: 'GET', path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end();
  });
}

const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
const nowS = () => Math.floor(Date.now() / 1000);
let jtiSeq = 0;

/** Claims the test route accepts; `iss` selects the issuer. */
function claims(iss: string | undefined, over: Record<string, unknown> = {}): Record<string, unknown> {
  const c: Record<string, unknown> = {
    aud: 'api',
    sub: 'alice',
    client_type: 'user',
    scope: 'view_room',
    iat: nowS(),
    exp: nowS() + 600,
    jti: `k-${++jtiSeq}`,
    ...over,
  };
  if (iss !== undefined) c['iss'] = iss;
  return c;
}

/** A gateway config around `issuers` (YAML list items, indented by four spaces) and one route. */
function config(upstream: string, issuers: string, tokensExtra = ''): string {
  return `
realm: api
shutdown_timeout_ms: 1000
upstreams:
  default: { url: ${upstream}, timeout_ms: 2000, connect_timeout_ms: 500 }
tokens:
${tokensExtra}
  issuers:
${issuers}
routes:
  - id: get-room
    path: /v2/room/{room}
    methods: [GET]
    scopes: [view_room]
`;
}

/** Asserts a 401 "Invalid OAuth session" with one of `reasons`, nothing forwarded, no token echoed. */
async function expectInvalid(gw: TestGateway, up: Upstream, token: string, reasons: string[]): Promise<string> {
  const before = up.requests.length;
  const res = await get(gw.url, '/v2/room/1', bearer(token));
  expect(res.status).toBe(401);
  const body = JSON.parse(res.body) as { error: { code: number; message: string; reason: string } };
  expect(body.error.code).toBe(401);
  expect(body.error.message).toBe('Invalid OAuth session');
  expect(reasons).toContain(body.error.reason);
  expect(res.headers['www-authenticate']).toBe('Bearer realm="api", error="invalid_token"');
  expect(res.body).not.toContain(token);
  expect(up.requests.length).toBe(before);
  return body.error.reason;
}

/** Asserts the token is forwarded: 200 from the echo upstream, which saw the identity headers. */
async function expectForwarded(gw: TestGateway, up: Upstream, token: string): Promise<void> {
  const before = up.requests.length;
  const res = await get(gw.url, '/v2/room/1', bearer(token));
  expect(res.status).toBe(200);
  expect(up.requests.length).toBe(before + 1);
  const seen = up.requests[before]!;
  expect(seen.url).toBe('/v2/room/1');
  expect(seen.headers['x-auth-subject']).toBe('alice');
  expect(seen.headers['x-auth-scopes']).toBe('view_room');
}

async function metricsText(gw: TestGateway): Promise<string> {
  const res = await fetch(`${gw.adminUrl!}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

let up: Upstream;
let dir: TempDir;
beforeAll(async () => {
  up = await startUpstream();
  dir = await tempDir();
});
afterAll(async () => {
  await up.close();
  await dir.cleanup();
});
beforeEach(() => {
  up.requests.length = 0;
});

// ---------------------------------------------------------------------------------------------

describe('HMAC secrets with rotation', () => {
  const current = randomSecret();
  const previous = randomSecret();
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(
      config(
        up.url,
        `    - name: local
      issuer: local-iss
      audience: api
      algorithms: [HS256]
      secrets: ["${current}", "${previous}"]`,
      ),
    );
  });
  afterAll(() => gw.close());

  it('forwards a token signed with the current (first) secret', async () => {
    await expectForwarded(gw, up, await signToken(current, claims('local-iss')));
  });

  it('forwards a token signed with the previous (second) secret during rotation', async () => {
    await expectForwarded(gw, up, await signToken(previous, claims('local-iss')));
  });

  it('refuses a token signed with a secret that is not configured', async () => {
    await expectInvalid(gw, up, await signToken(randomSecret(), claims('local-iss')), ['signature_invalid']);
  });

  it('refuses alg none even with the right issuer', async () => {
    await expectInvalid(gw, up, unsecuredToken(claims('local-iss')), ['algorithm_forbidden']);
  });

  it('refuses an HS512 token when only HS256 is allowed, although the secret is right', async () => {
    await expectInvalid(gw, up, await signToken(current, claims('local-iss'), { alg: 'HS512' }), ['algorithm_forbidden']);
  });
});

// ---------------------------------------------------------------------------------------------

describe('PEM public key (RS256) next to an HMAC issuer', () => {
  let rsa: TestKeyPair;
  let gw: TestGateway;
  const hsSecret = randomSecret();
  beforeAll(async () => {
    rsa = await generateKeys('RS256', { kid: 'pem-1' });
    const pem = await dir.write('rs256.pub.pem', rsa.publicPem);
    // An HMAC issuer in the same gateway puts HS256 in the union of allowed algorithms, so the
    // confusion token cannot be stopped by the global allowlist alone: the per-issuer one must hold.
    gw = await startTestGateway(
      config(
        up.url,
        `    - name: rsa
      issuer: https://rsa.example/
      audience: api
      algorithms: [RS256]
      public_key_file: ${pem}
    - name: hs
      issuer: hs-iss
      audience: api
      algorithms: [HS256]
      secrets: ["${hsSecret}"]`,
      ),
    );
  });
  afterAll(() => gw.close());

  it('forwards an RS256 token signed with the matching private key', async () => {
    await expectForwarded(gw, up, await signToken(rsa, claims('https://rsa.example/')));
    expect(up.requests.at(-1)!.headers['x-auth-issuer']).toBe('https://rsa.example/');
  });

  it('refuses algorithm confusion: HS256 keyed with the RSA public PEM', async () => {
    const evil = algConfusionToken(rsa.publicPem, claims('https://rsa.example/'));
    await expectInvalid(gw, up, evil, ['algorithm_forbidden', 'signature_invalid']);
    // The same with the PEM's whitespace variants some libraries normalise to.
    const trimmed = algConfusionToken(rsa.publicPem.trim(), claims('https://rsa.example/'), { kid: 'pem-1' });
    await expectInvalid(gw, up, trimmed, ['algorithm_forbidden', 'signature_invalid']);
  });

  it('refuses alg none carrying the RSA issuer', async () => {
    await expectInvalid(gw, up, unsecuredToken(claims('https://rsa.example/'), { kid: 'pem-1' }), ['algorithm_forbidden']);
  });

  it('refuses an RS256 token signed by another RSA key', async () => {
    const other = await generateKeys('RS256', { kid: 'pem-1' });
    await expectInvalid(gw, up, await signToken(other, claims('https://rsa.example/')), ['signature_invalid']);
  });

  it('refuses PS256 signed with the right key: the issuer allows RS256 only', async () => {
    await expectInvalid(gw, up, await signToken(rsa, claims('https://rsa.example/'), { alg: 'PS256' }), ['algorithm_forbidden']);
  });
});

// ---------------------------------------------------------------------------------------------

describe('local JWKS file (ES256)', () => {
  let ec: TestKeyPair;
  let ec2: TestKeyPair;
  let gw: TestGateway;
  beforeAll(async () => {
    ec = await generateKeys('ES256', { kid: 'ec-1' });
    ec2 = await generateKeys('ES256', { kid: 'ec-2' });
    const file = await dir.write('jwks.json', JSON.stringify({ keys: [ec.publicJwk, ec2.publicJwk] }));
    gw = await startTestGateway(
      config(
        up.url,
        `    - name: filejwks
      issuer: file-iss
      audience: api
      algorithms: [ES256]
      jwks_file: ${file}`,
      ),
    );
  });
  afterAll(() => gw.close());

  it('forwards tokens signed with either key of the set, selected by kid', async () => {
    await expectForwarded(gw, up, await signToken(ec, claims('file-iss')));
    await expectForwarded(gw, up, await signToken(ec2, claims('file-iss')));
  });

  it('refuses a token whose kid is not in the file with key_unknown', async () => {
    const stranger = await generateKeys('ES256', { kid: 'ec-404' });
    await expectInvalid(gw, up, await signToken(stranger, claims('file-iss')), ['key_unknown']);
  });

  it('refuses a token signed by a foreign key that claims a known kid', async () => {
    const impostor = await generateKeys('ES256', { kid: 'ec-1' });
    await expectInvalid(gw, up, await signToken(impostor, claims('file-iss')), ['signature_invalid']);
  });

  it('refuses algorithm confusion with the EC public PEM and alg none', async () => {
    await expectInvalid(gw, up, algConfusionToken(ec.publicPem, claims('file-iss'), { kid: 'ec-1' }), ['algorithm_forbidden', 'signature_invalid']);
    await expectInvalid(gw, up, unsecuredToken(claims('file-iss'), { kid: 'ec-1' }), ['algorithm_forbidden']);
  });
});

// ---------------------------------------------------------------------------------------------

describe('remote JWKS (jwks_url, EdDSA)', () => {
  let ed: TestKeyPair;
  let jwks: JwksServer;
  let gw: TestGateway;

  const issuerYaml = (url: string, jwksOpts: string) => `    - name: remote
      issuer: https://idp.example/
      audience: api
      algorithms: [EdDSA, RS256]
      jwks_url: ${url}
      jwks: ${jwksOpts}`;

  beforeEach(async () => {
    ed = await generateKeys('EdDSA', { kid: 'ed-1' });
    jwks = await startJwksServer([ed.publicJwk]);
  });
  afterEach(async () => {
    await gw?.close();
    await jwks.close();
  });

  it('forwards a token verified with a key fetched from the JWKS endpoint, and counts the fetch', async () => {
    gw = await startTestGateway(config(up.url, issuerYaml(jwks.url, '{ timeout_ms: 1000, cooldown_ms: 0 }')));
    await expectForwarded(gw, up, await signToken(ed, claims('https://idp.example/')));
    expect(jwks.fetches).toBe(1);
    // A second token is verified from jose's cache: no new fetch.
    await expectForwarded(gw, up, await signToken(ed, claims('https://idp.example/')));
    expect(jwks.fetches).toBe(1);
    expect(await metricsText(gw)).toMatch(/scopegate_jwks_refresh_total\{[^}]*issuer="remote"[^}]*result="success"[^}]*\} 1/);
  });

  it('refetches the JWKS once for an unknown kid, then answers 401 key_unknown', async () => {
    gw = await startTestGateway(config(up.url, issuerYaml(jwks.url, '{ timeout_ms: 1000, cooldown_ms: 0 }')));
    await expectForwarded(gw, up, await signToken(ed, claims('https://idp.example/')));
    expect(jwks.fetches).toBe(1);
    const stranger = await generateKeys('EdDSA', { kid: 'ed-unknown' });
    await expectInvalid(gw, up, await signToken(stranger, claims('https://idp.example/')), ['key_unknown']);
    expect(jwks.fetches).toBe(2);
  });

  it('does not refetch for an unknown kid within the cooldown', async () => {
    gw = await startTestGateway(config(up.url, issuerYaml(jwks.url, '{ timeout_ms: 1000, cooldown_ms: 600000 }')));
    await expectForwarded(gw, up, await signToken(ed, claims('https://idp.example/')));
    const stranger = await generateKeys('EdDSA', { kid: 'ed-unknown' });
    for (let i = 0; i < 3; i++) {
      await expectInvalid(gw, up, await signToken(stranger, claims('https://idp.example/')), ['key_unknown']);
    }
    expect(jwks.fetches).toBe(1);
  });

  it('accepts tokens signed with a rotated-in key after the refetch its new kid triggers', async () => {
    gw = await startTestGateway(config(up.url, issuerYaml(jwks.url, '{ timeout_ms: 1000, cooldown_ms: 0 }')));
    await expectForwarded(gw, up, await signToken(ed, claims('https://idp.example/')));
    const next = await generateKeys('RS256', { kid: 'rsa-2' });
    jwks.setKeys([next.publicJwk]);
    await expectForwarded(gw, up, await signToken(next, claims('https://idp.example/')));
    expect(jwks.fetches).toBe(2);
    // The retired key is gone from the set: a fresh token signed with it no longer verifies.
    await expectInvalid(gw, up, await signToken(ed, claims('https://idp.example/')), ['key_unknown']);
  });

  it('refuses algorithm confusion and alg none against the remote issuer', async () => {
    gw = await startTestGateway(config(up.url, issuerYaml(jwks.url, '{ timeout_ms: 1000, cooldown_ms: 0 }')));
    const rsa = await generateKeys('RS256', { kid: 'rsa-1' });
    jwks.setKeys([ed.publicJwk, rsa.publicJwk]);
    await expectInvalid(gw, up, algConfusionToken(rsa.publicPem, claims('https://idp.example/'), { kid: 'rsa-1' }), ['algorithm_forbidden', 'signature_invalid']);
    await expectInvalid(gw, up, unsecuredToken(claims('https://idp.example/'), { kid: 'ed-1' }), ['algorithm_forbidden']);
  });

  const downModes: JwksFailure[] = ['500', 'close', 'invalid-json', 'hang'];
  for (const mode of downModes) {
    it(`answers 503 keys_unavailable (never 401) when the JWKS is down from the start (${mode})`, async () => {
      jwks.failWith(mode);
      gw = await startTestGateway(config(up.url, issuerYaml(jwks.url, '{ timeout_ms: 300, cooldown_ms: 0 }')));
      const token = await signToken(ed, claims('https://idp.example/'));
      for (let i = 0; i < 2; i++) {
        const res = await get(gw.url, '/v2/room/1', bearer(token));
        expect(res.status).toBe(503);
        expect(res.headers['content-type']).toMatch(/^application\/json/);
        expect(res.headers['www-authenticate']).toBeUndefined();
        expect(JSON.parse(res.body)).toEqual({
          error: { code: 503, message: 'Signing keys are temporarily unavailable; try again later.', type: 'Service Unavailable', reason: 'keys_unavailable' },
        });
        expect(res.body).not.toContain(token);
      }
      expect(up.requests).toHaveLength(0);
      expect(jwks.fetches).toBeGreaterThanOrEqual(1);
      expect(await metricsText(gw)).toMatch(/scopegate_jwks_refresh_total\{[^}]*issuer="remote"[^}]*result="error"[^}]*\} [1-9]/);
      // Once the endpoint heals, the same token passes: nothing negative was cached.
      jwks.failWith('none');
      await expectForwarded(gw, up, token);
    });
  }

  it('keeps serving the last good keys when a refresh fails (stale-if-error), and counts it', async () => {
    // cache_max_age_ms: 0 makes every request a refresh, so the failure is hit at once.
    gw = await startTestGateway(config(up.url, issuerYaml(jwks.url, '{ timeout_ms: 300, cooldown_ms: 0, cache_max_age_ms: 0 }')));
    await expectForwarded(gw, up, await signToken(ed, claims('https://idp.example/')));
    const fetchesWhenUp = jwks.fetches;
    jwks.failWith('500');
    for (let i = 0; i < 3; i++) await expectForwarded(gw, up, await signToken(ed, claims('https://idp.example/')));
    expect(jwks.fetches).toBeGreaterThan(fetchesWhenUp);
    const text = await metricsText(gw);
    expect(text).toMatch(/scopegate_jwks_refresh_total\{[^}]*issuer="remote"[^}]*result="(stale|error)"[^}]*\} [1-9]/);
    expect(text).toMatch(/scopegate_jwks_refresh_total\{[^}]*result="stale"[^}]*\} [1-9]/);
    // A kid the stale set does not know is still a 401, not a 503 and not a pass.
    const stranger = await generateKeys('EdDSA', { kid: 'ed-unknown' });
    await expectInvalid(gw, up, await signToken(stranger, claims('https://idp.example/')), ['key_unknown']);
  });

  it('keeps serving the last good keys when the JWKS endpoint hangs after keys were obtained', async () => {
    gw = await startTestGateway(config(up.url, issuerYaml(jwks.url, '{ timeout_ms: 200, cooldown_ms: 0, cache_max_age_ms: 0 }')));
    await expectForwarded(gw, up, await signToken(ed, claims('https://idp.example/')));
    jwks.failWith('hang');
    await expectForwarded(gw, up, await signToken(ed, claims('https://idp.example/')));
    expect(await metricsText(gw)).toMatch(/scopegate_jwks_refresh_total\{[^}]*result="stale"[^}]*\} [1-9]/);
  });
});

// ---------------------------------------------------------------------------------------------

describe('two issuers selected by iss', () => {
  let a: TestKeyPair;
  let b: TestKeyPair;
  let gw: TestGateway;
  beforeAll(async () => {
    a = await generateKeys('RS256', { kid: 'shared-kid' });
    b = await generateKeys('RS256', { kid: 'shared-kid' });
    const fileA = await dir.write('a.pub.pem', a.publicPem);
    const fileB = await dir.write('b.pub.pem', b.publicPem);
    gw = await startTestGateway(
      config(
        up.url,
        `    - name: issuer-a
      issuer: https://a.example/
      audience: api
      algorithms: [RS256]
      public_key_file: ${fileA}
    - name: issuer-b
      issuer: https://b.example/
      audience: api
      algorithms: [RS256]
      public_key_file: ${fileB}`,
      ),
    );
  });
  afterAll(() => gw.close());

  it('verifies each issuer with its own key and forwards its iss', async () => {
    await expectForwarded(gw, up, await signToken(a, claims('https://a.example/')));
    expect(up.requests.at(-1)!.headers['x-auth-issuer']).toBe('https://a.example/');
    await expectForwarded(gw, up, await signToken(b, claims('https://b.example/')));
    expect(up.requests.at(-1)!.headers['x-auth-issuer']).toBe('https://b.example/');
  });

  it("refuses a token claiming issuer A but signed with B's key (same kid, same alg)", async () => {
    await expectInvalid(gw, up, await signToken(b, claims('https://a.example/')), ['signature_invalid']);
    await expectInvalid(gw, up, await signToken(a, claims('https://b.example/')), ['signature_invalid']);
  });

  it('refuses an iss that matches neither issuer, and a token without iss', async () => {
    await expectInvalid(gw, up, await signToken(a, claims('https://c.example/')), ['issuer_unknown']);
    await expectInvalid(gw, up, await signToken(a, claims(undefined)), ['issuer_unknown']);
  });
});

// ---------------------------------------------------------------------------------------------

describe('exp / nbf edges with clock tolerance (injected clock)', () => {
  const T = Date.UTC(2031, 5, 1, 12, 0, 0);
  const TS = T / 1000;
  const clock = testClock(T);
  const secret = randomSecret();
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(
      config(
        up.url,
        `    - name: local
      issuer: local-iss
      audience: api
      algorithms: [HS256]
      secrets: ["${secret}"]`,
        '  clock_tolerance_s: 30',
      ),
      { clock },
    );
  });
  afterAll(() => gw.close());
  beforeEach(() => clock.set(T));

  const at = (over: Record<string, unknown>) => signToken(secret, claims('local-iss', { iat: TS - 100, exp: TS + 600, ...over }));

  const cases: Array<{ name: string; over: Record<string, unknown>; reason?: string }> = [
    { name: 'exp 29 s in the past (within 30 s tolerance) passes', over: { exp: TS - 29 } },
    { name: 'exp exactly tolerance in the past is expired', over: { exp: TS - 30 }, reason: 'token_expired' },
    { name: 'exp 31 s in the past is expired', over: { exp: TS - 31 }, reason: 'token_expired' },
    { name: 'nbf 30 s in the future (at the tolerance) passes', over: { nbf: TS + 30 } },
    { name: 'nbf 31 s in the future is not yet valid', over: { nbf: TS + 31 }, reason: 'token_not_yet_valid' },
    { name: 'iat 31 s in the future is not yet valid', over: { iat: TS + 31 }, reason: 'token_not_yet_valid' },
    { name: 'iat 30 s in the future passes', over: { iat: TS + 30 } },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const token = await at(c.over);
      if (c.reason) await expectInvalid(gw, up, token, [c.reason]);
      else await expectForwarded(gw, up, token);
    });
  }

  it('a token that passed stops passing once the clock moves beyond exp + tolerance (no stale cache)', async () => {
    const token = await at({ exp: TS + 60 });
    await expectForwarded(gw, up, token);
    clock.advance(89_000); // exp + 29 s
    await expectForwarded(gw, up, token);
    clock.advance(2_000); // exp + 31 s
    await expectInvalid(gw, up, token, ['token_expired']);
  });

  it('a token not yet valid starts passing once the clock reaches nbf - tolerance', async () => {
    const token = await at({ nbf: TS + 100, exp: TS + 1000 });
    await expectInvalid(gw, up, token, ['token_not_yet_valid']);
    clock.advance(70_000); // nbf - 30 s
    await expectForwarded(gw, up, token);
  });
});
