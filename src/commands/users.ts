/**
 * `scopegate users …` (SPEC §9): the store's users, for the password grant and the Integration page
 * when `token_service.users: store`.
 *
 *   scopegate users add --username U [--password-stdin] [--scopes "a b"] [--display-name N] [--group G] [--replace] [--json]
 *   scopegate users list [--json]
 *   scopegate users delete U
 *
 * The password is read from standard input (`--password-stdin`, one trailing newline removed),
 * never from argv, which any local user can read in `ps`. Without --password-stdin a random
 * password is generated and printed once. Only its scrypt hash is stored. An existing user is
 * refused unless --replace. `delete` also revokes the user's live tokens.
 *
 * @example
 *   printf '%s\n' "$PW" | scopegate users add --config gw.yaml --username alice --password-stdin --scopes "view_room"
 *   scopegate users delete --config gw.yaml alice
 */
import { clip } from '../clip.js';
import { hashSecret, newSecret } from '../token-service/secrets.js';
import type { UserRecord } from '../token-service/store.js';
import { claimValue, CommandError, defaultConfig, iso, json, parse, parseScopes, required, runCommand, table, UsageError, withStore, type CommandIO } from './clients.js';

export const USERS_USAGE = `Usage:
  scopegate users add --config FILE --username U [--password-stdin] [--scopes "a b"]
                      [--display-name NAME] [--group ID] [--replace] [--json]
  scopegate users list [--config FILE] [--json]
  scopegate users delete [--config FILE] USERNAME

The password comes from standard input with --password-stdin (never from the command line);
without it a random one is generated and printed once.
`;

const USERNAME = /^[A-Za-z0-9._@+-]{1,256}$/;
const MIN_PASSWORD = 8;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function publicUser(u: UserRecord) {
  return {
    username: u.username,
    scopes: u.scopes,
    ...(u.displayName !== undefined ? { display_name: u.displayName } : {}),
    ...(u.groupId !== undefined ? { group_id: u.groupId } : {}),
    created_at: new Date(u.createdAt).toISOString(),
  };
}

function username(v: string | undefined): string {
  if (v === undefined || !USERNAME.test(v)) {
    throw new UsageError('a username is 1-256 characters of letters, digits and . _ @ + -');
  }
  return v;
}

export async function runUsers(argv: string[], io: CommandIO): Promise<number> {
  const [sub, ...rest] = argv;
  return runCommand(`users ${sub ?? ''}`.trim(), USERS_USAGE, io, async () => {
    switch (sub) {
      case 'add': {
        const { values } = parse(
          rest,
          {
            username: { type: 'string' },
            'password-stdin': { type: 'boolean', default: false },
            scopes: { type: 'string' },
            'display-name': { type: 'string' },
            group: { type: 'string' },
            replace: { type: 'boolean', default: false },
          },
          0,
        );
        const name = username(required('username', values.username));
        const scopes = parseScopes(values.scopes, { required: false });
        const displayName = claimValue('display-name', values['display-name']);
        const groupId = claimValue('group', values.group);
        let password: string;
        let generated = false;
        if (values['password-stdin']) {
          password = (await (io.stdin ?? readStdin)()).replace(/\r?\n$/, '');
          if (password.length < MIN_PASSWORD) throw new CommandError(`the password from standard input is shorter than ${MIN_PASSWORD} characters`);
          if (/[\r\n]/.test(password)) throw new CommandError('the password from standard input spans several lines; give one line');
        } else {
          password = newSecret();
          generated = true;
        }
        await withStore(values.config ?? defaultConfig(io.env), io, async ({ store, now }) => {
          const existing = await store.getUser(name);
          if (existing && !values.replace) throw new CommandError(`user ${name} exists; add --replace to set a new password and scopes`);
          const rec: UserRecord = { username: name, passwordHash: await hashSecret(password), scopes, displayName, groupId, createdAt: existing?.createdAt ?? now() };
          await store.putUser(rec);
          if (values.json) io.stdout(json({ ...publicUser(rec), ...(generated ? { password } : {}) }));
          else io.stdout(`${existing ? 'replaced' : 'added'} user ${name}\n${generated ? `password: ${password}\n` : ''}`);
        });
        return;
      }
      case 'list': {
        const { values } = parse(rest, {}, 0);
        await withStore(values.config ?? defaultConfig(io.env), io, async ({ store }) => {
          const users = await store.listUsers();
          if (values.json) io.stdout(json({ users: users.map(publicUser) }));
          else if (users.length === 0) io.stdout('no users\n');
          else io.stdout(table(['USERNAME', 'DISPLAY_NAME', 'SCOPES', 'GROUP', 'CREATED'], users.map((u) => [u.username, u.displayName ?? '-', u.scopes.join(' ') || '-', u.groupId ?? '-', iso(u.createdAt)])));
        });
        return;
      }
      case 'delete': {
        const { values, positionals } = parse(rest, {}, 1);
        const name = positionals[0]!;
        await withStore(values.config ?? defaultConfig(io.env), io, async ({ store, now }) => {
          if (!(await store.deleteUser(name))) throw new CommandError(`no user ${JSON.stringify(clip(name, 64))}`);
          // A deleted user's tokens (user, personal, room notification) stop working too.
          const live = await store.listTokens({ ownerId: name }, now());
          const mine = live.filter((t) => t.ownerType === 'user');
          await store.revoke(mine.map((t) => ({ jti: t.jti, expiresAt: t.expiresAt })), now());
          if (values.json) io.stdout(json({ username: name, deleted: true, revoked_tokens: mine.length }));
          else io.stdout(`deleted user ${name}; revoked ${mine.length} live token(s)\n`);
        });
        return;
      }
      case 'help':
      case '--help':
        io.stdout(USERS_USAGE);
        return;
      case undefined:
        throw new UsageError('missing subcommand');
      default:
        throw new UsageError(`unknown subcommand ${JSON.stringify(clip(sub, 32))}`);
    }
  });
}
