/**
 * The token service's operator commands (SPEC §9): `clients`, `users`, `keys`, `tokens`, run
 * in-process against a real embedded store — opened by the command itself when no server runs,
 * and through the control socket while another holder (this process, or a real child process)
 * has the store open, as `serve` would.
 */
import { spawn } from 'node:child_process';
import fc from 'fast-check';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { claimValue, parseScopes, runClients, UsageError, type CommandIO } from '../../src/commands/clients.js';
import { runKeys } from '../../src/commands/keys.js';
import { runTokens } from '../../src/commands/tokens.js';
import { runUsers } from '../../src/commands/users.js';
import { verifySecret } from '../../src/token-service/secrets.js';
import type { RevocationRecord, TokenStore } from '../../src/token-service/store.js';
import { LOCK_FILE } from '../../src/token-service/store/lock.js';
import { openTokenStore } from '../../src/token-service/store/open.js';
import { TEST_ISSUER } from '../helpers/gateway.js';
import { ROOT } from '../helpers/process.js';

const NOW = 1_800_000_000_000;

function configYaml(o: { store?: string; issuer?: string } = {}): string {
  const svc = `    - name: svc
      issuer: https://scopegate.test
      audience: api
      algorithms: [ES256]`;
  return `
upstreams:
  default: { url: "http://127.0.0.1:9" }
tokens:
  clock_tolerance_s: 30
  issuers:
${o.issuer && o.issuer !== 'svc' ? '' : svc}
${TEST_ISSUER}
token_service:
  issuer: ${o.issuer ?? 'svc'}
  store: ${o.store ?? './data'}
  lifetimes: { access_s: 600, user_s: 900, personal_s: 3600 }
`;
}

interface Captured {
  io: CommandIO;
  out: () => string;
  err: () => string;
}
function capture(opts: { stdin?: string; now?: number } = {}): Captured {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: {
      stdout: (s) => out.push(s),
      stderr: (s) => err.push(s),
      env: {},
      clock: () => opts.now ?? NOW,
      stdin: async () => opts.stdin ?? '',
    },
    out: () => out.join(''),
    err: () => err.join(''),
  };
}

type Runner = (argv: string[], io: CommandIO) => Promise<number>;
async function run(fn: Runner, argv: string[], opts: { stdin?: string; now?: number } = {}) {
  const c = capture(opts);
  const code = await fn(argv, c.io);
  return { code, stdout: c.out(), stderr: c.err() };
}

async function tempDir(label: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `sg-cmd-${label}-`));
}

