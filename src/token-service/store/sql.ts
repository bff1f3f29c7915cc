/**
 * The token store's schema and migrations, ONE SQL dialect for both backends: the embedded store
 * is PGlite (PostgreSQL compiled to WASM) and the server backend is PostgreSQL, so the same
 * statements run on both and the contract test proves it.
 *
 * Migrations are numbered, applied in order at open inside one transaction that first takes a
 * transaction-scoped advisory lock (pg_advisory_xact_lock), so two replicas starting together on
 * one database never race; each applied version is a row of `schema_version`, so re-running is a
 * no-op. Never edit a released migration: append a new one.
 *
 * Times are epoch milliseconds in BIGINT columns; scope lists are TEXT[] (order kept: HipChat
 * prints a client's scopes in the order they were given).
 *
 * @example
 *   const applied = await migrate(db);   // [1, 2] on a fresh store, [] afterwards
 *   SCHEMA_VERSION;                       // the newest version this build knows
 */

/** What both backends give the query layer: parameterised queries and a transaction. */
export interface Queryable {
  query<T = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<{ rows: T[]; rowCount: number }>;
}

export interface Db extends Queryable {
  /** Runs `fn` in one transaction (BEGIN … COMMIT; ROLLBACK when it throws). */
  tx<T>(fn: (q: Queryable) => Promise<T>): Promise<T>;
}

/** Each entry is one migration; its index + 1 is its version. */
export const MIGRATIONS: readonly string[] = [
  // 1: the first schema.
  `
  CREATE TABLE clients (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    client_type TEXT NOT NULL CHECK (client_type IN ('group', 'room', 'user')),
    scopes      TEXT[] NOT NULL,
    group_id    TEXT,
    group_name  TEXT,
    room_id     TEXT,
    room_name   TEXT,
    owner_user  TEXT,
    created_at  BIGINT NOT NULL
  );
  CREATE INDEX clients_owner_user ON clients (owner_user);

  CREATE TABLE users (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    scopes        TEXT[] NOT NULL,
    display_name  TEXT,
    group_id      TEXT,
    created_at    BIGINT NOT NULL
  );

  CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    alg           TEXT NOT NULL,
    private_jwk   TEXT NOT NULL,
    public_jwk    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    retired_at    BIGINT,
    publish_until BIGINT
  );

  CREATE TABLE tokens (
    jti          TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('access', 'personal', 'room_notification')),
    client_id    TEXT,
    owner_type   TEXT NOT NULL CHECK (owner_type IN ('client', 'user')),
    owner_id     TEXT NOT NULL,
    subject      TEXT NOT NULL,
    scopes       TEXT[] NOT NULL,
    room_id      TEXT,
    name         TEXT,
    family_id    TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
  );
  CREATE INDEX tokens_owner ON tokens (owner_id);
  CREATE INDEX tokens_client ON tokens (client_id);
  CREATE INDEX tokens_family ON tokens (family_id);
  CREATE INDEX tokens_expires ON tokens (expires_at);

  CREATE TABLE refresh_tokens (
    id          TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    family_id   TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    subject     TEXT NOT NULL,
    owner_type  TEXT NOT NULL CHECK (owner_type IN ('client', 'user')),
    scopes      TEXT[] NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    replaced_by TEXT,
    revoked_at  BIGINT
  );
  CREATE INDEX refresh_family ON refresh_tokens (family_id);
  CREATE INDEX refresh_client ON refresh_tokens (client_id);
  CREATE INDEX refresh_expires ON refresh_tokens (expires_at);

  CREATE TABLE revocations (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
  );
  CREATE INDEX revocations_revoked ON revocations (revoked_at);
  CREATE INDEX revocations_expires ON revocations (expires_at);
  `,
  // 2: a cursor for the denylist's poll (token-service/revocation.ts): each revocation gets the
  // next number of a sequence, so a poll reads what is new since its last read (`seq > cursor`)
  // instead of re-reading a time window. Existing rows are numbered when the column is added.
  `
  ALTER TABLE revocations ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY;
  CREATE UNIQUE INDEX revocations_seq ON revocations (seq);
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * Applies every migration newer than the store's `schema_version`; returns the versions applied.
 * A store written by a newer build (a version this build does not know) is refused, not downgraded.
 */
export async function migrate(db: Db): Promise<number[]> {
  return db.tx(async (q) => {
    // Scoped to the schema, so two deployments in two schemas of one database do not wait on each other.
    await q.query(`SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':scopegate-token-store'))`);
    await q.query(`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`);
    const { rows } = await q.query<{ v: number | string | null }>(`SELECT max(version) AS v FROM schema_version`);
    const current = Number(rows[0]?.v ?? 0);
    if (current > SCHEMA_VERSION) {
      throw new Error(`the token store has schema version ${current}, newer than this scopegate build knows (${SCHEMA_VERSION}); upgrade scopegate`);
    }
    const applied: number[] = [];
    for (let v = current + 1; v <= SCHEMA_VERSION; v++) {
      for (const stmt of splitStatements(MIGRATIONS[v - 1]!)) await q.query(stmt);
      await q.query(`INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)`, [v, Date.now()]);
      applied.push(v);
    }
    return applied;
  });
}

/** The migrations hold no string literals with `;`, so a plain split is exact. */
function splitStatements(sql: string): string[] {
  return sql
    .split(';')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}
