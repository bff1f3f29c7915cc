/**
 * SPEC §9 / issue 13: "a process killed with SIGKILL during a burst of token requests restarts with
 * every acknowledged token still valid and every refresh token still usable once".
 *
 * A real `scopegate serve` (dist/) on the embedded store with the token service on, a client made
 * with `scopegate clients create` (through the running server's control socket). Twelve workers
 * keep one token request each in flight: client_credentials in the standard and HipChat dialects,
 * livedigital client_credentials (its answer carries a refresh token: a new family) and
 * refresh_token grants (standard and livedigital) that rotate those families. After N
 * acknowledged answers (varied per round, with rotations among them) the process is SIGKILLed; a
 * new one starts on the same directory (it must take over the dead process's lock), and then:
 *   - every access token whose 200 reached the client is let through on the API route by the new
 *     process, and the real upstream receives that request (the client-only ones of earlier rounds
 *     too, each round);
 *   - every refresh token whose 200 reached the client and that was not presented yet works
 *     exactly once: the first use is a 200 with a new pair whose access token is let through; the
 *     second use is `invalid_grant` and revokes the family (RFC 9700 §4.14.2), so the new access
 *     token is then `token_revoked` and the new refresh token `invalid_grant`;
 *   - a refresh token that was presented when the process died (no answer) is either of the two
 *     clean outcomes — it works once as above, or it is refused with `invalid_grant` because its
 *     rotation had committed, which is a replay and revokes its family (so the family's
 *     acknowledged access tokens are then `token_revoked`). Never a 5xx or any other half state.
 * One store directory for every round (PGlite's first start is slow).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCK_FILE } from '../../src/token-service/store/lock.js';
import { spawnGateway, type GatewayProcess } from '../helpers/process.js';
import { tempDir, type TempDir } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { createClient, expectLetThrough, processConfig, tokenRequest, verdict, type TokenAnswer, type TokenDialect } from './processes.js';

type Client = { id: string; secret: string };
/** A refresh token as the client holds it: the client-side label of its family, and how many rotations made it (0: the grant's own). */
type Held = { wire: string; family: string; rotations: number };
/** An access token whose 200 reached the client; `family` when a refresh family issued it. */
type Acked = { token: string; family?: string | undefined };

// 12 in flight. Refresh grants cost two scrypts each (docs/token-service.md), and every refresh
// token is checked after the restart with two or three more: few of them keep the file quick.
const WORKERS = { standardCc: 6, hipchatCc: 3, livedigitalCc: 1, refresh: 2 };
/** The livedigital worker starts a new family while fewer refresh tokens than this are held. */
const POOL_CAP = 2;

let up: Upstream;
let dir: TempDir;
let file: string;
let client: Client;
let gw: GatewayProcess | undefined;

beforeAll(async () => {
  up = await startUpstream();
  dir = await tempDir();
  file = await dir.write('gw.yaml', processConfig({ upstream: up.url, store: join(dir.path, 'store') }));
  // PGlite's first start (initdb) is slow on a busy machine.
  gw = await spawnGateway(file, { timeoutMs: 60_000 });
  client = await createClient(file, 'crash burst');
}, 90_000);
afterAll(async () => {
  await gw?.kill();
  await up?.close();
  await dir?.cleanup();
});

interface Burst {
  acked: Acked[];
  /** Acknowledged refresh tokens nobody presented yet. */
  pool: Held[];
  /** Refresh tokens presented when the process died: no answer reached the client. */
  inFlight: Held[];
  refreshes: number;
  /** Answers that arrived but were not a 200 (must stay empty). */
  unexpected: string[];
}

