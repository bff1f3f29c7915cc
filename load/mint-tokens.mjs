#!/usr/bin/env node
// @ts-check
/**
 * Mints N tokens for the k6 scripts by calling the CLI contract, `scopegate mint`, once per token,
 * and writes them to a JSON file the scripts load with open():
 *   { "issuer", "kind", "scopes", "ttl", "created_at", "tokens": [{ "jti", "token" }] }
 * Every token gets its own jti, so each has its own rate-limit window (SPEC §4: key = jti).
 *
 * Usage (after `npm run build`):
 *   node load/mint-tokens.mjs --config config/demo.yaml --count 100 --out load/tokens.json
 *   node load/mint-tokens.mjs --config config/demo.yaml --count 1 --out load/tokens-ratelimit.json
 * Options: --config F (default $SCOPEGATE_CONFIG, else config/gateway.yaml), --issuer NAME (local),
 *   --kind addon|user|personal|room-notification (user), --scopes "a b" ("view_group view_room"),
 *   --room R, --sub S (default one subject per token), --ttl 1h|365d|never (1h), --count N (100),
 *   --jti-prefix P (load-<time>), --out F (load/tokens.json), --cli F (dist/cli.js), --concurrency N (4).
 * The file holds live credentials: it is written with mode 0600 and ignored by git (load/tokens*.json).
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';

const run = promisify(execFile);

const { values: opt } = parseArgs({
  options: {
    config: { type: 'string', default: process.env.SCOPEGATE_CONFIG || 'config/gateway.yaml' },
    issuer: { type: 'string', default: 'local' },
    kind: { type: 'string', default: 'user' },
    scopes: { type: 'string', default: 'view_group view_room' },
    room: { type: 'string' },
    sub: { type: 'string' },
    ttl: { type: 'string', default: '1h' },
    count: { type: 'string', default: '100' },
    'jti-prefix': { type: 'string', default: `load-${Date.now().toString(36)}` },
    out: { type: 'string', default: 'load/tokens.json' },
    cli: { type: 'string', default: 'dist/cli.js' },
    concurrency: { type: 'string', default: '4' },
  },
  strict: true,
});

const count = Number(opt.count);
const concurrency = Math.max(1, Number(opt.concurrency));
if (!Number.isInteger(count) || count < 1) throw new TypeError(`--count must be a positive integer, got "${opt.count}"`);
if (!existsSync(opt.cli)) {
  console.error(`${opt.cli} not found: run \`npm run build\` first (or pass --cli).`);
  process.exit(2);
}

/**
 * One `scopegate mint` call; the CLI prints only the token.
 * @param {number} i
 * @returns {Promise<{ jti: string, token: string }>}
 */
async function mintOne(i) {
  const jti = `${opt['jti-prefix']}-${String(i).padStart(5, '0')}`;
  const args = [opt.cli, 'mint', '--config', opt.config, '--issuer', opt.issuer, '--kind', opt.kind, '--ttl', opt.ttl, '--jti', jti];
  args.push('--sub', opt.sub ?? `${opt['jti-prefix']}-sub-${i}`);
  if (opt.scopes) args.push('--scopes', opt.scopes);
  if (opt.room) args.push('--room', opt.room);
  try {
    const { stdout } = await run(process.execPath, args, { env: process.env, maxBuffer: 1 << 20 });
    const token = stdout.trim();
    if (token.split('.').length !== 3) throw new Error('the CLI did not print a compact JWS');
    return { jti, token };
  } catch (err) {
    // The CLI's stderr names the config problem; it never contains a token.
    const e = /** @type {{ stderr?: string, message: string }} */ (err);
    throw new Error(`scopegate mint failed for ${jti}: ${(e.stderr || e.message).trim()}`);
  }
}

/** @type {{ jti: string, token: string }[]} */
const tokens = new Array(count);
let next = 0;
await Promise.all(
  Array.from({ length: Math.min(concurrency, count) }, async () => {
    while (next < count) {
      const i = next++;
      tokens[i] = await mintOne(i);
    }
  }),
);

const doc = {
  issuer: opt.issuer,
  kind: opt.kind,
  scopes: opt.scopes,
  room: opt.room ?? null,
  ttl: opt.ttl,
  created_at: new Date().toISOString(),
  tokens,
};
await writeFile(opt.out, JSON.stringify(doc, null, 2) + '\n', { mode: 0o600 });
console.error(`wrote ${count} ${opt.kind} tokens (issuer ${opt.issuer}, ttl ${opt.ttl}) to ${opt.out}`);
