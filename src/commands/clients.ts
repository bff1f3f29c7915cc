/**
 * `scopegate clients …` (SPEC §9 "Clients"), plus the plumbing every token-service command shares
 * (users.ts, keys.ts and tokens.ts import it from here):
 *
 *   scopegate clients create --config F --name N --client-type group|room --scopes "a b"
 *                            [--group G] [--group-name N] [--room R] [--room-name N] [--json]
 *   scopegate clients list [--config F] [--json]
 *   scopegate clients rotate-secret [--config F] [--json] ID
 *   scopegate clients delete [--config F] ID
 *
 * `create` and `rotate-secret` print the secret ONCE (`client_secret: …`, or one JSON object with
 * --json); the store keeps only its scrypt hash. `list` never prints a secret or a hash. `delete`
 * revokes the client's live tokens (on every replica, within revocation.max_lag_ms).
 *
 * The commands load the config (loadConfigFile), open `token_service.store` (relative to the
 * config file's directory) with `attach: true` — so they work while `serve` holds an embedded
 * store, through its control socket — and close it before returning. Exit codes: 0 ok, 1 error
 * (one clear line on stderr), 2 usage.
 *
 * @example
 *   const code = await runClients(['create', '--config', 'gw.yaml', '--name', 'ci', '--client-type', 'group',
 *     '--scopes', 'send_notification view_group'], { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s), env: process.env });
 *   // stdout: "client_id: cl_…\nclient_secret: …\n"
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { clip } from '../clip.js';
import { loadConfigFile, type LoadedConfig } from '../config/load.js';
import type { TokenServiceConfig } from '../config/schema.js';
import { ConfigError, isGatewayError } from '../errors.js';
import { hashSecret, newId, newSecret } from '../token-service/secrets.js';
import type { ClientRecord, TokenStore } from '../token-service/store.js';
import { describeStoreLocation, openTokenStore } from '../token-service/store/open.js';

export interface CommandIO {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env: Readonly<Record<string, string | undefined>>;
  /** The whole of standard input (for --password-stdin). Default: process.stdin. */
  stdin?: () => Promise<string>;
  /** Epoch ms. Default Date.now. */
  clock?: () => number;
}

/** A usage mistake: exit 2 with the command's usage. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A failure the operator must fix: exit 1 with this message. */
export class CommandError extends Error {
  override name = 'CommandError';
}

export interface Context {
  loaded: LoadedConfig;
  ts: TokenServiceConfig;
  store: TokenStore;
  now: () => number;
}

const COMMON = { config: { type: 'string', short: 'c' }, json: { type: 'boolean', default: false } } as const;