/** Runs the workers until `acks` answers (at least `refreshes` of them rotations) arrived, then SIGKILLs the process. */
async function burstThenKill(g: GatewayProcess, round: number, acks: number, refreshes: number): Promise<Burst> {
  const b: Burst = { acked: [], pool: [], inFlight: [], refreshes: 0, unexpected: [] };
  let killed = false;
  let families = 0;
  const ack = () => {
    if (!killed && b.acked.length >= acks && b.refreshes >= refreshes) {
      killed = true;
      g.signal('SIGKILL'); // synchronously, inside the answer's callback: exactly these are acknowledged
    }
  };
  /** One request; undefined when no (complete) answer arrived. */
  const send = async (dialect: TokenDialect, params: Record<string, string>): Promise<TokenAnswer | undefined> => {
    try {
      const a = await tokenRequest(g.url, dialect, client, params, 30_000);
      if (a.status !== 200) b.unexpected.push(`${dialect} ${params['grant_type']}: ${a.status} ${JSON.stringify(a.body)}`);
      return a.status === 200 ? a : undefined;
    } catch {
      if (!killed) b.unexpected.push(`${dialect} ${params['grant_type']}: no answer before the kill`);
      return undefined;
    }
  };
  const newFamily = async (): Promise<void> => {
    const a = await send('livedigital', { grant_type: 'client_credentials' });
    if (!a) return;
    const family = `r${round}-f${families++}`;
    b.acked.push({ token: String(a.body['access_token']), family });
    b.pool.push({ wire: String(a.body['refresh_token']), family, rotations: 0 });
    ack();
  };
  const clientCredentials = async (dialect: 'standard' | 'hipchat'): Promise<void> => {
    const a = await send(dialect, { grant_type: 'client_credentials' });
    if (!a) return;
    b.acked.push({ token: String(a.body['access_token']) });
    ack();
  };

  const loop = async (step: (i: number) => Promise<void>) => {
    for (let i = 0; !killed; i++) await step(i);
  };
  const workers: Array<Promise<void>> = [];
  for (let w = 0; w < WORKERS.standardCc; w++) workers.push(loop(() => clientCredentials('standard')));
  for (let w = 0; w < WORKERS.hipchatCc; w++) workers.push(loop(() => clientCredentials('hipchat')));
  for (let w = 0; w < WORKERS.livedigitalCc; w++) workers.push(loop(() => (b.pool.length < POOL_CAP ? newFamily() : clientCredentials('standard'))));
  for (let w = 0; w < WORKERS.refresh; w++) {
    workers.push(
      loop(async (i) => {
        // The newest pooled token is rotated; the older ones stay held back for after the restart.
        const held = b.pool.length > 1 ? b.pool.pop()! : undefined;
        if (!held) return newFamily();
        const dialect: TokenDialect = (i + w) % 2 === 0 ? 'standard' : 'livedigital';
        const a = await send(dialect, { grant_type: 'refresh_token', refresh_token: held.wire });
        if (!a) {
          b.inFlight.push(held);
          return;
        }
        b.refreshes++;
        b.acked.push({ token: String(a.body['access_token']), family: held.family });
        b.pool.push({ wire: String(a.body['refresh_token']), family: held.family, rotations: held.rotations + 1 });
        ack();
      }),
    );
  }
  const exited = await Promise.race([g.exit(), new Promise<string>((r) => setTimeout(() => r('timeout'), 60_000))]);
  if (exited === 'timeout') {
    killed = true;
    await g.kill();
    throw new Error(`round ${round}: ${acks} answers (${refreshes} rotations) not reached within 60 s; got ${b.acked.length} (${b.refreshes}); ${b.unexpected.join('; ')}`);
  }
  killed = true;
  await Promise.all(workers);
  expect(exited).toBe('SIGKILL');
  return b;
}

/** The restarted gateway lets `token` through to the upstream: the upstream saw this very request. */
const letThrough = (g: GatewayProcess, token: string) => expectLetThrough(up, g.url, token, client.id);

