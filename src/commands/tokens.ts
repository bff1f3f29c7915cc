/**
 * `scopegate tokens …` (SPEC §9 "Sessions and revocation"): the live tokens the service issued.
 *
 *   scopegate tokens list [--owner O] [--kind access|personal|room_notification] [--client ID] [--json]
 *   scopegate tokens revoke JTI
 *
 * Lists jtis and metadata, never a token. `revoke` adds the jti to the denylist until the token's
 * own expiry; every replica sharing the store refuses it within revocation.max_lag_ms.
 *
 * @example
 *   scopegate tokens list --config gw.yaml --owner alice
 *   scopegate tokens revoke --config gw.yaml 9f2c…
 */
import { clip } from '../clip.js';
import type { TokenKind, TokenRecord } from '../token-service/store.js';
import { CommandError, defaultConfig, iso, json, parse, runCommand, table, UsageError, withStore, type CommandIO } from './clients.js';

export const TOKENS_USAGE = `Usage:
  scopegate tokens list [--config FILE] [--owner OWNER] [--kind access|personal|room_notification]
                        [--client CLIENT_ID] [--json]
  scopegate tokens revoke [--config FILE] JTI
`;

const KINDS: readonly TokenKind[] = ['access', 'personal', 'room_notification'];

function publicToken(t: TokenRecord) {
  return {
    jti: t.jti,
    kind: t.kind,
    owner_type: t.ownerType,
    owner: t.ownerId,
    subject: t.subject,
    scopes: t.scopes,
    ...(t.clientId !== undefined ? { client_id: t.clientId } : {}),
    ...(t.roomId !== undefined ? { room_id: t.roomId } : {}),
    ...(t.name !== undefined ? { name: t.name } : {}),
    created_at: iso(t.createdAt),
    expires_at: iso(t.expiresAt),
    last_used_at: t.lastUsedAt === undefined ? null : iso(t.lastUsedAt),
  };
}

export async function runTokens(argv: string[], io: CommandIO): Promise<number> {
  const [sub, ...rest] = argv;
  return runCommand(`tokens ${sub ?? ''}`.trim(), TOKENS_USAGE, io, async () => {
    switch (sub) {
      case 'list': {
        const { values } = parse(rest, { owner: { type: 'string' }, kind: { type: 'string' }, client: { type: 'string' } }, 0);
        if (values.kind !== undefined && !KINDS.includes(values.kind as TokenKind)) throw new UsageError(`--kind must be one of ${KINDS.join(', ')}`);
        await withStore(values.config ?? defaultConfig(io.env), io, async ({ store, now }) => {
          const list = await store.listTokens(
            {
              ...(values.owner !== undefined ? { ownerId: values.owner } : {}),
              ...(values.kind !== undefined ? { kind: values.kind as TokenKind } : {}),
              ...(values.client !== undefined ? { clientId: values.client } : {}),
            },
            now(),
          );
          if (values.json) io.stdout(json({ tokens: list.map(publicToken) }));
          else if (list.length === 0) io.stdout('no live tokens\n');
          else {
            io.stdout(
              table(
                ['JTI', 'KIND', 'OWNER', 'SCOPES', 'CREATED', 'EXPIRES', 'LAST_USED', 'NAME'],
                list.map((t) => [t.jti, t.kind, `${t.ownerType}:${t.ownerId}`, t.scopes.join(' '), iso(t.createdAt), iso(t.expiresAt), iso(t.lastUsedAt), t.name ?? '-']),
              ),
            );
          }
        });
        return;
      }
      case 'revoke': {
        const { values, positionals } = parse(rest, {}, 1);
        const jti = positionals[0]!;
        await withStore(values.config ?? defaultConfig(io.env), io, async ({ store, now }) => {
          const t = await store.getToken(jti);
          if (!t) throw new CommandError(`no token with jti ${JSON.stringify(clip(jti, 64))} in the store (tokens minted outside the token service are denied with an issuer's revoked_jti)`);
          if (t.revokedAt !== undefined) {
            io.stdout(`token ${jti} was already revoked at ${iso(t.revokedAt)}\n`);
            return;
          }
          await store.revoke([{ jti, expiresAt: t.expiresAt }], now());
          if (values.json) io.stdout(json({ jti, revoked: true }));
          else io.stdout(`revoked token ${jti} (denied until it expires at ${iso(t.expiresAt)})\n`);
        });
        return;
      }
      case 'help':
      case '--help':
        io.stdout(TOKENS_USAGE);
        return;
      case undefined:
        throw new UsageError('missing subcommand');
      default:
        throw new UsageError(`unknown subcommand ${JSON.stringify(clip(sub, 32))}`);
    }
  });
}
