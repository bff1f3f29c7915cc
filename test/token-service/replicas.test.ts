/**
 * SPEC §9 / issue 13: "Two gateway processes on one PostgreSQL: a token issued by one is accepted
 * by the other; a refresh on one rotates for both."
 *
 * Two real `scopegate serve` processes (dist/) started together on one PostgreSQL schema, clients
 * made with `scopegate clients create` on the same store:
 *   - both publish the same JWKS, one current key, and both sign with it (replicas starting
 *     together generate one key, not two);
 *   - a token issued by A is let through by B on the API route and the real upstream receives the
 *     request, and the other way round; the HipChat dialect (Basic + form) on B for a client that
 *     B has never seen before;
 *   - a refresh on A rotates for both: the new refresh token works on B, once — presented again on
 *     A it is a replay; the replaced one presented to B is a replay too — and a replay revokes the
 *     family (RFC 9700 §4.14.2), so the rotated pair's access token, already in both verified-token
 *     caches, is refused by A and by B within a generous bound of revocation.max_lag_ms.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { spawnGateway, type GatewayProcess } from '../helpers/process.js';
import { createTestSchema, describePostgres, type TestSchema } from '../helpers/postgres.js';
import { tempDir, type TempDir } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { jwtPayload } from './harness.js';
import { createClient, expectLetThrough, issue, lagUntilRefused, MAX_LAG_MS, processConfig, tokenRequest, verdict, type TokenDialect } from './processes.js';

type Client = { id: string; secret: string };

const header = (token: string) => JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')) as { alg: string; kid?: string };

describePostgres('two gateway processes on one PostgreSQL', () => {
  let schema: TestSchema;
  let up: Upstream;
  let dir: TempDir;
  let file: string;
  let a: GatewayProcess;
  let b: GatewayProcess;
  let client: Client;

  /** `scopegate clients create` on the shared store (the CLI opens the database itself). */
  const newClient = (name: string): Promise<Client> => createClient(file, name, ['--group', '7', '--group-name', 'Ops']);

  /** A refresh_token grant; the status and error code of a refusal, or the new pair. */
  async function refresh(g: GatewayProcess, dialect: TokenDialect, rt: string) {
    const r = await tokenRequest(g.url, dialect, client, { grant_type: 'refresh_token', refresh_token: rt });
    return { status: r.status, error: r.error, access: String(r.body['access_token']), refresh: String(r.body['refresh_token']) };
  }

  /** A new refresh family: livedigital's client_credentials answer carries a refresh token. */
  async function family(g: GatewayProcess): Promise<{ access: string; refresh: string }> {
    const r = await tokenRequest(g.url, 'livedigital', client, { grant_type: 'client_credentials' });
    expect(r.status).toBe(200);
    return { access: String(r.body['access_token']), refresh: String(r.body['refresh_token']) };
  }

  beforeAll(async () => {
    schema = await createTestSchema('replicas');
    up = await startUpstream();
    dir = await tempDir();
    file = await dir.write('gw.yaml', processConfig({ upstream: up.url, store: schema.url }));
    // Started together: both find no key and race to generate one.
    [a, b] = await Promise.all([spawnGateway(file, { timeoutMs: 60_000 }), spawnGateway(file, { timeoutMs: 60_000 })]);
    client = await newClient('replicas');
  }, 90_000);
  afterAll(async () => {
    await Promise.all([a?.kill(), b?.kill()]);
    await up?.close();
    await dir?.cleanup();
    await schema?.drop();
  });

  it('both publish the same JWKS with one current key, and both sign with it', async () => {
    const [ja, jb] = await Promise.all([a, b].map(async (g) => {
      const res = await fetch(`${g.url}/.well-known/jwks.json`);
      expect(res.status).toBe(200);
      return (await res.json()) as { keys: Array<{ kid: string; kty: string; crv: string; alg: string; d?: string }> };
    }));
    expect(ja).toEqual(jb);
    expect(ja!.keys).toHaveLength(1);
    const key = ja!.keys[0]!;
    expect(key).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256' });
    expect(key.d).toBeUndefined();
    for (const g of [a, b]) expect(header(await issue(g.url, client))).toEqual({ alg: 'ES256', kid: key.kid, typ: 'JWT' });
  });

  it('a token issued by A is let through by B, and one issued by B by A; the upstream receives both', async () => {
    const fromA = await issue(a.url, client);
    const fromB = await issue(b.url, client);
    expect(jwtPayload(fromA)['jti']).not.toBe(jwtPayload(fromB)['jti']);
    await expectLetThrough(up, b.url, fromA, client.id);
    await expectLetThrough(up, a.url, fromB, client.id);
    // And on the replica that issued each, of course.
    await expectLetThrough(up, a.url, fromA, client.id);
    await expectLetThrough(up, b.url, fromB, client.id);
  });

  it('the HipChat dialect (Basic + form) on B, for a client just made in the shared store', async () => {
    const fresh = await newClient('hipchat on B');
    const r = await tokenRequest(b.url, 'hipchat', fresh, { grant_type: 'client_credentials', scope: 'view_group' });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ token_type: 'bearer', scope: 'view_group', expires_in: 3600, group_id: 7, group_name: 'Ops' });
    expect(r.body['refresh_token']).toBeUndefined();
    const token = String(r.body['access_token']);
    expect(jwtPayload(token)).toMatchObject({ client_id: fresh.id, iss: 'https://auth.scopegate.test', aud: 'api' });
    await expectLetThrough(up, a.url, token, fresh.id);
    await expectLetThrough(up, b.url, token, fresh.id);
  });

  it('a refresh on A rotates for both: the new refresh token works on B once, and a second use on A is a replay that revokes the family everywhere', async () => {
    const first = await family(a);
    const onA = await refresh(a, 'standard', first.refresh);
    expect(onA.status).toBe(200);
    expect(onA.refresh).not.toBe(first.refresh);
    const onB = await refresh(b, 'livedigital', onA.refresh);
    expect(onB.status).toBe(200);
    // Every access token of the family, in both verified-token caches.
    for (const t of [first.access, onA.access, onB.access]) for (const g of [a, b]) await expectLetThrough(up, g.url, t, client.id);

    const again = await refresh(a, 'standard', onA.refresh);
    expect({ status: again.status, error: again.error }).toEqual({ status: 400, error: 'invalid_grant' });
    const t0 = performance.now();
    await a.waitForLine(/"event":"refresh_replay"/, 2000);
    for (const t of [first.access, onA.access, onB.access]) {
      const lags = await lagUntilRefused([a.url, b.url], t, t0, 5 * MAX_LAG_MS);
      for (const lag of lags) expect(lag).toBeLessThan(5 * MAX_LAG_MS);
    }
    // The family's newest refresh token went with it, on either replica.
    expect(await refresh(b, 'standard', onB.refresh)).toMatchObject({ status: 400, error: 'invalid_grant' });
  });

  it('the replaced refresh token presented to B is a replay: the rotated pair\'s access token is refused by A and B within max_lag_ms', async () => {
    const first = await family(b);
    const rotated = await refresh(a, 'livedigital', first.refresh);
    expect(rotated.status).toBe(200);
    expect(await verdict(a.url, rotated.access)).toBe('');
    expect(await verdict(b.url, rotated.access)).toBe('');

    const replay = await refresh(b, 'standard', first.refresh);
    expect({ status: replay.status, error: replay.error }).toEqual({ status: 400, error: 'invalid_grant' });
    const t0 = performance.now(); // answered: the family's revocation is committed
    const lags = await lagUntilRefused([a.url, b.url], rotated.access, t0, 5 * MAX_LAG_MS);
    for (const lag of lags) expect(lag).toBeLessThan(5 * MAX_LAG_MS);
    await b.waitForLine(/"event":"refresh_replay"/, 2000); // B's first: the earlier replay was A's
    // The refresh token A handed out is dead on A too.
    expect(await refresh(a, 'standard', rotated.refresh)).toMatchObject({ status: 400, error: 'invalid_grant' });
  });
});
