/**
 * The token endpoint's logic (SPEC §9), one implementation behind the three dialects: client
 * authentication first (`invalid_client`), then the grant — `client_credentials`, `password`
 * (only with `token_service.password_grant: true`) and `refresh_token` (rotating; a replayed
 * refresh token revokes its whole family, RFC 9700 §4.14.2). Takes an already parsed request
 * (dialect, Authorization header, body parameters) and returns the exact response to send, so
 * the HTTP glue (service.ts) stays thin. Every outcome is counted
 * (`scopegate_tokens_issued_total{dialect,grant}`, `scopegate_token_errors_total{error}`) and
 * refusals are logged with their code and an operator-facing `why` — never a secret, password or
 * token (none is ever passed to the logger).
 *
 * Failed password attempts are limited per client and per username (attempts.ts, in memory per
 * replica): over the limit the password is not checked at all and the answer is `invalid_grant`.
 *
 * @example
 *   const endpoint = createTokenEndpoint({ store, signer, clock, logger, metrics, settings });
 *   const out = await endpoint.handle({ dialect: 'hipchat', authorization: 'Basic …', params });
 *   // out.response = { status: 200, headers: {…, 'cache-control': 'no-store'}, body: '{"access_token":…}' }
 */
import { GatewayError, isGatewayError, type ErrorCode, type RenderOptions } from '../errors.js';
import { clip } from '../clip.js';
import { sha256 } from '../hash.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { Clock } from '../types.js';
import { createAttemptLimiter, type AttemptLimiter } from './attempts.js';
import { clientCredentialsFrom, createClientAuthenticator, type ClientAuthenticator } from './client-auth.js';
import { parseScope, renderTokenError, renderTokenSuccess, type Dialect, type IssuedTokens, type Params, type RenderedResponse } from './dialects.js';
import type { TokenClaims, TokenSigner } from './issue.js';
import { hashSecret, newId, newSecret, verifySecret } from './secrets.js';
import type { ClientRecord, RefreshRecord, TokenStore } from './store.js';

/** Grant types the endpoint implements; any other value is `unsupported_grant_type`. */
export const GRANTS = ['client_credentials', 'password', 'refresh_token'] as const;
export type Grant = (typeof GRANTS)[number];
/** `grant` label of the metrics: a known grant, else `other` (bounded). */
export type GrantLabel = Grant | 'other';

export interface AttemptLimits {
  /** Failed password attempts allowed per client per window (default 100). */
  perClient: number;
  /** Failed password attempts allowed per username per window (default 10). */
  perUser: number;
  /** Window length, ms (default 300 000). */
  windowMs: number;
  /** Keys (clients + usernames) remembered at most (default 10 000). */
  maxKeys: number;
}

export const DEFAULT_ATTEMPT_LIMITS: AttemptLimits = { perClient: 100, perUser: 10, windowMs: 300_000, maxKeys: 10_000 };

export interface EndpointSettings {
  lifetimes: { access_s: number; user_s: number; refresh_s: number };
  passwordGrant: boolean;
  /** `store`, or the http(s) URL that checks passwords. */
  users: string;
  render: RenderOptions;
  attempts?: Partial<AttemptLimits> | undefined;
  /** Timeout of one call to the `users` URL, ms (default 5000). */
  usersTimeoutMs?: number | undefined;
  /** Hot-client cache (client-auth.ts): ttl ms (default 60 000, 0 = off) and size (default 1000). */
  clientCache?: { ttlMs?: number | undefined; maxEntries?: number | undefined } | undefined;
}

export interface EndpointDeps {
  store: TokenStore;
  signer: TokenSigner;
  clock: Clock;
  logger: Logger;
  metrics: Pick<Metrics, 'tokensIssued' | 'tokenErrors' | 'storeErrors' | 'revocations' | 'internalErrors'>;
  settings: EndpointSettings;
  /**
   * The per-username failed-attempt limiter; pass one to share it with the Integration page's
   * sign-in, so a guesser gets one budget for both. Default: built from `settings.attempts`.
   */
  userAttempts?: AttemptLimiter | undefined;
  /** Told about each family a refresh replay revoked (the denylist adds them at once). */
  onRevoked?: ((entries: readonly { jti: string; expiresAt: number }[]) => void) | undefined;
}

