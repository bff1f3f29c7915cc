/**
 * The TokenStore methods, written ONCE over a `Db` (sql.ts) and shared by the embedded (PGlite) and
 * PostgreSQL backends; a backend adds only how it connects, locks, notifies and closes.
 *
 * Every method is one statement or one transaction. Failures become `GatewayError('store_unavailable')`
 * whose `why` names the operation (never a parameter: they may hold hashes) and count
 * `scopegate_store_errors_total{op}` when metrics are given.
 *
 * @example
 *   const methods = sqlStoreMethods(db, {
 *     revoked: async (q, recs) => { for (const r of recs) await q.query('SELECT pg_notify($1, $2)', [chan, JSON.stringify(r)]); },
 *     metrics,
 *   });
 *   const store: TokenStore = { kind: 'postgres', ...methods, ping, close };
 */
import { clip } from '../../clip.js';
import { GatewayError, isGatewayError } from '../../errors.js';
import type {
  ClientRecord,
  KeyRecord,
  RefreshRecord,
  RevocationPage,
  RevocationRecord,
  RotateResult,
  TokenKind,
  TokenRecord,
  TokenStore,
  UserRecord,
} from '../store.js';
import { MAX_REVOCATION_PAGE } from '../store.js';
import type { Db, Queryable } from './sql.js';

/** The slice of Metrics a store uses. */
export interface StoreMetrics {
  storeErrors: { inc(labels: { op: string }): void };
}

export interface SqlStoreHooks {
  /** Called inside the revoking transaction with the entries it newly revoked (postgres: pg_notify). */
  revokedInTx?: (q: Queryable, recs: readonly RevocationRecord[]) => Promise<void>;
  /** Called after that transaction committed (embedded: the in-process watchers). */
  revokedAfterCommit?: (recs: readonly RevocationRecord[]) => void;
  metrics?: StoreMetrics | undefined;
}

export type SqlStoreMethods = Omit<TokenStore, 'kind' | 'watchRevocations' | 'ping' | 'close'>;

type Row = Record<string, unknown>;

const num = (v: unknown): number => Number(v);
const optNum = (v: unknown): number | undefined => (v === null || v === undefined ? undefined : Number(v));
const optStr = (v: unknown): string | undefined => (v === null || v === undefined ? undefined : String(v));
const strs = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : []);
const nul = (v: string | number | undefined): string | number | null => (v === undefined ? null : v);

function toClient(r: Row): ClientRecord {
  return {
    id: String(r.id),
    name: String(r.name),
    secretHash: String(r.secret_hash),
    clientType: r.client_type as ClientRecord['clientType'],
    scopes: strs(r.scopes),
    groupId: optStr(r.group_id),
    groupName: optStr(r.group_name),
    roomId: optStr(r.room_id),
    roomName: optStr(r.room_name),
    ownerUser: optStr(r.owner_user),
    createdAt: num(r.created_at),
  };
}

function toUser(r: Row): UserRecord {
  return {
    username: String(r.username),
    passwordHash: String(r.password_hash),
    scopes: strs(r.scopes),
    displayName: optStr(r.display_name),
    groupId: optStr(r.group_id),
    createdAt: num(r.created_at),
  };
}

function toKey(r: Row): KeyRecord {
  return {
    kid: String(r.kid),
    alg: 'ES256',
    privateJwk: String(r.private_jwk),
    publicJwk: String(r.public_jwk),
    createdAt: num(r.created_at),
    retiredAt: optNum(r.retired_at),
    publishUntil: optNum(r.publish_until),
  };
}

function toToken(r: Row): TokenRecord {
  return {
    jti: String(r.jti),
    kind: r.kind as TokenKind,
    clientId: optStr(r.client_id),
    ownerType: r.owner_type as TokenRecord['ownerType'],
    ownerId: String(r.owner_id),
    subject: String(r.subject),
    scopes: strs(r.scopes),
    roomId: optStr(r.room_id),
    name: optStr(r.name),
    familyId: optStr(r.family_id),
    createdAt: num(r.created_at),
    expiresAt: num(r.expires_at),
    lastUsedAt: optNum(r.last_used_at),
    revokedAt: optNum(r.revoked_at),
  };
}