/** parseArgs with the shared --config/--json; unknown options and stray positionals are usage errors. */
export function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: O, positionals: number) {
  let out;
  try {
    out = parseArgs({ args, options: { ...COMMON, ...options }, strict: true, allowPositionals: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (out.positionals.length !== positionals) {
    throw new UsageError(positionals === 0 ? `unexpected argument ${JSON.stringify(out.positionals[0])}` : `expected ${positionals} argument(s), got ${out.positionals.length}`);
  }
  return out;
}

export function defaultConfig(env: CommandIO['env']): string {
  return env.SCOPEGATE_CONFIG || 'config/gateway.yaml';
}

/** Loads the config, opens its token store (CLI mode), runs `fn`, always closes. */
export async function withStore<T>(configFile: string, io: CommandIO, fn: (ctx: Context) => Promise<T>): Promise<T> {
  const loaded = await loadConfigFile(configFile, io.env);
  const ts = loaded.config.token_service;
  if (!ts) throw new CommandError(`${configFile} has no token_service section, so there is no token store to manage`);
  let store: TokenStore;
  try {
    store = await openTokenStore(ts.store, { baseDir: loaded.baseDir, attach: true });
  } catch (e) {
    const why = isGatewayError(e) ? (e.detail.why ?? e.message) : (e as Error).message;
    throw new CommandError(`cannot open the token store ${describeStoreLocation(ts.store)}: ${why}`);
  }
  try {
    return await fn({ loaded, ts, store, now: io.clock ?? Date.now });
  } finally {
    await store.close().catch(() => {});
  }
}

/** Runs a command body with the exit-code convention: 0 ok, 1 error, 2 usage. */
export async function runCommand(name: string, usage: string, io: CommandIO, body: () => Promise<void>): Promise<number> {
  try {
    await body();
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr(`scopegate ${name}: ${e.message}\n\n${usage}`);
      return 2;
    }
    if (e instanceof ConfigError) {
      io.stderr(`${e.message}\n`);
      return 1;
    }
    const msg = isGatewayError(e) ? (e.detail.why ?? e.message) : e instanceof CommandError ? e.message : `unexpected error: ${(e as Error)?.message ?? String(e)}`;
    io.stderr(`scopegate ${name}: ${msg}\n`);
    return 1;
  }
}

// ── validation of operator input (these values end up in token claims: SPEC §3) ──

/** RFC 6749 §3.3 scope-token characters. */
const SCOPE = /^[\x21\x23-\x5B\x5D-\x7E]+$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;

export function parseScopes(text: string | undefined, opt: { required: boolean }): string[] {
  const list = (text ?? '').split(/\s+/).filter(Boolean);
  if (opt.required && list.length === 0) throw new UsageError('--scopes needs at least one scope, e.g. --scopes "send_notification view_room"');
  for (const s of list) if (!SCOPE.test(s)) throw new UsageError(`invalid scope ${JSON.stringify(clip(s, 64))}: RFC 6749 scope characters only (no quotes or backslashes)`);
  return [...new Set(list)];
}

/** A value that goes into a claim: a non-empty string without control characters, at most 1024 bytes. */
export function claimValue(flag: string, v: string | undefined): string | undefined {
  if (v === undefined) return undefined;
  if (v === '' || CONTROL.test(v) || Buffer.byteLength(v) > 1024) {
    throw new UsageError(`--${flag} must be non-empty, at most 1024 bytes, without control characters`);
  }
  return v;
}

export function required(flag: string, v: string | undefined): string {
  if (v === undefined || v === '') throw new UsageError(`--${flag} is required`);
  return v;
}

export function iso(ms: number | undefined): string {
  return ms === undefined ? '-' : new Date(ms).toISOString();
}

/** Left-aligned columns, for human output. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

export function json(v: unknown): string {
  return `${JSON.stringify(v, null, 2)}\n`;
}

// ── clients ──

export const CLIENTS_USAGE = `Usage:
  scopegate clients create --config FILE --name NAME --client-type group|room --scopes "a b"
                           [--group ID] [--group-name NAME] [--room ID] [--room-name NAME] [--json]
  scopegate clients list [--config FILE] [--json]
  scopegate clients rotate-secret [--config FILE] [--json] CLIENT_ID
  scopegate clients delete [--config FILE] CLIENT_ID

The secret is printed once and stored only as a scrypt hash. FILE defaults to $SCOPEGATE_CONFIG,
else config/gateway.yaml. Works while \`scopegate serve\` runs on the same store.
`;

/** What `list` and `--json` show of a client: everything but the secret hash. */
function publicClient(c: ClientRecord) {
  return {
    client_id: c.id,
    name: c.name,
    client_type: c.clientType,
    scopes: c.scopes,
    ...(c.groupId !== undefined ? { group_id: c.groupId } : {}),
    ...(c.groupName !== undefined ? { group_name: c.groupName } : {}),
    ...(c.roomId !== undefined ? { room_id: c.roomId } : {}),
    ...(c.roomName !== undefined ? { room_name: c.roomName } : {}),
    ...(c.ownerUser !== undefined ? { owner_user: c.ownerUser } : {}),
    created_at: new Date(c.createdAt).toISOString(),
  };
}

export async function runClients(argv: string[], io: CommandIO): Promise<number> {
  const [sub, ...rest] = argv;
  return runCommand(`clients ${sub ?? ''}`.trim(), CLIENTS_USAGE, io, async () => {
    switch (sub) {
      case 'create': {
        const { values } = parse(
          rest,
          {
            name: { type: 'string' },
            'client-type': { type: 'string' },
            scopes: { type: 'string' },
            group: { type: 'string' },
            'group-name': { type: 'string' },
            room: { type: 'string' },
            'room-name': { type: 'string' },
          },
          0,
        );
        const name = claimValue('name', required('name', values.name))!;
        const clientType = required('client-type', values['client-type']);
        if (clientType !== 'group' && clientType !== 'room') throw new UsageError(`--client-type must be group or room, got ${JSON.stringify(clip(clientType, 32))}`);
        const scopes = parseScopes(values.scopes, { required: true });
        const roomId = claimValue('room', values.room);
        const roomName = claimValue('room-name', values['room-name']);
        if (clientType === 'room' && roomId === undefined) throw new UsageError('a room client needs --room (the room id it is bound to)');
        if (clientType === 'group' && (roomId !== undefined || roomName !== undefined)) {
          throw new UsageError('--room/--room-name bind a client to one room: use --client-type room');
        }
        await withStore(values.config ?? defaultConfig(io.env), io, async ({ store, now }) => {
          const secret = newSecret();
          const rec: ClientRecord = {
            id: newId('cl'),
            name,
            secretHash: await hashSecret(secret),
            clientType,
            scopes,
            groupId: claimValue('group', values.group),
            groupName: claimValue('group-name', values['group-name']),
            roomId,
            roomName,
            createdAt: now(),
          };
          await store.createClient(rec);
          if (values.json) io.stdout(json({ ...publicClient(rec), client_secret: secret }));
          else io.stdout(`client_id: ${rec.id}\nclient_secret: ${secret}\n`);
        });
        return;
      }
      case 'list': {
        const { values } = parse(rest, {}, 0);
        await withStore(values.config ?? defaultConfig(io.env), io, async ({ store }) => {
          const clients = await store.listClients();
          if (values.json) {
            io.stdout(json({ clients: clients.map(publicClient) }));
            return;
          }
          if (clients.length === 0) {
            io.stdout('no clients\n');
            return;
          }
          io.stdout(
            table(
              ['CLIENT_ID', 'TYPE', 'NAME', 'SCOPES', 'GROUP', 'ROOM', 'CREATED'],
              clients.map((c) => [c.id, c.clientType, c.name, c.scopes.join(' '), c.groupId ?? '-', c.roomId ?? '-', iso(c.createdAt)]),
            ),
          );
        });
        return;
      }
      case 'rotate-secret': {
        const { values, positionals } = parse(rest, {}, 1);
        const id = positionals[0]!;
        await withStore(values.config ?? defaultConfig(io.env), io, async ({ store }) => {
          const secret = newSecret();
          if (!(await store.setClientSecret(id, await hashSecret(secret)))) throw new CommandError(`no client ${JSON.stringify(clip(id, 64))}`);
          if (values.json) io.stdout(json({ client_id: id, client_secret: secret }));
          else io.stdout(`client_id: ${id}\nclient_secret: ${secret}\n`);
        });
        return;
      }
      case 'delete': {
        const { values, positionals } = parse(rest, {}, 1);
        const id = positionals[0]!;
        await withStore(values.config ?? defaultConfig(io.env), io, async ({ store, now }) => {
          const revoked = await store.deleteClient(id, now());
          if (revoked === undefined) throw new CommandError(`no client ${JSON.stringify(clip(id, 64))}`);
          if (values.json) io.stdout(json({ client_id: id, deleted: true, revoked_tokens: revoked.length }));
          else io.stdout(`deleted client ${id}; revoked ${revoked.length} live token(s)\n`);
        });
        return;
      }
      case 'help':
      case '--help':
        io.stdout(CLIENTS_USAGE);
        return;
      case undefined:
        throw new UsageError('missing subcommand');
      default:
        throw new UsageError(`unknown subcommand ${JSON.stringify(clip(sub, 32))}`);
    }
  });
}
