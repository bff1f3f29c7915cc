/**
 * `scopegate keys …` (SPEC §9 "Keys"): the token service's ES256 signing keys in the store.
 *
 *   scopegate keys list [--json]     kid, status (signing | published | expired), created, retired, published until
 *   scopegate keys rotate [--json]   adds a new signing key; the old one stays published until the last
 *                                    token it signed has expired (the longest lifetime + clock tolerance)
 *
 * Replicas (and a running `serve`) pick the new key up within the key ring's refresh interval
 * (5 s). Private keys are never printed. When `token_service.issuer` signs with configured
 * `secrets` or `private_key_file`, the store's keys are not used and `rotate` refuses.
 *
 * @example
 *   scopegate keys rotate --config gw.yaml    # rotated: new signing key <kid>; <old kid> published until …
 */
import { clip } from '../clip.js';
import { createKeyRing, maxTokenLifetimeMs } from '../token-service/keys.js';
import type { KeyRecord } from '../token-service/store.js';
import { CommandError, defaultConfig, iso, json, parse, runCommand, table, UsageError, withStore, type CommandIO, type Context } from './clients.js';

export const KEYS_USAGE = `Usage:
  scopegate keys list [--config FILE] [--json]
  scopegate keys rotate [--config FILE] [--json]
`;

function status(k: KeyRecord, now: number): 'signing' | 'published' | 'expired' {
  if (k.retiredAt === undefined) return 'signing';
  return k.publishUntil === undefined || k.publishUntil > now ? 'published' : 'expired';
}

function publicKey(k: KeyRecord, now: number) {
  return {
    kid: k.kid,
    alg: k.alg,
    status: status(k, now),
    created_at: iso(k.createdAt),
    retired_at: k.retiredAt === undefined ? null : iso(k.retiredAt),
    publish_until: k.publishUntil === undefined ? null : iso(k.publishUntil),
  };
}

/** Refuses when the token service's issuer has a configured key source: store keys would sign nothing. */
function storeKeysInUse({ loaded, ts }: Context): void {
  const iss = loaded.config.tokens.issuers.find((i) => i.name === ts.issuer);
  const source = (['secrets', 'private_key_file'] as const).find((k) => iss?.[k] !== undefined);
  if (source) throw new CommandError(`issuer ${ts.issuer} signs with its configured ${source}; the store's keys are not used, so there is nothing to rotate here`);
}

export async function runKeys(argv: string[], io: CommandIO): Promise<number> {
  const [sub, ...rest] = argv;
  return runCommand(`keys ${sub ?? ''}`.trim(), KEYS_USAGE, io, async () => {
    switch (sub) {
      case 'list': {
        const { values } = parse(rest, {}, 0);
        await withStore(values.config ?? defaultConfig(io.env), io, async ({ store, now }) => {
          const t = now();
          const keys = await store.listKeys();
          if (values.json) io.stdout(json({ keys: keys.map((k) => publicKey(k, t)) }));
          else if (keys.length === 0) io.stdout('no keys (the first one is generated when the token service starts, or by `keys rotate`)\n');
          else {
            io.stdout(
              table(
                ['KID', 'ALG', 'STATUS', 'CREATED', 'RETIRED', 'PUBLISHED_UNTIL'],
                keys.map((k) => {
                  const p = publicKey(k, t);
                  return [p.kid, p.alg, p.status, p.created_at, p.retired_at ?? '-', p.publish_until ?? '-'];
                }),
              ),
            );
          }
        });
        return;
      }
      case 'rotate': {
        const { values } = parse(rest, {}, 0);
        await withStore(values.config ?? defaultConfig(io.env), io, async (ctx) => {
          storeKeysInUse(ctx);
          const maxLifetimeMs = maxTokenLifetimeMs(ctx.ts, ctx.loaded.config.tokens.clock_tolerance_s);
          const ring = createKeyRing(ctx.store, { clock: ctx.now, maxLifetimeMs });
          const before = (await ctx.store.listKeys()).filter((k) => k.retiredAt === undefined);
          const kid = await ring.rotate();
          const retired = before.map((k) => ({ kid: k.kid, publish_until: iso(ctx.now() + maxLifetimeMs) }));
          if (values.json) io.stdout(json({ kid, retired }));
          else {
            io.stdout(`new signing key ${kid}\n`);
            for (const r of retired) io.stdout(`retired ${r.kid}; published until ${r.publish_until}\n`);
          }
        });
        return;
      }
      case 'help':
      case '--help':
        io.stdout(KEYS_USAGE);
        return;
      case undefined:
        throw new UsageError('missing subcommand');
      default:
        throw new UsageError(`unknown subcommand ${JSON.stringify(clip(sub, 32))}`);
    }
  });
}
