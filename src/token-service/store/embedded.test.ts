/**
 * SCOPEGATE_STORE_TEMPLATE: a new embedded store starts as a copy of a template's pgdata; an
 * existing store is never overwritten by it. The suite's global set-up already points the
 * variable at a pristine template (test/global-setup.ts); here a template with a known client in
 * it shows the copy really happens, and a second open of the same directory shows an existing
 * store keeps its own data.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClientRecord } from '../store.js';
import { openEmbeddedStore, STORE_TEMPLATE_ENV } from './embedded.js';

const client = (id: string): ClientRecord => ({ id, name: id, secretHash: 'scrypt$16$1$1$c2FsdA$aGFzaA', clientType: 'group', scopes: ['view_group'], createdAt: 1_700_000_000_000 });

let root: string;
const saved = process.env[STORE_TEMPLATE_ENV];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'sg-embedded-'));
  // The template itself starts from the suite's template when there is one (fast), else initdb.
  const template = await openEmbeddedStore(join(root, 'template'), { control: false });
  await template.createClient(client('from-template'));
  await template.close();
  process.env[STORE_TEMPLATE_ENV] = join(root, 'template');
}, 60_000);

afterAll(async () => {
  if (saved === undefined) delete process.env[STORE_TEMPLATE_ENV];
  else process.env[STORE_TEMPLATE_ENV] = saved;
  await rm(root, { recursive: true, force: true });
});

describe('SCOPEGATE_STORE_TEMPLATE', () => {
  it('seeds a new store with a copy of the template, which stays independent of it', async () => {
    const a = await openEmbeddedStore(join(root, 'a'), { control: false });
    expect((await a.getClient('from-template'))?.name).toBe('from-template');
    await a.createClient(client('only-in-a'));
    await a.close();
    const again = await openEmbeddedStore(join(root, 'template'), { control: false });
    expect(await again.getClient('only-in-a')).toBeUndefined();
    await again.close();
  });

  it('never touches a store that already exists', async () => {
    const dir = join(root, 'b');
    const b = await openEmbeddedStore(dir, { control: false });
    await b.deleteClient('from-template', Date.now());
    await b.createClient(client('only-in-b'));
    await b.close();
    const reopened = await openEmbeddedStore(dir, { control: false });
    expect(await reopened.getClient('from-template')).toBeUndefined();
    expect((await reopened.getClient('only-in-b'))?.name).toBe('only-in-b');
    await reopened.close();
  });
});