export interface TokenRequest {
  dialect: Dialect;
  /** The Authorization header as received (null when absent). */
  authorization: string | null;
  params: Params;
}

/** What happened, for the caller's access line (`reason`) and tests. */
export interface TokenOutcome {
  response: RenderedResponse;
  grant?: GrantLabel | undefined;
  /** The refusal code (the access line's `reason`). */
  error?: ErrorCode | undefined;
  clientId?: string | undefined;
}

export interface TokenEndpoint {
  handle(req: TokenRequest): Promise<TokenOutcome>;
  /** Renders, counts and logs a refusal found before the grant logic (body too large, wrong type). */
  refuse(dialect: Dialect, err: GatewayError): TokenOutcome;
  /**
   * The password grant's user check (store users or the users URL), for the Integration page's
   * sign-in. Outages throw GatewayError('store_unavailable'). Attempt limits are the caller's.
   */
  checkUser(username: string, password: string): Promise<{ ok: true; user: CheckedUser } | { ok: false; why: string }>;
}

/** Usernames and subjects: at most 1024 bytes (SPEC §3's claim bound), no control characters. */
const MAX_NAME_BYTES = 1024;
// eslint-disable-next-line no-control-regex -- control characters are exactly what it looks for
const CONTROL = /[\x00-\x1f\x7f]/;
const MAX_PASSWORD_BYTES = 1024;
/** `<id>.<secret>`, both base64url (ids from newId may carry a `rt_` prefix). */
const REFRESH_TOKEN = /^([A-Za-z0-9_-]{1,128})\.([A-Za-z0-9_-]{16,128})$/;
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;
/** Largest users-URL answer read, bytes. */
const MAX_USERS_BODY = 65_536;

function validName(s: string): boolean {
  return s !== '' && Buffer.byteLength(s) <= MAX_NAME_BYTES && !CONTROL.test(s);
}

/** A non-secret fingerprint of a username for log lines (a user may type a password there). */
function userFingerprint(username: string): string {
  return sha256(username, 'base64url').slice(0, 12);
}

/**
 * The scopes to grant: `requested` (default: all of `allowed`), each of which must be in
 * `allowed`; returned in `allowed`'s order. undefined when a requested scope is not allowed.
 */
export function grantScopes(allowed: readonly string[], requested: readonly string[] | undefined): string[] | undefined {
  if (requested === undefined) return [...allowed];
  if (!requested.every((s) => allowed.includes(s))) return undefined;
  return allowed.filter((s) => requested.includes(s));
}

export interface CheckedUser {
  subject: string;
  /** Scopes the user may have; undefined = no restriction beyond the client's. */
  scopes?: string[] | undefined;
  groupId?: string | undefined;
}