function toRefresh(r: Row): RefreshRecord {
  return {
    id: String(r.id),
    secretHash: String(r.secret_hash),
    familyId: String(r.family_id),
    clientId: String(r.client_id),
    subject: String(r.subject),
    ownerType: r.owner_type as RefreshRecord['ownerType'],
    scopes: strs(r.scopes),
    createdAt: num(r.created_at),
    expiresAt: num(r.expires_at),
    replacedBy: optStr(r.replaced_by),
    revokedAt: optNum(r.revoked_at),
  };
}

function toRevocation(r: Row): RevocationRecord {
  return { jti: String(r.jti), expiresAt: num(r.expires_at), revokedAt: num(r.revoked_at) };
}

/** Turns any failure into the one vocabulary; the driver's message is clipped and never carries parameters. */
export function storeError(op: string, err: unknown, metrics?: StoreMetrics): GatewayError {
  if (isGatewayError(err)) return err;
  metrics?.storeErrors.inc({ op });
  const msg = err instanceof Error ? err.message : String(err);
  return new GatewayError('store_unavailable', { store: 'token', why: `token store: ${op} failed: ${clip(msg, 200)}` });
}


function seqArg(n: number, what: string): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new TypeError(`${what} must be a non-negative integer (a revocation seq), got ${n}`);
  return n;
}

function finite(n: number, what: string): number {
  if (!Number.isFinite(n)) throw new TypeError(`${what} must be a finite number of epoch milliseconds, got ${n}`);
  return Math.trunc(n);
}

