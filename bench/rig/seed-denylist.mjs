#!/usr/bin/env node
// Denylist fixtures for bench/rig/token-service-denylist.sh (issue 14), through the built store API
// (dist/token-service/store/embedded.js: the embedded store `serve` opens, `revoke` as RFC 7009
// revocation calls it). Two commands:
//
//   node seed-denylist.mjs seed <store dir> <entries>
//     Opens (creating) the embedded store in <store dir> and revokes <entries> jtis
//     `rig-denylist-<i>` (i = 0 … entries-1; no rig token carries them), revoked a day ago with
//     `exp` ten years ahead, in batches of 10,000, then reads back what a starting gateway's denylist loads —
//     `revokedSince(0, now)`, its first full sync — and fails unless that is exactly <entries>.
//     Prints one JSON line { entries, live, seconds }. Run it before the gateway starts; a store
//     already holding the entries is left as it is (revoke is idempotent), so a seeded directory
//     can be copied and reused (token-service-denylist.sh keeps one per entry count).
//
//   node seed-denylist.mjs probe-tokens <entries>
//     Tokens proving a running gateway holds the seeded denylist, minted before it starts (so the
//     probe itself is four curl calls): signed like the rig's (iss bench, aud api, view_room,
//     client_type user; HS256 with $JWT_SECRET_FILE, or RS256 with the rig's rs256.key.pem next to
//     $JWT_PUBLIC_KEY_FILE, as $BENCH_ALG says), whose sub and jti are seeded entry #0,
//     #entries/2 and #entries-1 — each must be refused 401 token_revoked — and #entries, which
//     must pass (200). Prints `<want status> <index> <token>` per line.
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { SignJWT, importPKCS8 } from 'jose';

const HERE = dirname(fileURLToPath(import.meta.url));
const DIST = process.env.SCOPEGATE_DIST || join(dirname(dirname(HERE)), 'dist');
export const JTI_PREFIX = 'rig-denylist-';
const BATCH = 10_000;

function fail(msg, code = 2) {
  process.stderr.write(`seed-denylist: ${msg}\n`);
  process.exit(code);
}

function count(s) {
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < 0 || n > 10_000_000) fail(`entries must be an integer from 0 to 10,000,000, got ${JSON.stringify(s)}`);
  return n;
}

async function seed(dir, n) {
  if (!dir || !isAbsolute(dir)) fail(`the store dir must be an absolute path, got ${JSON.stringify(dir)}`);
  let openEmbeddedStore;
  try {
    ({ openEmbeddedStore } = await import(pathToFileURL(join(DIST, 'token-service', 'store', 'embedded.js')).href));
  } catch (e) {
    fail(`cannot load the built store from ${DIST} (run npm run build): ${e.message}`, 1);
  }
  const t0 = process.hrtime.bigint();
  const store = await openEmbeddedStore(dir, { control: false });
  try {
    const now = Date.now();
    const expiresAt = now + 10 * 365 * 86_400_000;
    // Revoked "a day ago": a denylist that grew over time. Entries revoked within the denylist's
    // sync margin (60 s) are re-read by every poll (every max_lag_ms / 2), and reading 100,000 rows
    // from the embedded store blocks the event loop for seconds; that is a burst, not the steady
    // state issue 14 asks about.
    const revokedAt = now - 86_400_000;
    for (let from = 0; from < n; from += BATCH) {
      const entries = [];
      for (let i = from; i < Math.min(n, from + BATCH); i++) entries.push({ jti: `${JTI_PREFIX}${i}`, expiresAt });
      await store.revoke(entries, revokedAt);
    }
    const live = await store.revokedSince(0, Date.now());
    const ours = live.filter((r) => r.jti.startsWith(JTI_PREFIX)).length;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    process.stdout.write(`${JSON.stringify({ entries: ours, live: live.length, seconds: Number(seconds.toFixed(1)) })}\n`);
    if (ours !== n || live.length !== n) fail(`the store holds ${live.length} live revocations (${ours} of ours), expected exactly ${n}`, 1);
  } finally {
    await store.close();
  }
}

async function signer() {
  const env = process.env;
  const alg = (env.BENCH_ALG || 'hs256').toLowerCase();
  if (alg === 'hs256') {
    if (!env.JWT_SECRET_FILE) fail('JWT_SECRET_FILE is not set', 1);
    const key = new TextEncoder().encode(readFileSync(env.JWT_SECRET_FILE, 'utf8').trim());
    return { sign: (jwt) => jwt.setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(key) };
  }
  if (alg === 'rs256') {
    const pub = env.JWT_PUBLIC_KEY_FILE;
    if (!pub) fail('JWT_PUBLIC_KEY_FILE is not set', 1);
    const pem = readFileSync(join(dirname(pub), 'rs256.key.pem'), 'utf8');
    const key = await importPKCS8(pem, 'RS256');
    const jwks = JSON.parse(readFileSync(env.JWKS_FILE || join(dirname(pub), 'jwks.json'), 'utf8'));
    const kid = jwks.keys?.[0]?.kid;
    return { sign: (jwt) => jwt.setProtectedHeader({ alg: 'RS256', typ: 'JWT', ...(kid ? { kid } : {}) }).sign(key) };
  }
  return fail(`BENCH_ALG must be hs256 or rs256, got ${alg}`, 1);
}

/** One line per probe case: `<want status> <index> <token>`. */
async function probeTokens(n) {
  const { sign } = await signer();
  const now = Math.floor(Date.now() / 1000);
  const mint = (id) =>
    sign(
      new SignJWT({ client_type: 'user', scope: 'view_room' })
        .setIssuer(process.env.JWT_ISSUER || 'bench')
        .setAudience(process.env.JWT_AUDIENCE || 'api')
        // The id as both sub and jti: the script maps claims.token_id to sub (TOKEN_ID_CLAIM=jti also works).
        .setSubject(id)
        .setJti(id)
        .setIssuedAt(now)
        .setExpirationTime(now + 3600),
    );
  const cases = [...new Set(n > 0 ? [0, Math.floor(n / 2), n - 1] : [])].map((i) => ({ i, want: 401 }));
  cases.push({ i: n, want: 200 });
  for (const c of cases) process.stdout.write(`${c.want} ${c.i} ${await mint(`${JTI_PREFIX}${c.i}`)}\n`);
}

const [cmd, a, b] = process.argv.slice(2);
if (cmd === 'seed') await seed(a, count(b));
else if (cmd === 'probe-tokens') await probeTokens(count(a));
else fail('usage: seed-denylist.mjs seed <store dir> <entries> | seed-denylist.mjs probe-tokens <entries>');