export function createTokenEndpoint(deps: EndpointDeps): TokenEndpoint {
  const { store, signer, clock, logger, metrics, settings } = deps;
  const limits: AttemptLimits = { ...DEFAULT_ATTEMPT_LIMITS, ...(settings.attempts ?? {}) };
  const perClient: AttemptLimiter = createAttemptLimiter({ maxFailures: limits.perClient, windowMs: limits.windowMs, maxKeys: limits.maxKeys, clock });
  const perUser: AttemptLimiter = deps.userAttempts ?? createAttemptLimiter({ maxFailures: limits.perUser, windowMs: limits.windowMs, maxKeys: limits.maxKeys, clock });
  const usersTimeoutMs = settings.usersTimeoutMs ?? 5000;
  if (!Number.isSafeInteger(usersTimeoutMs) || usersTimeoutMs < 1) throw new TypeError(`createTokenEndpoint: usersTimeoutMs must be a positive integer, got ${String(settings.usersTimeoutMs)}`);
  const usersUrl = settings.users === 'store' ? undefined : new URL(settings.users);

  /** Runs one store operation; a failure is counted and becomes 503 store_unavailable. */
  async function guard<T>(op: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (e) {
      if (isGatewayError(e)) throw e;
      metrics.storeErrors.inc({ op });
      throw new GatewayError('store_unavailable', { store: 'token', why: `token store ${op} failed: ${clip(e instanceof Error ? e.message : String(e), 200)}` });
    }
  }

  const authenticator: ClientAuthenticator = createClientAuthenticator({
    getClient: (id) => guard('getClient', () => store.getClient(id)),
    clock,
    cacheTtlMs: settings.clientCache?.ttlMs,
    cacheMaxEntries: settings.clientCache?.maxEntries,
  });
  let dummyUserHash: Promise<string> | undefined;

  // ── issuing ──────────────────────────────────────────────────────────────────────────────────

  async function issueAccess(
    claims: TokenClaims,
    rec: { ownerType: 'client' | 'user'; ownerId: string; familyId?: string | undefined },
    ttlS: number,
    now: number,
  ): Promise<{ token: string; expiresIn: number; jti: string; expiresAt: number }> {
    const jti = newId('at');
    // The store's key ring reads its keys from the store: a failure there is a store outage.
    const sign = () => signer.sign(claims, { jti, nowMs: now, ttlS });
    const { token, exp } = signer.source === 'store' ? await guard('signingKey', sign) : await sign();
    // Recorded before it is handed out: sessions and revocation (next issue) need every jti.
    await guard('recordToken', () =>
      store.recordToken({
        jti,
        kind: 'access',
        clientId: claims.clientId,
        ownerType: rec.ownerType,
        ownerId: rec.ownerId,
        subject: claims.subject,
        scopes: [...claims.scopes],
        roomId: claims.room,
        familyId: rec.familyId,
        createdAt: now,
        expiresAt: exp * 1000,
      }),
    );
    return { token, expiresIn: ttlS, jti, expiresAt: exp * 1000 };
  }

  /** A new refresh record (not stored) and its wire form `<id>.<secret>`. */
  async function newRefresh(base: Omit<RefreshRecord, 'id' | 'secretHash' | 'createdAt' | 'expiresAt'>, now: number): Promise<{ record: RefreshRecord; wire: string }> {
    const id = newId('rt');
    const secret = newSecret();
    const record: RefreshRecord = { ...base, id, secretHash: await hashSecret(secret), createdAt: now, expiresAt: now + settings.lifetimes.refresh_s * 1000 };
    return { record, wire: `${id}.${secret}` };
  }

  function clientClaims(client: ClientRecord, scopes: string[]): TokenClaims {
    return { subject: client.id, clientType: client.clientType, scopes, clientId: client.id, room: client.roomId, roomName: client.roomName, group: client.groupId };
  }

  function userClaims(client: ClientRecord, user: CheckedUser, scopes: string[]): TokenClaims {
    return { subject: user.subject, clientType: 'user', scopes, clientId: client.id, group: user.groupId ?? client.groupId };
  }

  /** group_id / group_name of the HipChat body: the token's group; its name when it is the client's. */
  function groupOf(client: ClientRecord, group: string | undefined): Pick<IssuedTokens, 'groupId' | 'groupName'> {
    if (group === undefined) return {};
    return { groupId: group, groupName: group === client.groupId ? client.groupName : undefined };
  }

  // ── password check ──────────────────────────────────────────────────────────────────────────

  async function checkUser(username: string, password: string): Promise<{ ok: true; user: CheckedUser } | { ok: false; why: string }> {
    if (Buffer.byteLength(password) > MAX_PASSWORD_BYTES) return { ok: false, why: 'password longer than 1024 bytes' };
    if (!usersUrl) {
      const user = await guard('getUser', () => store.getUser(username));
      if (!user) {
        await verifySecret(password, await (dummyUserHash ??= hashSecret(newSecret())));
        return { ok: false, why: 'unknown user' };
      }
      if (!(await verifySecret(password, user.passwordHash))) return { ok: false, why: 'wrong password' };
      return { ok: true, user: { subject: user.username, scopes: user.scopes, groupId: user.groupId } };
    }
    return checkUserByUrl(usersUrl, username, password);
  }

  async function checkUserByUrl(url: URL, username: string, password: string): Promise<{ ok: true; user: CheckedUser } | { ok: false; why: string }> {
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ username, password }),
        redirect: 'manual',
        signal: AbortSignal.timeout(usersTimeoutMs),
      });
    } catch (e) {
      metrics.storeErrors.inc({ op: 'users_url' });
      const timedOut = (e as Error).name === 'TimeoutError';
      throw new GatewayError('store_unavailable', { store: 'token', why: timedOut ? `users URL did not answer within ${usersTimeoutMs} ms` : `users URL unreachable: ${clip(describeFetchError(e), 200)}` });
    }
    if (res.status >= 500) {
      await res.body?.cancel().catch(() => {});
      metrics.storeErrors.inc({ op: 'users_url' });
      throw new GatewayError('store_unavailable', { store: 'token', why: `users URL answered HTTP ${res.status}` });
    }
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => {});
      return { ok: false, why: `users URL answered HTTP ${res.status}` };
    }
    const text = await readLimited(res, MAX_USERS_BODY);
    if (text === undefined) return { ok: false, why: 'users URL answer is not readable or longer than 64 KiB' };
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return { ok: false, why: 'users URL answered 200 without JSON' };
    }
    if (json === null || typeof json !== 'object' || Array.isArray(json)) return { ok: false, why: 'users URL answered 200 without a JSON object' };
    const o = json as Record<string, unknown>;
    const sub = typeof o['sub'] === 'string' ? o['sub'] : typeof o['sub'] === 'number' && Number.isSafeInteger(o['sub']) ? String(o['sub']) : undefined;
    if (sub === undefined || !validName(sub)) return { ok: false, why: 'users URL answered 200 without a usable "sub" (a string of 1..1024 bytes, no control characters)' };
    let scopes: string[] | undefined;
    const raw = o['scopes'];
    if (raw !== undefined) {
      const list = typeof raw === 'string' ? raw.split(' ').filter(Boolean) : Array.isArray(raw) ? raw : undefined;
      if (!list || !list.every((s): s is string => typeof s === 'string' && SCOPE_TOKEN.test(s))) {
        return { ok: false, why: 'users URL answered "scopes" that are not scope strings' };
      }
      scopes = list;
    }
    return { ok: true, user: { subject: sub, scopes } };
  }

  // ── grants ──────────────────────────────────────────────────────────────────────────────────

  function requestedScopes(params: Params): string[] | undefined {
    const parsed = parseScope(params.get('scope'));
    if (!parsed.ok) throw new GatewayError('invalid_scope', { why: 'scope has a character outside RFC 6749 §3.3' });
    return parsed.scopes;
  }

  async function clientCredentials(dialect: Dialect, client: ClientRecord, params: Params): Promise<IssuedTokens> {
    const scopes = grantScopes(client.scopes, requestedScopes(params));
    if (!scopes) throw new GatewayError('invalid_scope', { why: `requested scope exceeds client ${clip(client.id, 64)}'s scopes` });
    const now = clock();
    const claims = clientClaims(client, scopes);
    // livedigital answers every grant with a refresh token; RFC 6749 §4.4.3 says none otherwise.
    let refresh: { record: RefreshRecord; wire: string } | undefined;
    if (dialect === 'livedigital') {
      refresh = await newRefresh({ familyId: newId('fam'), clientId: client.id, subject: client.id, ownerType: 'client', scopes }, now);
      const record = refresh.record;
      await guard('createRefresh', () => store.createRefresh(record));
    }
    const access = await issueAccess(claims, { ownerType: 'client', ownerId: client.id, familyId: refresh?.record.familyId }, settings.lifetimes.access_s, now);
    return { accessToken: access.token, expiresIn: access.expiresIn, scopes, refreshToken: refresh?.wire, ...groupOf(client, client.groupId) };
  }

  async function passwordGrant(client: ClientRecord, params: Params): Promise<IssuedTokens> {
    if (!settings.passwordGrant) throw new GatewayError('unauthorized_client', { why: 'the password grant is off (token_service.password_grant: false)' });
    const username = params.get('username');
    const password = params.get('password');
    if (username === undefined || password === undefined) throw new GatewayError('invalid_request', { why: 'username and password are required' });
    if (!validName(username)) throw new GatewayError('invalid_request', { why: 'username must be 1..1024 bytes without control characters' });
    const requested = requestedScopes(params);
    const clientKey = `client:${client.id}`;
    const userKey = `user:${username}`;
    if (perClient.blocked(clientKey) || perUser.blocked(userKey)) {
      throw new GatewayError('invalid_grant', {
        why: `too many failed password attempts (${perUser.blocked(userKey) ? `user ${userFingerprint(username)}` : `client ${clip(client.id, 64)}`}); password not checked`,
      });
    }
    const checked = await checkUser(username, password);
    if (!checked.ok) {
      perClient.fail(clientKey);
      perUser.fail(userKey);
      throw new GatewayError('invalid_grant', { why: `password check failed for user ${userFingerprint(username)}: ${checked.why}` });
    }
    perUser.succeed(userKey);
    const user = checked.user;
    const allowed = client.scopes.filter((s) => user.scopes === undefined || user.scopes.includes(s));
    const scopes = grantScopes(allowed, requested);
    if (!scopes) throw new GatewayError('invalid_scope', { why: 'requested scope exceeds what the client and the user both have' });
    const now = clock();
    const refresh = await newRefresh({ familyId: newId('fam'), clientId: client.id, subject: user.subject, ownerType: 'user', scopes }, now);
    await guard('createRefresh', () => store.createRefresh(refresh.record));
    const claims = userClaims(client, user, scopes);
    const access = await issueAccess(claims, { ownerType: 'user', ownerId: user.subject, familyId: refresh.record.familyId }, settings.lifetimes.user_s, now);
    return { accessToken: access.token, expiresIn: access.expiresIn, scopes, refreshToken: refresh.wire, ...groupOf(client, claims.group) };
  }

  async function refreshGrant(client: ClientRecord, params: Params): Promise<IssuedTokens> {
    const presented = params.get('refresh_token');
    if (presented === undefined) throw new GatewayError('invalid_request', { why: 'refresh_token is required' });
    const requested = requestedScopes(params);
    const m = REFRESH_TOKEN.exec(presented);
    if (!m) throw new GatewayError('invalid_grant', { why: 'refresh_token is not of the form <id>.<secret>' });
    const [, id, secret] = m as unknown as [string, string, string];
    const rec = await guard('getRefresh', () => store.getRefresh(id));
    if (!rec) throw new GatewayError('invalid_grant', { why: 'unknown refresh token' });
    if (!(await verifySecret(secret, rec.secretHash))) throw new GatewayError('invalid_grant', { why: `wrong secret for refresh token ${clip(id, 64)}` });
    if (rec.clientId !== client.id) throw new GatewayError('invalid_grant', { why: `refresh token ${clip(id, 64)} was issued to another client` });

    // What the family may still carry now: the client (and a store user) may have lost scopes.
    let user: CheckedUser | undefined;
    let allowed = rec.scopes.filter((s) => client.scopes.includes(s));
    if (rec.ownerType === 'user') {
      if (usersUrl) {
        user = { subject: rec.subject };
      } else {
        const u = await guard('getUser', () => store.getUser(rec.subject));
        if (!u) throw new GatewayError('invalid_grant', { why: `the user of refresh token ${clip(id, 64)} no longer exists` });
        user = { subject: u.username, scopes: u.scopes, groupId: u.groupId };
        allowed = allowed.filter((s) => u.scopes.includes(s));
      }
    }
    // RFC 6749 §6: a narrower scope may be asked for; never more than the original grant.
    if (requested !== undefined && !requested.every((s) => rec.scopes.includes(s))) {
      throw new GatewayError('invalid_scope', { why: 'requested scope exceeds the refresh token\'s scope' });
    }
    const scopes = requested === undefined ? allowed : allowed.filter((s) => requested.includes(s));

    const now = clock();
    const next = await newRefresh({ familyId: rec.familyId, clientId: rec.clientId, subject: rec.subject, ownerType: rec.ownerType, scopes: rec.scopes }, now);
    const ttl = rec.ownerType === 'user' ? settings.lifetimes.user_s : settings.lifetimes.access_s;
    const claims = rec.ownerType === 'user' ? userClaims(client, user!, scopes) : clientClaims(client, scopes);
    // The new access token is recorded BEFORE the rotation commits. A replay racing this request
    // sees the rotation only after that, so its revokeFamily always finds this token (recorded
    // after, it escaped: a live token from a revoked family). And a store failure here consumes
    // nothing: the client may retry the 503 with the same refresh token.
    const access = await issueAccess(claims, { ownerType: rec.ownerType, ownerId: rec.ownerType === 'user' ? rec.subject : client.id, familyId: rec.familyId }, ttl, now);
    const rotated = await guard('rotateRefresh', () => store.rotateRefresh(id, next.record, now));
    if (!rotated.ok) {
      if (rotated.reason === 'replayed') {
        const revoked = await guard('revokeFamily', () => store.revokeFamily(rotated.familyId, now));
        // The token recorded above never left this process: not counted as a revocation.
        const handedOut = revoked.filter((r) => r.jti !== access.jti).length;
        if (handedOut) metrics.revocations.inc(handedOut);
        deps.onRevoked?.(revoked);
        logger.warn(
          { event: 'refresh_replay', client_id: clip(client.id, 64), family: clip(rotated.familyId, 64), revoked_access_tokens: handedOut },
          'a replaced refresh token was presented again: its whole family is revoked (RFC 9700 §4.14.2)',
        );
        throw new GatewayError('invalid_grant', { why: `refresh token ${clip(id, 64)} was already used; family revoked` });
      }
      // Never handed out, so no record of a live token stays behind.
      await guard('revoke', () => store.revoke([{ jti: access.jti, expiresAt: access.expiresAt }], now));
      throw new GatewayError('invalid_grant', { why: `refresh token ${clip(id, 64)} is ${rotated.reason}` });
    }
    return { accessToken: access.token, expiresIn: access.expiresIn, scopes, refreshToken: next.wire, ...groupOf(client, claims.group) };
  }

  // ── the outcome ─────────────────────────────────────────────────────────────────────────────

  function refusal(dialect: Dialect, err: GatewayError, o: { challenge?: boolean; grant?: GrantLabel | undefined; clientId?: string | undefined } = {}): TokenOutcome {
    metrics.tokenErrors.inc({ error: err.code });
    logger.info(
      { event: 'token_refused', dialect, grant: o.grant, reason: err.code, why: err.detail.why, client_id: o.clientId === undefined ? undefined : clip(o.clientId, 64) },
      'token request refused',
    );
    return { response: renderTokenError(dialect, err, { ...settings.render, basicChallenge: o.challenge === true }), grant: o.grant, error: err.code, clientId: o.clientId };
  }

  return {
    refuse: (dialect, err) => refusal(dialect, err),
    checkUser: (username, password) => {
      if (!validName(username)) return Promise.resolve({ ok: false, why: 'username must be 1..1024 bytes without control characters' });
      return checkUser(username, password);
    },
    async handle(req) {
      const { dialect, params } = req;
      const rawGrant = params.get('grant_type');
      const grant: GrantLabel | undefined = rawGrant === undefined ? undefined : (GRANTS as readonly string[]).includes(rawGrant) ? (rawGrant as Grant) : 'other';
      let clientId: string | undefined;
      let challenge = false;
      try {
        const got = clientCredentialsFrom(dialect, req.authorization, params);
        if (!got.ok) {
          challenge = got.challenge;
          throw new GatewayError(got.code, { why: got.why });
        }
        challenge = got.creds.method === 'client_secret_basic';
        const client = await authenticator.authenticate(got.creds);
        clientId = client.id;
        challenge = false;
        let issued: IssuedTokens;
        switch (grant) {
          case undefined:
            throw new GatewayError('invalid_request', { why: 'grant_type is required' });
          case 'client_credentials':
            issued = await clientCredentials(dialect, client, params);
            break;
          case 'password':
            issued = await passwordGrant(client, params);
            break;
          case 'refresh_token':
            issued = await refreshGrant(client, params);
            break;
          case 'other':
            throw new GatewayError('unsupported_grant_type', { why: `grant_type ${clip(rawGrant ?? '', 64)} is not supported` });
        }
        metrics.tokensIssued.inc({ dialect, grant });
        logger.info({ event: 'token_issued', dialect, grant, client_id: clip(client.id, 64) }, 'token issued');
        return { response: renderTokenSuccess(dialect, issued), grant, clientId };
      } catch (e) {
        if (isGatewayError(e)) return refusal(dialect, e, { challenge, grant, clientId });
        metrics.internalErrors.inc();
        logger.error({ event: 'token_internal_error', dialect, grant, err: e instanceof Error ? { message: e.message, stack: e.stack } : String(e) }, 'token endpoint failed');
        return refusal(dialect, new GatewayError('internal_error', { why: 'unexpected exception in the token endpoint' }), { grant, clientId });
      }
    },
  };
}

async function readLimited(res: Response, max: number): Promise<string | undefined> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      n += value.byteLength;
      if (n > max) {
        await reader.cancel().catch(() => {});
        return undefined;
      }
      chunks.push(value);
    }
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    return undefined;
  }
}

function describeFetchError(e: unknown): string {
  const err = e as Error & { cause?: { code?: string; message?: string } };
  return err.cause?.code ?? err.cause?.message ?? err.message ?? String(e);
}