export function sqlStoreMethods(db: Db, hooks: SqlStoreHooks = {}): SqlStoreMethods {
  const { metrics } = hooks;

  /** Wraps one method: the error vocabulary and the metric. Programmer errors (TypeError) pass unchanged. */
  function op<A extends unknown[], R>(name: string, fn: (...a: A) => Promise<R>): (...a: A) => Promise<R> {
    return async (...a: A) => {
      try {
        return await fn(...a);
      } catch (e) {
        if (e instanceof TypeError) throw e;
        throw storeError(name, e, metrics);
      }
    };
  }

  /** Revokes jtis (denylist + token rows) inside `q`; returns the entries newly added to the denylist. */
  async function revokeIn(q: Queryable, entries: readonly { jti: string; expiresAt: number }[], now: number): Promise<RevocationRecord[]> {
    if (entries.length === 0) return [];
    const jtis = entries.map((e) => e.jti);
    const exps = entries.map((e) => finite(e.expiresAt, 'expiresAt'));
    const { rows } = await q.query(
      `INSERT INTO revocations (jti, expires_at, revoked_at)
         SELECT j, e, $3 FROM unnest($1::text[], $2::bigint[]) AS u(j, e)
       ON CONFLICT (jti) DO NOTHING
       RETURNING jti, expires_at, revoked_at`,
      [jtis, exps, now],
    );
    await q.query(`UPDATE tokens SET revoked_at = $2 WHERE jti = ANY($1::text[]) AND revoked_at IS NULL`, [jtis, now]);
    const recs = rows.map(toRevocation);
    if (recs.length && hooks.revokedInTx) await hooks.revokedInTx(q, recs);
    return recs;
  }

  /** One transaction that revokes; the after-commit hook sees what it revoked. */
  async function revokingTx<T>(fn: (q: Queryable, revoked: RevocationRecord[]) => Promise<T>): Promise<T> {
    const revoked: RevocationRecord[] = [];
    const out = await db.tx((q) => fn(q, revoked));
    if (revoked.length && hooks.revokedAfterCommit) hooks.revokedAfterCommit(revoked);
    return out;
  }

  return {
    // ── clients ──
    createClient: op('createClient', async (c: ClientRecord) => {
      await db.query(
        `INSERT INTO clients (id, name, secret_hash, client_type, scopes, group_id, group_name, room_id, room_name, owner_user, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
        [c.id, c.name, c.secretHash, c.clientType, c.scopes, nul(c.groupId), nul(c.groupName), nul(c.roomId), nul(c.roomName), nul(c.ownerUser), finite(c.createdAt, 'createdAt')],
      );
    }),
    getClient: op('getClient', async (id: string) => {
      const { rows } = await db.query(`SELECT * FROM clients WHERE id = $1`, [id]);
      return rows[0] ? toClient(rows[0]) : undefined;
    }),
    listClients: op('listClients', async () => (await db.query(`SELECT * FROM clients ORDER BY created_at, id`)).rows.map(toClient)),
    setClientSecret: op('setClientSecret', async (id: string, secretHash: string) => {
      const r = await db.query(`UPDATE clients SET secret_hash = $2 WHERE id = $1`, [id, secretHash]);
      return r.rowCount > 0;
    }),
    deleteClient: op('deleteClient', async (id: string, now: number) =>
      revokingTx(async (q, revoked) => {
        const del = await q.query(`DELETE FROM clients WHERE id = $1`, [id]);
        if (del.rowCount === 0) return undefined;
        const live = await q.query<{ jti: string; expires_at: unknown }>(
          `SELECT jti, expires_at FROM tokens WHERE client_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at, jti`,
          [id, now],
        );
        await q.query(`UPDATE refresh_tokens SET revoked_at = $2 WHERE client_id = $1 AND revoked_at IS NULL`, [id, now]);
        const entries = live.rows.map((r) => ({ jti: String(r.jti), expiresAt: num(r.expires_at) }));
        revoked.push(...(await revokeIn(q, entries, now)));
        return entries.map((e) => e.jti);
      }),
    ),

    // ── users ──
    putUser: op('putUser', async (u: UserRecord) => {
      await db.query(
        `INSERT INTO users (username, password_hash, scopes, display_name, group_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (username) DO UPDATE SET password_hash = EXCLUDED.password_hash, scopes = EXCLUDED.scopes,
           display_name = EXCLUDED.display_name, group_id = EXCLUDED.group_id`,
        [u.username, u.passwordHash, u.scopes, nul(u.displayName), nul(u.groupId), finite(u.createdAt, 'createdAt')],
      );
    }),
    getUser: op('getUser', async (username: string) => {
      const { rows } = await db.query(`SELECT * FROM users WHERE username = $1`, [username]);
      return rows[0] ? toUser(rows[0]) : undefined;
    }),
    listUsers: op('listUsers', async () => (await db.query(`SELECT * FROM users ORDER BY username`)).rows.map(toUser)),
    deleteUser: op('deleteUser', async (username: string) => (await db.query(`DELETE FROM users WHERE username = $1`, [username])).rowCount > 0),

    // ── signing keys ──
    listKeys: op('listKeys', async () => (await db.query(`SELECT * FROM signing_keys ORDER BY created_at DESC, kid DESC`)).rows.map(toKey)),
    addKey: op('addKey', async (key: KeyRecord, o: { now: number; maxLifetimeMs: number; onlyIfNone?: boolean }) =>
      db.tx(async (q) => {
        // Serialises concurrent addKey calls (two replicas starting together): the second one then sees the first's key.
        await q.query(`LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE`);
        if (o.onlyIfNone) {
          const { rows } = await q.query(`SELECT 1 FROM signing_keys WHERE retired_at IS NULL LIMIT 1`);
          if (rows.length > 0) return false;
        }
        const now = finite(o.now, 'now');
        await q.query(`UPDATE signing_keys SET retired_at = $1, publish_until = $2 WHERE retired_at IS NULL`, [now, now + finite(o.maxLifetimeMs, 'maxLifetimeMs')]);
        await q.query(
          `INSERT INTO signing_keys (kid, alg, private_jwk, public_jwk, created_at, retired_at, publish_until) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
          [key.kid, key.alg, key.privateJwk, key.publicJwk, finite(key.createdAt, 'createdAt'), nul(key.retiredAt), nul(key.publishUntil)],
        );
        return true;
      }),
    ),

    // ── issued tokens ──
    recordToken: op('recordToken', async (t: TokenRecord) => {
      await db.query(
        `INSERT INTO tokens (jti, kind, client_id, owner_type, owner_id, subject, scopes, room_id, name, family_id, created_at, expires_at, last_used_at, revoked_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
        [
          t.jti, t.kind, nul(t.clientId), t.ownerType, t.ownerId, t.subject, t.scopes, nul(t.roomId), nul(t.name), nul(t.familyId),
          finite(t.createdAt, 'createdAt'), finite(t.expiresAt, 'expiresAt'), nul(t.lastUsedAt), nul(t.revokedAt),
        ],
      );
    }),
    getToken: op('getToken', async (jti: string) => {
      const { rows } = await db.query(`SELECT * FROM tokens WHERE jti = $1`, [jti]);
      return rows[0] ? toToken(rows[0]) : undefined;
    }),
    listTokens: op('listTokens', async (filter: { ownerId?: string; kind?: TokenKind; clientId?: string; roomId?: string }, now: number) => {
      const where = ['revoked_at IS NULL', 'expires_at > $1'];
      const params: unknown[] = [finite(now, 'now')];
      const add = (col: string, v: string | undefined) => {
        if (v === undefined) return;
        params.push(v);
        where.push(`${col} = $${params.length}`);
      };
      add('owner_id', filter.ownerId);
      add('kind', filter.kind);
      add('client_id', filter.clientId);
      add('room_id', filter.roomId);
      const { rows } = await db.query(`SELECT * FROM tokens WHERE ${where.join(' AND ')} ORDER BY created_at, jti`, params);
      return rows.map(toToken);
    }),
    touchToken: op('touchToken', async (jti: string, at: number) => {
      await db.query(`UPDATE tokens SET last_used_at = $2 WHERE jti = $1`, [jti, finite(at, 'at')]);
    }),

    // ── refresh tokens ──
    createRefresh: op('createRefresh', async (r: RefreshRecord) => {
      await db.query(
        `INSERT INTO refresh_tokens (id, secret_hash, family_id, client_id, subject, owner_type, scopes, created_at, expires_at, replaced_by, revoked_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
        [r.id, r.secretHash, r.familyId, r.clientId, r.subject, r.ownerType, r.scopes, finite(r.createdAt, 'createdAt'), finite(r.expiresAt, 'expiresAt'), nul(r.replacedBy), nul(r.revokedAt)],
      );
    }),
    getRefresh: op('getRefresh', async (id: string) => {
      const { rows } = await db.query(`SELECT * FROM refresh_tokens WHERE id = $1`, [id]);
      return rows[0] ? toRefresh(rows[0]) : undefined;
    }),
    rotateRefresh: op('rotateRefresh', async (id: string, next: RefreshRecord, now: number): Promise<RotateResult> =>
      db.tx(async (q) => {
        // The conditional UPDATE is the decision: under concurrency PostgreSQL re-checks the WHERE
        // after the first rotation commits, so exactly one caller gets the row back.
        const won = await q.query(
          `UPDATE refresh_tokens SET replaced_by = $2
            WHERE id = $1 AND replaced_by IS NULL AND revoked_at IS NULL AND expires_at > $3
           RETURNING *`,
          [id, next.id, finite(now, 'now')],
        );
        if (won.rows[0]) {
          const previous = toRefresh(won.rows[0]);
          if (next.familyId !== previous.familyId) throw new TypeError('rotateRefresh: next.familyId must be the family of the token it replaces');
          await q.query(
            `INSERT INTO refresh_tokens (id, secret_hash, family_id, client_id, subject, owner_type, scopes, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
            [next.id, next.secretHash, next.familyId, next.clientId, next.subject, next.ownerType, next.scopes, finite(next.createdAt, 'createdAt'), finite(next.expiresAt, 'expiresAt')],
          );
          return { ok: true, previous: { ...previous, replacedBy: undefined } };
        }
        const { rows } = await q.query(`SELECT * FROM refresh_tokens WHERE id = $1`, [id]);
        if (!rows[0]) return { ok: false, reason: 'unknown' };
        const cur = toRefresh(rows[0]);
        if (cur.revokedAt !== undefined) return { ok: false, reason: 'revoked' };
        if (cur.replacedBy !== undefined) return { ok: false, reason: 'replayed', familyId: cur.familyId, previous: cur };
        return { ok: false, reason: 'expired' };
      }),
    ),
    revokeFamily: op('revokeFamily', async (familyId: string, now: number) =>
      revokingTx(async (q, revoked) => {
        await q.query(`UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL`, [familyId, now]);
        const { rows } = await q.query<{ jti: string; expires_at: unknown }>(
          `SELECT jti, expires_at FROM tokens WHERE family_id = $1 AND revoked_at IS NULL AND expires_at > $2`,
          [familyId, now],
        );
        const recs = await revokeIn(q, rows.map((r) => ({ jti: String(r.jti), expiresAt: num(r.expires_at) })), now);
        revoked.push(...recs);
        return recs;
      }),
    ),

    // ── revocation ──
    revoke: op('revoke', async (entries: readonly { jti: string; expiresAt: number }[], now: number) => {
      if (entries.length === 0) return;
      await revokingTx(async (q, revoked) => {
        revoked.push(...(await revokeIn(q, entries, finite(now, 'now'))));
      });
    }),
    revokedSince: op('revokedSince', async (sinceMs: number, now: number) => {
      const { rows } = await db.query(
        `SELECT jti, expires_at, revoked_at FROM revocations WHERE revoked_at >= $1 AND expires_at > $2 ORDER BY revoked_at, jti`,
        [finite(sinceMs, 'sinceMs'), finite(now, 'now')],
      );
      return rows.map(toRevocation);
    }),

    revocationsAfter: op(
      'revocationsAfter',
      async (afterSeq: number, now: number, opts?: { limit?: number | undefined; throughSeq?: number | undefined; minRevokedAt?: number | undefined } | null): Promise<RevocationPage> => {
        const o = opts ?? {}; // null: an omitted argument through the control socket's JSON
        const limit = o.limit ?? 1000;
        if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_REVOCATION_PAGE) {
          throw new TypeError(`revocationsAfter: limit must be an integer from 1 to ${MAX_REVOCATION_PAGE}, got ${limit}`);
        }
        const params: unknown[] = [seqArg(afterSeq, 'revocationsAfter: afterSeq'), finite(now, 'now'), limit];
        const where = ['seq > $1', 'expires_at > $2'];
        if (o.throughSeq !== undefined) {
          params.push(seqArg(o.throughSeq, 'revocationsAfter: throughSeq'));
          where.push(`seq <= $${params.length}`);
        }
        if (o.minRevokedAt !== undefined) {
          params.push(finite(o.minRevokedAt, 'minRevokedAt'));
          where.push(`revoked_at >= $${params.length}`);
        }
        // ORDER BY seq + LIMIT walks the unique seq index from afterSeq: the cost is the rows returned.
        const { rows } = await db.query(
          `SELECT seq, jti, expires_at, revoked_at FROM revocations WHERE ${where.join(' AND ')} ORDER BY seq LIMIT $3`,
          params,
        );
        const last = rows[rows.length - 1];
        return { records: rows.map(toRevocation), cursor: last ? num(last.seq) : afterSeq, done: rows.length < limit };
      },
    ),

    purgeExpired: op('purgeExpired', async (now: number, batch = 1000) => {
      if (!Number.isInteger(batch) || batch < 1) throw new TypeError(`purgeExpired: batch must be a positive integer, got ${batch}`);
      const t = finite(now, 'now');
      // Each statement deletes at most `batch` rows, so no single transaction holds many locks.
      const tables: Array<[table: string, key: string, cond: string]> = [
        ['tokens', 'jti', 'expires_at <= $1'],
        ['refresh_tokens', 'id', 'expires_at <= $1'],
        ['revocations', 'jti', 'expires_at <= $1'],
        ['signing_keys', 'kid', 'retired_at IS NOT NULL AND publish_until <= $1'],
      ];
      let total = 0;
      for (const [table, key, cond] of tables) {
        for (;;) {
          const r = await db.query(`DELETE FROM ${table} WHERE ${key} IN (SELECT ${key} FROM ${table} WHERE ${cond} LIMIT $2)`, [t, batch]);
          total += r.rowCount;
          if (r.rowCount < batch) break;
        }
      }
      return total;
    }),
  };
}
