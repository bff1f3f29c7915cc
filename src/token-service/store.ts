/**
 * The token service's store (SPEC §9 "Store"): ONE interface, two backends, one contract test
 * (test/contract/token-store.test.ts) run against both:
 *   - embedded (default): a directory, zero set-up, one process; survives `kill -9` without losing
 *     a committed write;
 *   - postgres: a real server (`postgres://…`), shared by several replicas.
 *
 * Every method is one atomic operation. Times are epoch milliseconds. Secrets never reach the
 * store in clear: client secrets, user passwords and refresh-token secrets are stored as slow
 * salted hashes (see token-service/secrets.ts), compared by the caller in constant time.
 *
 * Revocation reaches other replicas through the revocation log read by `revocationsAfter` (a
 * numbered cursor: a re-sync reads only what is new) and, where the backend can push,
 * `watchRevocations` (Postgres LISTEN/NOTIFY; in-process for embedded). How the denylist combines
 * them: token-service/revocation.ts.
 */

export type ServiceClientType = 'group' | 'room' | 'user';

export interface ClientRecord {
  /** client_id: random, URL-safe. */
  id: string;
  name: string;
  /** Slow salted hash of the client secret (never the secret). */
  secretHash: string;
  clientType: ServiceClientType;
  /** Scopes the client may request, in the order they were given (HipChat lists them so). */
  scopes: string[];
  groupId?: string | undefined;
  groupName?: string | undefined;
  roomId?: string | undefined;
  roomName?: string | undefined;
  /** The user who owns this client (the Integration page's "Get client id"), if any. */
  ownerUser?: string | undefined;
  createdAt: number;
}

export interface UserRecord {
  username: string;
  /** Slow salted hash of the password. */
  passwordHash: string;
  /** Scopes a user token of this user may carry. */
  scopes: string[];
  /** Display name for HipChat's session `owner.name`. */
  displayName?: string | undefined;
  groupId?: string | undefined;
  createdAt: number;
}

export interface KeyRecord {
  kid: string;
  alg: 'ES256';
  /** Private JWK as JSON text. */
  privateJwk: string;
  /** Public JWK as JSON text (what /.well-known/jwks.json publishes). */
  publicJwk: string;
  createdAt: number;
  /** Set when a newer key took over signing; the key stays published until `publishUntil`. */
  retiredAt?: number | undefined;
  /** Epoch ms after which no token signed by this key can be valid (retiredAt + longest lifetime). */
  publishUntil?: number | undefined;
}

/** What kind of token a `TokenRecord` is. */
export type TokenKind = 'access' | 'personal' | 'room_notification';

/** One issued access, personal or room notification token (by its jti; never the token itself). */
export interface TokenRecord {
  jti: string;
  kind: TokenKind;
  /** The client it was issued to (client_credentials, password, refresh), if any. */
  clientId?: string | undefined;
  /** `client` for client_credentials tokens, `user` for user, personal and room tokens. */
  ownerType: 'client' | 'user';
  /** Owner id: the client id or the username. */
  ownerId: string;
  subject: string;
  scopes: string[];
  roomId?: string | undefined;
  /** A name given by the user (personal and room notification tokens). */
  name?: string | undefined;
  /** Refresh family this access token belongs to (revoked with it on replay). */
  familyId?: string | undefined;
  createdAt: number;
  expiresAt: number;
  lastUsedAt?: number | undefined;
  revokedAt?: number | undefined;
}

/** One refresh token: `<id>.<secret>` on the wire; the store keeps the id and a hash of the secret. */
export interface RefreshRecord {
  id: string;
  secretHash: string;
  /** Every refresh token rotated from one original grant shares a family. */
  familyId: string;
  clientId: string;
  subject: string;
  ownerType: 'client' | 'user';
  scopes: string[];
  createdAt: number;
  expiresAt: number;
  /** Set when it was rotated: presenting it again is a replay. */
  replacedBy?: string | undefined;
  revokedAt?: number | undefined;
}

/** One denylist entry: kept until the token's own expiry, then purged. */
export interface RevocationRecord {
  jti: string;
  expiresAt: number;
  revokedAt: number;
}

/** The most `revocationsAfter` returns in one page (its `limit`'s upper bound, on every backend). */
export const MAX_REVOCATION_PAGE = 10_000;

/** One page of the revocation log (`revocationsAfter`), in `seq` order. */
export interface RevocationPage {
  /** The live entries (`expiresAt > now`) found, oldest `seq` first. */
  records: RevocationRecord[];
  /** The `seq` of the last record returned: pass it as `afterSeq` for the next page. `afterSeq` itself when none. */
  cursor: number;
  /** Fewer than `limit` records matched: the log holds nothing more after `cursor` (as this read saw it). */
  done: boolean;
}

export type RotateResult =
  | { ok: true; previous: RefreshRecord }
  | { ok: false; reason: 'unknown' | 'expired' | 'revoked' }
  /** The refresh token had been replaced already: the caller must revoke `familyId`. */
  | { ok: false; reason: 'replayed'; familyId: string; previous: RefreshRecord };