/** Runs `fn` over `items`, `n` at a time. */
async function eachLimited<T>(items: readonly T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

/**
 * A refresh token used after the restart: 'once' when the first use is a new pair and every
 * later use is refused with the family revoked; 'refused' when the first use is already
 * invalid_grant (a replay: the family is revoked). `checkRotated`: also present the new refresh
 * token, refused since its family is revoked (two more scrypts, so not for every token).
 */
async function useOnce(g: GatewayProcess, held: Held, checkRotated: boolean): Promise<'once' | 'refused'> {
  const first = await tokenRequest(g.url, 'standard', client, { grant_type: 'refresh_token', refresh_token: held.wire });
  if (first.status !== 200) {
    expect({ status: first.status, error: first.error }).toEqual({ status: 400, error: 'invalid_grant' });
    return 'refused';
  }
  const access = String(first.body['access_token']);
  const next = String(first.body['refresh_token']);
  expect(next).not.toBe(held.wire);
  await letThrough(g, access);
  // The same refresh token again: a replay (RFC 9700 §4.14.2) — refused, and the family is revoked.
  const again = await tokenRequest(g.url, 'livedigital', client, { grant_type: 'refresh_token', refresh_token: held.wire });
  expect({ status: again.status, error: again.error }).toEqual({ status: 400, error: 'invalid_grant' });
  expect(await verdict(g.url, access, 'after-replay')).toBe('token_revoked');
  if (!checkRotated) return 'once';
  const rotated = await tokenRequest(g.url, 'standard', client, { grant_type: 'refresh_token', refresh_token: next });
  expect({ status: rotated.status, error: rotated.error }).toEqual({ status: 400, error: 'invalid_grant' });
  return 'once';
}

describe('a gateway killed with SIGKILL during a burst of token requests', () => {
  it('restarts on the same store with every acknowledged access token valid and every acknowledged refresh token usable once (3 rounds)', async () => {
    const storeDir = join(dir.path, 'store');
    const survivors: string[] = []; // client-only tokens of earlier rounds: no family, nothing revokes them
    const outcomes = { once: 0, rotatedOnce: 0, refused: 0, inFlightOnce: 0 };
    for (const [round, [acks, refreshes]] of ([[20, 1], [40, 2], [80, 3]] as const).entries()) {
      const g = gw!;
      const deadPid = g.child.pid;
      const b = await burstThenKill(g, round, acks, refreshes);
      expect(b.unexpected).toEqual([]);
      expect(b.acked.length).toBeGreaterThanOrEqual(acks);
      expect(b.refreshes).toBeGreaterThanOrEqual(refreshes);
      // The dead process's lock is still there; the new one must take it over, not refuse to start.
      expect(JSON.parse(await readFile(join(storeDir, LOCK_FILE), 'utf8')).pid).toBe(deadPid);
      gw = await spawnGateway(file, { timeoutMs: 60_000 });
      const restarted = gw;
      await restarted.waitForLine(/took over a stale lock/, 1000);

      // Access tokens first: the refresh checks below revoke their families.
      // This round's, every one; of the earlier rounds' client-only tokens, 30 spread over them.
      const earlier = survivors.filter((_, i) => i % Math.ceil(survivors.length / 30) === 0);
      await eachLimited([...b.acked.map((a) => a.token), ...earlier], 12, (t) => letThrough(restarted, t));
      survivors.push(...b.acked.filter((a) => a.family === undefined).map((a) => a.token));

      // Held-back and in-flight refresh tokens are of different families: checked side by side.
      const heldBack = eachLimited(b.pool, 4, async (held) => {
        expect(await useOnce(restarted, held, held === b.pool[0])).toBe('once');
        outcomes.once++;
        if (held.rotations > 0) outcomes.rotatedOnce++;
      });
      const inFlight = eachLimited(b.inFlight, 4, async (held) => {
        const how = await useOnce(restarted, held, held === b.inFlight[0]);
        if (how === 'once') {
          outcomes.inFlightOnce++;
          return;
        }
        outcomes.refused++;
        // Refused = its rotation had committed before the kill: a replay, so the whole family is revoked.
        for (const a of b.acked.filter((x) => x.family === held.family)) expect(await verdict(restarted.url, a.token, 'family')).toBe('token_revoked');
      });
      await Promise.all([heldBack, inFlight]);
      // The access lines of the restarted process: answers were written, none of them a 5xx.
      expect(restarted.stdout.some((l) => l.includes('"status":200'))).toBe(true);
      expect(restarted.stdout.filter((l) => /"status":5\d\d/.test(l))).toEqual([]);
    }
    // Held-back refresh tokens were checked in every round, rotated ones among them (the kill comes
    // right after a rotation's answer), and rotations were in flight when the process died.
    expect(outcomes.once).toBeGreaterThanOrEqual(3);
    expect(outcomes.rotatedOnce).toBeGreaterThanOrEqual(1);
    expect(outcomes.refused + outcomes.inFlightOnce).toBeGreaterThanOrEqual(2);
    console.info(`[gateway-crash] refresh tokens after restarts: ${JSON.stringify(outcomes)}`);
  }, 180_000);
});
