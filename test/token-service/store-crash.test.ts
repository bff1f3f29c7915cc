/**
 * SPEC §9: the embedded store "survives `kill -9` without losing a committed write". A real child
 * process (node, importing the BUILT store from dist/) opens the store and commits writes in a
 * loop, printing each id only after its write resolved; the test SIGKILLs it mid-burst, reopens
 * the directory in this process (the dead child's lock must be taken over) and checks that every
 * acknowledged write is there. Several rounds on the same directory, killed at different moments.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTokenStore } from '../../src/token-service/store/open.js';
import { LOCK_FILE } from '../../src/token-service/store/lock.js';
import { ROOT } from '../helpers/process.js';

const OPEN_JS = join(ROOT, 'dist/token-service/store/open.js');

// The writer: a revocation (a multi-statement transaction) every 4th write, a token row otherwise.
const WRITER = `
import { openTokenStore } from ${JSON.stringify(pathToFileURL(OPEN_JS).href)};
const store = await openTokenStore(process.argv[2]);
process.stdout.write('open\\n');
for (let i = 0; ; i++) {
  const jti = 'w-' + process.pid + '-' + i;
  const now = Date.now();
  if (i % 4 === 3) await store.revoke([{ jti, expiresAt: now + 3_600_000 }], now);
  else await store.recordToken({ jti, kind: 'access', ownerType: 'client', ownerId: 'crash', subject: 's', scopes: ['a', 'b'], createdAt: now, expiresAt: now + 3_600_000 });
  process.stdout.write('ack ' + (i % 4 === 3 ? 'rev ' : 'tok ') + jti + '\\n');
}
`;

let dir: string;
let script: string;

beforeAll(async () => {
  if (!existsSync(OPEN_JS)) throw new Error(`${OPEN_JS} is missing: run \`npm run build\` first (npm test does it in pretest)`);
  dir = await mkdtemp(join(tmpdir(), 'sg-crash-'));
  script = join(dir, 'writer.mjs');
  await writeFile(script, WRITER);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs the writer until it has acknowledged `n` writes (plus whatever it adds before the signal lands), then SIGKILLs it. */
async function writeThenKill(storeDir: string, n: number): Promise<{ tok: string[]; rev: string[] }> {
  const child = spawn(process.execPath, [script, storeDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const exited = new Promise<string | number | null>((r) => child.on('exit', (code, sig) => r(sig ?? code)));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`writer did not reach ${n} acks in time; stderr: ${err}`)), 90_000);
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      if ((out.match(/^ack /gm) ?? []).length >= n) {
        clearTimeout(t);
        child.kill('SIGKILL');
        resolve();
      }
    });
    child.stderr!.on('data', (c: Buffer) => (err += c.toString('utf8')));
    void exited.then((how) => {
      clearTimeout(t);
      reject(new Error(`writer exited (${how}) early; stderr: ${err}`));
    });
  }).catch(async (e) => {
    child.kill('SIGKILL');
    await exited;
    throw e;
  });
  expect(await exited).toBe('SIGKILL');
  // Only complete lines count: a half-written last line was never fully acknowledged.
  const lines = out.split('\n').slice(0, -1);
  const acked = (kind: string) => lines.filter((l) => l.startsWith(`ack ${kind} `)).map((l) => l.slice(8));
  return { tok: acked('tok'), rev: acked('rev') };
}

describe('embedded store durability under kill -9', () => {
  it('every acknowledged write survives SIGKILL, and the dead writer\'s lock is taken over (several rounds)', async () => {
    const storeDir = join(dir, 'store');
    const all = { tok: [] as string[], rev: [] as string[] };
    for (const n of [40, 7, 150]) {
      const acked = await writeThenKill(storeDir, n);
      expect(acked.tok.length + acked.rev.length).toBeGreaterThanOrEqual(n);
      all.tok.push(...acked.tok);
      all.rev.push(...acked.rev);
      // The dead writer left its lock behind; opening must take it over, not fail.
      expect(JSON.parse(await readFile(join(storeDir, LOCK_FILE), 'utf8')).pid).not.toBe(process.pid);

      const store = await openTokenStore(storeDir, { control: false });
      try {
        const now = Date.now();
        const missingTok: string[] = [];
        for (const jti of all.tok) if (!(await store.getToken(jti))) missingTok.push(jti);
        expect(missingTok).toEqual([]);
        const revoked = new Set((await store.revokedSince(0, now)).map((r) => r.jti));
        expect(all.rev.filter((j) => !revoked.has(j))).toEqual([]);
        // The rows read back whole, not just present.
        expect(await store.getToken(all.tok[0]!)).toMatchObject({ ownerId: 'crash', scopes: ['a', 'b'], kind: 'access' });
      } finally {
        await store.close();
      }
      expect(existsSync(join(storeDir, LOCK_FILE))).toBe(false); // a clean close releases the lock
    }
  }, 300_000);
});