describe('with no server running, each command opens the store itself, relative to the config file', () => {
  let dir: string;
  let cfg: string;
  beforeAll(async () => {
    dir = await tempDir('direct');
    cfg = join(dir, 'gateway.yaml');
    await writeFile(cfg, configYaml());
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('clients create prints client_id and client_secret once; the store keeps only a scrypt hash; list/rotate/delete work', async () => {
    const created = await run(runClients, ['create', '--config', cfg, '--name', 'Build bot', '--client-type', 'group', '--scopes', 'send_notification view_group', '--group', '1', '--group-name', 'Acme']);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const m = /^client_id: (cl_[A-Za-z0-9_-]{22})\nclient_secret: ([A-Za-z0-9_-]{43})\n$/.exec(created.stdout);
    expect(m).not.toBeNull();
    const [, id, secret] = m!;
    expect(existsSync(join(dir, 'data', 'pgdata'))).toBe(true); // ./data next to the config, not in cwd
    expect(existsSync(join(dir, 'data', LOCK_FILE))).toBe(false); // released after the command

    const room = await run(runClients, ['create', '--config', cfg, '--name', 'Ops room', '--client-type', 'room', '--scopes', 'send_notification', '--room', '42', '--room-name', 'Ops', '--json'], { now: NOW + 1 });
    expect(room.code).toBe(0);
    const roomJson = JSON.parse(room.stdout) as Record<string, unknown>;
    expect(roomJson).toMatchObject({ name: 'Ops room', client_type: 'room', scopes: ['send_notification'], room_id: '42', room_name: 'Ops' });
    expect(roomJson.client_secret).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const list = await run(runClients, ['list', '--config', cfg]);
    expect(list.code).toBe(0);
    expect(list.stdout).toContain(id);
    expect(list.stdout).toContain('send_notification view_group');
    expect(list.stdout).not.toContain(secret);
    expect(list.stdout).not.toContain('scrypt$');
    const listJson = JSON.parse((await run(runClients, ['list', '--config', cfg, '--json'])).stdout) as { clients: Array<Record<string, unknown>> };
    expect(listJson.clients.map((c) => c.client_id)).toEqual([id, roomJson.client_id]); // oldest first
    expect(JSON.stringify(listJson)).not.toMatch(/secret|scrypt/);

    const rotated = await run(runClients, ['rotate-secret', '--config', cfg, id!]);
    expect(rotated.code).toBe(0);
    const newSecret = /client_secret: (\S+)/.exec(rotated.stdout)![1]!;
    expect(newSecret).not.toBe(secret);

    const store = await openTokenStore(join(dir, 'data'), { control: false });
    try {
      const rec = (await store.getClient(id!))!;
      expect(rec.secretHash).toMatch(/^scrypt\$/);
      expect(await verifySecret(newSecret, rec.secretHash)).toBe(true);
      expect(await verifySecret(secret!, rec.secretHash)).toBe(false);
      expect(rec).toMatchObject({ name: 'Build bot', clientType: 'group', scopes: ['send_notification', 'view_group'], groupId: '1', groupName: 'Acme', createdAt: NOW });
      await store.recordToken({ jti: 'issued-to-bot', kind: 'access', clientId: id, ownerType: 'client', ownerId: id!, subject: id!, scopes: ['view_group'], createdAt: NOW, expiresAt: NOW + 600_000 });
    } finally {
      await store.close();
    }

    const deleted = await run(runClients, ['delete', '--config', cfg, id!]);
    expect(deleted).toMatchObject({ code: 0, stdout: `deleted client ${id}; revoked 1 live token(s)\n` });
    const again = await run(runClients, ['delete', '--config', cfg, id!]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/no client/);
    expect((await run(runClients, ['rotate-secret', '--config', cfg, 'cl_nope'])).code).toBe(1);
  }, 120_000);
});

describe('while another holder (as serve) has the store open, commands go through its control socket', () => {
  let dir: string;
  let cfg: string;
  let holder: TokenStore;
  const pushed: RevocationRecord[] = [];
  let stopWatch: () => void;
  beforeAll(async () => {
    dir = await tempDir('attached');
    cfg = join(dir, 'gateway.yaml');
    await writeFile(cfg, configYaml());
    holder = await openTokenStore('./data', { baseDir: dir });
    stopWatch = holder.watchRevocations!((r) => pushed.push(r), () => {});
  }, 60_000);
  afterAll(async () => {
    stopWatch?.();
    await holder?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('users add reads the password from stdin only, stores its hash, refuses an existing user unless --replace', async () => {
    const add = await run(runUsers, ['add', '--config', cfg, '--username', 'alice', '--password-stdin', '--scopes', 'view_room send_message', '--display-name', 'Alice A'], { stdin: 'correct horse battery\n' });
    expect(add).toMatchObject({ code: 0, stdout: 'added user alice\n', stderr: '' });
    const u = (await holder.getUser('alice'))!;
    expect(u).toMatchObject({ scopes: ['view_room', 'send_message'], displayName: 'Alice A', createdAt: NOW });
    expect(await verifySecret('correct horse battery', u.passwordHash)).toBe(true);

    const dup = await run(runUsers, ['add', '--config', cfg, '--username', 'alice', '--password-stdin'], { stdin: 'another password' });
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/exists.*--replace/);
    const replaced = await run(runUsers, ['add', '--config', cfg, '--username', 'alice', '--password-stdin', '--replace'], { stdin: 'another password\r\n' });
    expect(replaced.code).toBe(0);
    expect(await verifySecret('another password', (await holder.getUser('alice'))!.passwordHash)).toBe(true);

    const short = await run(runUsers, ['add', '--config', cfg, '--username', 'bob', '--password-stdin'], { stdin: 'short\n' });
    expect(short.code).toBe(1);
    expect(short.stderr).not.toContain('short\n');
    expect(await holder.getUser('bob')).toBeUndefined();
  });

  it('users add without --password-stdin generates a password and prints it once; list never shows a hash', async () => {
    const add = await run(runUsers, ['add', '--config', cfg, '--username', 'carol@example.com', '--json']);
    expect(add.code).toBe(0);
    const { password } = JSON.parse(add.stdout) as { password: string };
    expect(password).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(await verifySecret(password, (await holder.getUser('carol@example.com'))!.passwordHash)).toBe(true);
    const list = await run(runUsers, ['list', '--config', cfg]);
    expect(list.stdout).toMatch(/alice\s+-\s+-/); // --replace replaced the scopes and display name too
    expect(list.stdout).toContain('carol@example.com');
    expect(list.stdout).not.toContain('scrypt');
    expect(JSON.parse((await run(runUsers, ['list', '--config', cfg, '--json'])).stdout).users.map((x: { username: string }) => x.username)).toEqual(['alice', 'carol@example.com']);
    expect((await run(runUsers, ['add', '--config', cfg, '--username', 'has space'])).code).toBe(2);
  });

  it('users delete removes the user and revokes their live tokens, which the serving process hears at once', async () => {
    await holder.recordToken({ jti: 'alice-pat', kind: 'personal', ownerType: 'user', ownerId: 'alice', subject: 'alice', scopes: ['view_room'], name: 'laptop', createdAt: NOW, expiresAt: NOW + 3_600_000 });
    const del = await run(runUsers, ['delete', '--config', cfg, 'alice']);
    expect(del).toMatchObject({ code: 0, stdout: 'deleted user alice; revoked 1 live token(s)\n' });
    expect(await holder.getUser('alice')).toBeUndefined();
    expect(pushed.map((r) => r.jti)).toContain('alice-pat');
    expect((await run(runUsers, ['delete', '--config', cfg, 'alice'])).code).toBe(1);
  });

  it('keys rotate adds a signing key; the previous one stays published for the longest lifetime + tolerance', async () => {
    expect((await run(runKeys, ['list', '--config', cfg])).stdout).toMatch(/^no keys/);
    const first = await run(runKeys, ['rotate', '--config', cfg, '--json'], { now: NOW });
    expect(first.code).toBe(0);
    const k1 = (JSON.parse(first.stdout) as { kid: string }).kid;
    const second = await run(runKeys, ['rotate', '--config', cfg, '--json'], { now: NOW + 1000 });
    const out = JSON.parse(second.stdout) as { kid: string; retired: Array<{ kid: string; publish_until: string }> };
    // personal_s (3600) is the longest signed lifetime; tokens.clock_tolerance_s is 30.
    expect(out.retired).toEqual([{ kid: k1, publish_until: new Date(NOW + 1000 + 3630_000).toISOString() }]);
    const list = JSON.parse((await run(runKeys, ['list', '--config', cfg, '--json'], { now: NOW + 2000 })).stdout) as { keys: Array<Record<string, unknown>> };
    expect(list.keys.map((k) => [k.kid, k.status])).toEqual([[out.kid, 'signing'], [k1, 'published']]);
    expect(JSON.stringify(list)).not.toMatch(/"d"|private/i);
    const later = JSON.parse((await run(runKeys, ['list', '--config', cfg, '--json'], { now: NOW + 1000 + 3630_000 })).stdout) as { keys: Array<Record<string, unknown>> };
    expect(later.keys.find((k) => k.kid === k1)!.status).toBe('expired');
    const text = await run(runKeys, ['list', '--config', cfg]);
    expect(text.stdout).toMatch(/^KID\s+ALG\s+STATUS/);
  });

  it('keys rotate refuses when the token service issuer signs with configured secrets', async () => {
    const hsCfg = join(dir, 'hs.yaml');
    await writeFile(hsCfg, configYaml({ issuer: 'local' }));
    const r = await run(runKeys, ['rotate', '--config', hsCfg]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/configured secrets/);
  });

  it('tokens list filters by owner and kind; tokens revoke denylists the jti and the server hears it at once', async () => {
    const base = { ownerType: 'user' as const, subject: 'dave', scopes: ['view_room'], createdAt: NOW, expiresAt: NOW + 600_000 };
    await holder.recordToken({ ...base, jti: 'dave-1', kind: 'access', ownerId: 'dave' });
    await holder.recordToken({ ...base, jti: 'dave-2', kind: 'personal', ownerId: 'dave', name: 'ci' });
    await holder.recordToken({ ...base, jti: 'erin-1', kind: 'access', ownerId: 'erin' });
    const list = JSON.parse((await run(runTokens, ['list', '--config', cfg, '--owner', 'dave', '--json'])).stdout) as { tokens: Array<Record<string, unknown>> };
    expect(list.tokens.map((t) => t.jti)).toEqual(['dave-1', 'dave-2']);
    expect(JSON.parse((await run(runTokens, ['list', '--config', cfg, '--owner', 'dave', '--kind', 'personal', '--json'])).stdout).tokens.map((t: { jti: string }) => t.jti)).toEqual(['dave-2']);
    expect((await run(runTokens, ['list', '--config', cfg, '--kind', 'bogus'])).code).toBe(2);

    const rev = await run(runTokens, ['revoke', '--config', cfg, 'dave-1']);
    expect(rev.code).toBe(0);
    expect(pushed.find((r) => r.jti === 'dave-1')).toEqual({ jti: 'dave-1', expiresAt: NOW + 600_000, revokedAt: NOW });
    expect((await run(runTokens, ['revoke', '--config', cfg, 'dave-1'])).stdout).toMatch(/already revoked/);
    expect((await run(runTokens, ['list', '--config', cfg, '--owner', 'dave'])).stdout).not.toContain('dave-1');
    const unknown = await run(runTokens, ['revoke', '--config', cfg, 'no-such-jti']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no token with jti/);
  });

  it('clients delete through the socket revokes the client\'s tokens in the serving process', async () => {
    const created = await run(runClients, ['create', '--config', cfg, '--name', 'tmp', '--client-type', 'group', '--scopes', 'view_group']);
    const id = /client_id: (\S+)/.exec(created.stdout)![1]!;
    expect((await holder.getClient(id))!.name).toBe('tmp');
    await holder.recordToken({ jti: 'tmp-tok', kind: 'access', clientId: id, ownerType: 'client', ownerId: id, subject: id, scopes: ['view_group'], createdAt: NOW, expiresAt: NOW + 60_000 });
    expect((await run(runClients, ['delete', '--config', cfg, id])).code).toBe(0);
    expect(pushed.map((r) => r.jti)).toContain('tmp-tok');
  });

  it('a second server on the same directory is refused with the holder\'s pid', async () => {
    await expect(openTokenStore('./data', { baseDir: dir })).rejects.toThrow(new RegExp(`locked by pid ${process.pid}`));
  });

  it('property: the control socket answers any line with a refusal or a result, never executes close, and keeps serving', async () => {
    const lock = JSON.parse(await readFile(join(dir, 'data', LOCK_FILE), 'utf8')) as { socket: string };
    const sock = createConnection(lock.socket);
    await new Promise<void>((r) => sock.once('connect', () => r()));
    let buf = '';
    const answers: string[] = [];
    sock.setEncoding('utf8');
    sock.on('data', (c: string) => {
      buf += c;
      let i;
      while ((i = buf.indexOf('\n')) !== -1) {
        answers.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
    const send = async (line: string) => {
      const before = answers.length;
      sock.write(`${line}\n`);
      const end = Date.now() + 5000;
      while (answers.length === before && Date.now() < end) await new Promise((r) => setTimeout(r, 2));
      expect(answers.length).toBe(before + 1);
      return JSON.parse(answers[answers.length - 1]!) as { ok: boolean; error?: { code: string } };
    };
    const line = fc.oneof(
      fc.string().filter((s) => !s.includes('\n')),
      fc.record({ id: fc.anything(), method: fc.oneof(fc.constantFrom('close', 'watchRevocations', 'constructor', '__proto__', 'toString', 'listUsers', 'getClient'), fc.string()), args: fc.oneof(fc.array(fc.string(), { maxLength: 2 }), fc.anything()) }).map((o) => JSON.stringify(o)),
    );
    await fc.assert(
      fc.asyncProperty(line, async (l) => {
        const a = await send(l);
        if (!a.ok) expect(a.error!.code).toMatch(/^[a-z_]+$/);
      }),
      { numRuns: 200 },
    );
    const closeAttempt = await send(JSON.stringify({ id: 1, method: 'close', args: [] }));
    expect(closeAttempt).toMatchObject({ ok: false, error: { code: 'bad_request' } });
    sock.destroy();
    await expect(holder.ping()).resolves.toBeUndefined();
    expect((await run(runUsers, ['list', '--config', cfg])).code).toBe(0);
  });
});

describe('while a separate process holds the store (as `serve` would)', () => {
  const OPEN_JS = join(ROOT, 'dist/token-service/store/open.js');
  it('the CLI works through that process, and after it stops the CLI opens the store itself', async (ctx) => {
    if (!existsSync(OPEN_JS)) {
      if (process.env.CI) throw new Error(`${OPEN_JS} is missing: run npm run build`);
      ctx.skip();
    }
    const dir = await tempDir('child');
    try {
      const cfg = join(dir, 'gateway.yaml');
      await writeFile(cfg, configYaml());
      const script = join(dir, 'holder.mjs');
      await writeFile(
        script,
        `import { openTokenStore } from ${JSON.stringify(pathToFileURL(OPEN_JS).href)};
const store = await openTokenStore(process.argv[2]);
process.on('SIGTERM', async () => { await store.close(); process.exit(0); });
process.stdout.write('open\\n');
setInterval(() => {}, 1000);
`,
      );
      const child = spawn(process.execPath, [script, join(dir, 'data')], { stdio: ['ignore', 'pipe', 'pipe'] });
      const exited = new Promise<number | string | null>((r) => child.on('exit', (code, sig) => r(code ?? sig)));
      let err = '';
      child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
      try {
        await new Promise<void>((resolve, reject) => {
          child.stdout!.on('data', (c: Buffer) => c.toString().includes('open') && resolve());
          void exited.then((c) => reject(new Error(`holder exited (${c}): ${err}`)));
        });
        expect(JSON.parse(await readFile(join(dir, 'data', LOCK_FILE), 'utf8')).pid).toBe(child.pid);
        const created = await run(runClients, ['create', '--config', cfg, '--name', 'via child', '--client-type', 'group', '--scopes', 'view_group', '--json']);
        expect(created.stderr).toBe('');
        expect(created.code).toBe(0);
        const listed = JSON.parse((await run(runClients, ['list', '--config', cfg, '--json'])).stdout) as { clients: Array<{ name: string }> };
        expect(listed.clients.map((c) => c.name)).toEqual(['via child']);
        await expect(openTokenStore(join(dir, 'data'))).rejects.toThrow(new RegExp(`locked by pid ${child.pid}`));
      } finally {
        child.kill('SIGTERM');
        expect(await exited).toBe(0);
      }
      expect(existsSync(join(dir, 'data', LOCK_FILE))).toBe(false); // SIGTERM → close released it
      const after = JSON.parse((await run(runClients, ['list', '--config', cfg, '--json'])).stdout) as { clients: Array<{ name: string }> };
      expect(after.clients.map((c) => c.name)).toEqual(['via child']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('usage and errors', () => {
  const RUNNERS: Record<string, Runner> = { clients: runClients, users: runUsers, keys: runKeys, tokens: runTokens };
  it.each([
    { cmd: 'clients', argv: [], code: 2, re: /missing subcommand/ },
    { cmd: 'clients', argv: ['frobnicate'], code: 2, re: /unknown subcommand/ },
    { cmd: 'clients', argv: ['create', '--config', '/x.yaml', '--client-type', 'group', '--scopes', 'a'], code: 2, re: /--name is required/ },
    { cmd: 'clients', argv: ['create', '--config', '/x.yaml', '--name', 'n', '--client-type', 'user', '--scopes', 'a'], code: 2, re: /group or room/ },
    { cmd: 'clients', argv: ['create', '--config', '/x.yaml', '--name', 'n', '--client-type', 'room', '--scopes', 'a'], code: 2, re: /needs --room/ },
    { cmd: 'clients', argv: ['create', '--config', '/x.yaml', '--name', 'n', '--client-type', 'group', '--scopes', 'a', '--room', '1'], code: 2, re: /client-type room/ },
    { cmd: 'clients', argv: ['create', '--config', '/x.yaml', '--name', 'n', '--client-type', 'group', '--scopes', 'a"b'], code: 2, re: /invalid scope/ },
    { cmd: 'clients', argv: ['create', '--config', '/x.yaml', '--name', 'n', '--client-type', 'group', '--scopes', ' '], code: 2, re: /at least one scope/ },
    { cmd: 'clients', argv: ['create', '--config', '/x.yaml', '--name', 'bad\nname', '--client-type', 'group', '--scopes', 'a'], code: 2, re: /control characters/ },
    { cmd: 'clients', argv: ['list', '--bogus'], code: 2, re: /Unknown option/ },
    { cmd: 'clients', argv: ['delete'], code: 2, re: /expected 1 argument/ },
    { cmd: 'users', argv: ['add', '--config', '/x.yaml'], code: 2, re: /--username is required/ },
    { cmd: 'keys', argv: ['spin'], code: 2, re: /unknown subcommand/ },
    { cmd: 'tokens', argv: ['revoke', 'a', 'b'], code: 2, re: /expected 1 argument/ },
  ])('$cmd $argv: exit $code with a clear message', async ({ cmd, argv, code, re }) => {
    const r = await run(RUNNERS[cmd]!, argv);
    expect(r.code).toBe(code);
    expect(r.stderr).toMatch(re);
    expect(r.stdout).toBe('');
    if (code === 2) expect(r.stderr).toMatch(/Usage:/);
  });

  it('a config without token_service, or a missing config file, is exit 1 naming the problem', async () => {
    const dir = await tempDir('noconf');
    try {
      const cfg = join(dir, 'plain.yaml');
      await writeFile(cfg, `upstreams:\n  default: { url: "http://127.0.0.1:9" }\ntokens:\n  issuers:\n${TEST_ISSUER}\n`);
      const r = await run(runClients, ['list', '--config', cfg]);
      expect(r).toMatchObject({ code: 1 });
      expect(r.stderr).toMatch(/no token_service section/);
      const missing = await run(runClients, ['list', '--config', join(dir, 'nope.yaml')]);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(/nope\.yaml/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('property: arbitrary argv never throws, exits 0, 1 or 2, and prints nothing on failure to stdout', async () => {
    const word = fc.oneof(fc.constantFrom('create', 'list', 'delete', 'rotate-secret', 'add', 'revoke', 'rotate', '--json', '--name', '--scopes', '--client-type', 'group', 'room', '--config', '--password-stdin', '-c', '--'), fc.string({ maxLength: 12 }));
    const runners = [runClients, runUsers, runKeys, runTokens];
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: 3 }), fc.array(word, { maxLength: 8 }), async (which, argv) => {
        // Keep every path away from a real store: --config always names a file that does not exist.
        const args = [...argv.filter((a) => a !== '--config' && a !== '-c'), '--config', '/nonexistent/scopegate.yaml'];
        const c = capture();
        const code = await runners[which]!(args, c.io);
        expect([0, 1, 2]).toContain(code);
        if (code !== 0) expect(c.out()).toBe('');
      }),
      { numRuns: 300 },
    );
  });

  it('property: parseScopes and claimValue accept only representable values, rejecting with UsageError', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        try {
          const scopes = parseScopes(s, { required: false });
          for (const x of scopes) expect(x).toMatch(/^[\x21\x23-\x5B\x5D-\x7E]+$/);
          expect(new Set(scopes).size).toBe(scopes.length);
        } catch (e) {
          expect(e).toBeInstanceOf(UsageError);
        }
        try {
          const v = claimValue('x', s);
          expect(v).toBe(s);
          // eslint-disable-next-line no-control-regex
          expect(v).not.toMatch(/[\x00-\x1f\x7f]/);
          expect(Buffer.byteLength(v!)).toBeLessThanOrEqual(1024);
        } catch (e) {
          expect(e).toBeInstanceOf(UsageError);
        }
      }),
      { numRuns: 500 },
    );
  });
});
