/**
 * Runs once before the whole suite: makes a pristine embedded token store and points
 * SCOPEGATE_STORE_TEMPLATE at it, so every new store the tests open — in-process, or in a gateway
 * process they spawn (which inherits the environment) — starts as a copy instead of running
 * PGlite's initdb (7–25 s each on this machine; ~1 s for the copy). The store code under test is
 * the same; only the new directory's first contents differ (src/token-service/store/embedded.ts).
 * SCOPEGATE_STORE_TEMPLATE set by the caller (or to '' to switch this off) is left alone.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openEmbeddedStore, STORE_TEMPLATE_ENV } from '../src/token-service/store/embedded.js';

export default async function setup(): Promise<(() => Promise<void>) | undefined> {
  if (process.env[STORE_TEMPLATE_ENV] !== undefined) return undefined;
  const dir = await mkdtemp(join(tmpdir(), 'sg-store-template-'));
  const store = await openEmbeddedStore(dir, { control: false });
  await store.close();
  process.env[STORE_TEMPLATE_ENV] = dir;
  return async () => {
    await rm(dir, { recursive: true, force: true });
  };
}
