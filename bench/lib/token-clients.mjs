// Clients for bench/run.mjs's token-issue rows, written into the embedded token store before the
// gateway opens it, through the built store API (dist/), as `scopegate clients create` writes them:
//
//   - one "hot" client: the token-issue-hot row asks for tokens with it in a loop, so after its
//     first request the hot-client cache answers (one scrypt per client per 60 s);
//   - `cold` clients sharing one secret (one scrypt hash computed, stored under every id): the
//     token-issue-cold row walks them in turn, one client per request. They are more than the
//     hot-client cache holds (1000, least recently used dropped first), so walking them round
//     and round never finds one cached: every request pays the full scrypt (N=2^15, r=8, p=1).
//
// Returns { hot: { id, secret }, cold: { ids, secret } } and writes nothing else.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** The hot-client cache's size (src/token-service/client-auth.ts `cacheMaxEntries` default). */
export const HOT_CACHE_ENTRIES = 1000;

export async function seedTokenClients({ root, storeDir, cold }) {
  if (!Number.isInteger(cold) || cold <= HOT_CACHE_ENTRIES) {
    throw new Error(`TOKEN_CLIENTS must be an integer above ${HOT_CACHE_ENTRIES} (the hot-client cache's size), got ${cold}`);
  }
  const mod = (p) => import(pathToFileURL(join(root, 'dist', ...p.split('/'))).href);
  const { openEmbeddedStore } = await mod('token-service/store/embedded.js');
  const { hashSecret, newId, newSecret } = await mod('token-service/secrets.js');
  const store = await openEmbeddedStore(storeDir, { control: false });
  try {
    const base = { clientType: 'group', scopes: ['send_notification'], createdAt: Date.now() };
    const hotSecret = newSecret();
    const hot = { id: newId('cl'), secret: hotSecret };
    await store.createClient({ ...base, id: hot.id, name: 'bench-hot', secretHash: await hashSecret(hotSecret) });
    const coldSecret = newSecret();
    const coldHash = await hashSecret(coldSecret);
    const ids = [];
    for (let i = 0; i < cold; i++) {
      const id = newId('cl');
      ids.push(id);
      await store.createClient({ ...base, id, name: `bench-cold-${i}`, secretHash: coldHash });
    }
    return { hot, cold: { ids, secret: coldSecret } };
  } finally {
    await store.close();
  }
}