export interface TokenStore {
  readonly kind: 'embedded' | 'postgres';

  // ── clients ──
  createClient(c: ClientRecord): Promise<void>;
  getClient(id: string): Promise<ClientRecord | undefined>;
  listClients(): Promise<ClientRecord[]>;
  /** false when there is no such client. */
  setClientSecret(id: string, secretHash: string): Promise<boolean>;
  /**
   * Deletes the client and, in the same transaction, revokes its refresh tokens and its live access
   * tokens (denylist + push to watchers). Returns those access tokens' jtis (a caller's own
   * `revoke` of them is an idempotent no-op), or undefined when there is no such client.
   */
  deleteClient(id: string, now: number): Promise<string[] | undefined>;

  // ── users ──
  putUser(u: UserRecord): Promise<void>;
  getUser(username: string): Promise<UserRecord | undefined>;
  listUsers(): Promise<UserRecord[]>;
  deleteUser(username: string): Promise<boolean>;

  // ── signing keys ──
  listKeys(): Promise<KeyRecord[]>;
  /**
   * Adds `key` as the signing key and retires the current one (retiredAt = now, publishUntil = now +
   * maxLifetimeMs). When `onlyIfNone` is set and a current (non-retired) key exists already, nothing
   * is added and false is returned — so replicas starting together on one database generate one
   * key, not several. listKeys() lists newest first.
   */
  addKey(key: KeyRecord, opts: { now: number; maxLifetimeMs: number; onlyIfNone?: boolean }): Promise<boolean>;

  // ── issued tokens ──
  recordToken(t: TokenRecord): Promise<void>;
  getToken(jti: string): Promise<TokenRecord | undefined>;
  /** Live (not revoked, expiresAt > `now`) tokens matching every given field, oldest first. */
  listTokens(filter: { ownerId?: string; kind?: TokenKind; clientId?: string; roomId?: string }, now: number): Promise<TokenRecord[]>;
  /** Sets last_used_at (the caller throttles: at most every 10 minutes per token). */
  touchToken(jti: string, at: number): Promise<void>;

  // ── refresh tokens ──
  createRefresh(r: RefreshRecord): Promise<void>;
  getRefresh(id: string): Promise<RefreshRecord | undefined>;
  /**
   * Atomically replaces refresh token `id` by `next` (same family) if it is live and not replaced.
   * The secret was already checked by the caller against `getRefresh(id).secretHash`.
   */
  rotateRefresh(id: string, next: RefreshRecord, now: number): Promise<RotateResult>;
  /** Revokes every refresh and access token of the family; returns the revoked access-token entries. */
  revokeFamily(familyId: string, now: number): Promise<RevocationRecord[]>;

  // ── revocation ──
  /** Marks the tokens revoked and adds them to the denylist (idempotent: a second revoke changes nothing and notifies nobody). Also takes jtis the store never issued. */
  revoke(entries: readonly { jti: string; expiresAt: number }[], now: number): Promise<void>;
  /** Denylist entries revoked at or after `sinceMs` (by `revokedAt`) and not yet expired at `now`, in one read (tests, tools). */
  revokedSince(sinceMs: number, now: number): Promise<RevocationRecord[]>;
  /**
   * The revocation log after a cursor: each revocation has a `seq`, taken from a sequence when it
   * was written (so in the order the revoking statements ran, NOT the order they committed — a
   * transaction may commit after one that took a higher seq). Returns up to `limit` (default
   * 1000, at most 10 000) live entries with `seq > afterSeq`, oldest seq first; `throughSeq` stops
   * at that seq (inclusive), `minRevokedAt` keeps only entries with `revokedAt >= minRevokedAt`.
   * `revocationsAfter(0, now)` pages through everything. Cost: an index range scan of the rows returned.
   */
  revocationsAfter(
    afterSeq: number,
    now: number,
    opts?: { limit?: number | undefined; throughSeq?: number | undefined; minRevokedAt?: number | undefined },
  ): Promise<RevocationPage>;
  /**
   * Push notifications of new revocations, where the backend has them; returns an unsubscribe.
   * postgres: LISTEN/NOTIFY, complete only while the listening connection is up; `onListening`
   * each time it is LISTENing — the first time and after every reconnect — since NOTIFY has no
   * replay, a consumer re-reads the table then (what committed before it is in the table, what
   * commits after it is pushed). embedded: in-process and complete from the call on: every
   * revocation (the CLI's too, via the control socket) passes through this process; onListening
   * never fires. Absent on the CLI's attached store.
   */
  watchRevocations?(onRevoked: (r: RevocationRecord) => void, onListening: () => void): () => void;

  /** Deletes expired rows (tokens, refresh tokens, denylist entries, retired keys past publishUntil) in batches. */
  purgeExpired(now: number, batch?: number): Promise<number>;
  /** Resolves when the store answers a trivial query. */
  ping(): Promise<void>;
  /** Flushes (embedded: CHECKPOINT) and closes; releases the directory lock. Idempotent. Call it on SIGTERM after draining. */
  close(): Promise<void>;
}
