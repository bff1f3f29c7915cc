/**
 * Real PostgreSQL for tests: where it is, whether it answers, a `describePostgres` that runs a
 * suite only when it does, and a private schema per test file so parallel files never collide.
 * Locally an unreachable server skips the suite with a visible warning; under CI (`CI` set) it
 * fails instead, so a missing service can never turn the suite silently green.
 *
 * @example
 *   import { describePostgres, createTestSchema } from '../helpers/postgres.js';
 *   describePostgres('postgres store', () => {
 *     let schema: TestSchema;
 *     beforeAll(async () => { schema = await createTestSchema('contract'); });
 *     afterAll(() => schema.drop());
 *     it('…', async () => { const store = await openTokenStore(schema.url); … });
 *   });
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { describe, it } from 'vitest';

/** PG_URL, else the local default (trust auth, database `test`). */
export function postgresUrl(): string {
  return process.env.PG_URL || 'postgres://postgres@127.0.0.1:5432/test';
}

/** Resolves true when the server answers `SELECT 1` within `timeoutMs`; never rejects. */
export async function postgresAvailable(url = postgresUrl(), timeoutMs = 2_000): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

/** Decided once per test file, before any suite is registered. */
const available = await postgresAvailable();

export function pgIsAvailable(): boolean {
  return available;
}

/** `describe` when PostgreSQL answers; otherwise a failing test under CI, a visible skip elsewhere. */
export function describePostgres(name: string, fn: () => void): void {
  if (available) {
    describe(name, fn);
    return;
  }
  if (process.env.CI) {
    describe(name, () => {
      it('needs a reachable PostgreSQL (CI is set, so this fails instead of skipping)', () => {
        throw new Error(`PostgreSQL is not reachable at ${postgresUrl()}; start it or set PG_URL`);
      });
    });
    return;
  }
  console.warn(`\n[describePostgres] SKIPPED "${name}": PostgreSQL is not reachable at ${postgresUrl()} (set PG_URL or start postgres)\n`);
  describe.skip(name, fn);
}

export interface TestSchema {
  /** e.g. sg_contract_1a2b3c4d */
  name: string;
  /** postgresUrl() with `options=-c search_path=<name>`: every connection made from it lives in the schema. */
  url: string;
  /** A plain client for assertions, connected to the same schema. Call `.end()` when done. */
  client(): Promise<pg.Client>;
  /** DROP SCHEMA … CASCADE. */
  drop(): Promise<void>;
}

/** Creates `sg_<label>_<random>` and a URL whose connections use it. */
export async function createTestSchema(label = 'test'): Promise<TestSchema> {
  const name = `sg_${label.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: postgresUrl() });
  admin.on('error', () => {});
  await admin.connect();
  try {
    await admin.query(`CREATE SCHEMA ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(postgresUrl());
  u.searchParams.set('options', `-c search_path=${name}`);
  const url = u.toString();
  return {
    name,
    url,
    async client() {
      const c = new pg.Client({ connectionString: url });
      c.on('error', () => {});
      await c.connect();
      return c;
    },
    async drop() {
      const c = new pg.Client({ connectionString: postgresUrl() });
      c.on('error', () => {});
      await c.connect();
      try {
        await c.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
      } finally {
        await c.end();
      }
    },
  };
}
