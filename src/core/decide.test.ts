/**
 * The decision's revocation check (SPEC §9): asked after every verification, a cached token
 * included, and skipped only while the denylist's version is the one a principal was last found
 * not revoked at. A real decider (real verifier and token cache, memory limiter, config through
 * the schema); the denylist is the smallest thing with its contract (has + version).
 */
import { describe, expect, it } from 'vitest';
import { createTokenVerifier } from '../auth/verify-token.js';
import { loadConfigText } from '../config/load.js';
import { createMemoryStore } from '../ratelimit/memory-store.js';
import { createRateLimiter } from '../ratelimit/policy.js';
import { baseConfig, TEST_SECRET } from '../../test/helpers/gateway.js';
import { hsToken, nowS } from '../../test/helpers/tokens.js';
import { createDecider, type Decision, type RequestFacts } from './decide.js';

async function setup(withVersion: boolean) {
  const loaded = loadConfigText(baseConfig({ upstream: 'http://127.0.0.1:9', routes: '  - path: /v2/room/{id}\n    scopes: [view_room]\n' }), { env: {} });
  const clock = () => Date.now();
  const verifier = await createTokenVerifier(loaded.config.tokens, { clock, baseDir: loaded.baseDir });
  const limiter = createRateLimiter(loaded.config.rate_limit, { store: createMemoryStore({ maxKeys: 1000, clock }), clock });
  const revoked = new Set<string>();
  let version = 1;
  const lookups: string[] = [];
  const decider = createDecider(loaded, {
    clock,
    verifier,
    limiter,
    isRevoked: (jti) => (lookups.push(jti), revoked.has(jti)),
    revocationVersion: withVersion ? () => version : undefined,
  });
  const revoke = (jti: string) => {
    revoked.add(jti);
    version++;
  };
  const decide = async (token: string): Promise<Decision> => {
    const facts: RequestFacts = { method: 'GET', target: '/v2/room/1', authorization: [`Bearer ${token}`], hostCount: 1, httpVersion: '1.1', clientIp: '10.0.0.1' };
    return await decider.decide(facts);
  };
  return { decide, revoke, lookups };
}

const mint = (jti: string) =>
  hsToken(TEST_SECRET, { iss: 'scopegate-test', aud: 'api', iat: nowS(), exp: nowS() + 600, sub: 'alice', client_type: 'user', scope: 'view_room', jti });

describe('the revocation check in the decision', () => {
  it('looks a cached token up once per denylist version, and refuses it once it is revoked', async () => {
    const { decide, revoke, lookups } = await setup(true);
    const a = await mint('tok-a');
    const b = await mint('tok-b');
    for (let i = 0; i < 5; i++) expect((await decide(a)).kind).toBe('forward');
    expect(lookups).toEqual(['tok-a']); // the token cache hands out one principal, stamped after the first look
    revoke('tok-b'); // another token: the version moves, so tok-a is looked up again (and still allowed)
    expect((await decide(a)).kind).toBe('forward');
    expect((await decide(b)).kind).toBe('deny');
    expect(lookups).toEqual(['tok-a', 'tok-a', 'tok-b']);
    revoke('tok-a');
    const d = await decide(a);
    expect(d.kind === 'deny' && d.error.code).toBe('token_revoked');
    // Refused every time after that: a revoked principal is never stamped.
    expect((await decide(a)).kind).toBe('deny');
    expect(lookups.filter((j) => j === 'tok-a')).toHaveLength(4);
  });

  it('without a version, asks the denylist on every decision', async () => {
    const { decide, revoke, lookups } = await setup(false);
    const a = await mint('tok-c');
    for (let i = 0; i < 3; i++) expect((await decide(a)).kind).toBe('forward');
    revoke('tok-c');
    expect((await decide(a)).kind).toBe('deny');
    expect(lookups).toEqual(['tok-c', 'tok-c', 'tok-c', 'tok-c']);
  });
});
