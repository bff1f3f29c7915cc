/**
 * Sessions and revocation (SPEC §9; hipchat-auth.md §7): what the token service answers about the
 * tokens it issued, and how they end.
 *
 *   GET    /v2/oauth/token/{access_token}   HipChat get_session: the session of that token
 *   DELETE /v2/oauth/token/{access_token}   HipChat delete_session: 204, the session is revoked
 *   POST   /oauth/revoke                     RFC 7009, client-authenticated
 *   POST   /oauth/introspect                 RFC 7662, client-authenticated
 *
 * Sessions need a bearer (Authorization: Bearer or the token query parameter, read exactly as the
 * gateway reads them) that is the path token itself or a token of the same owner (the same user,
 * or the same client), else 403 `not_owner`. Both tokens are checked with the gateway's verifier
 * (`verify`), then the denylist (`token_revoked`), then the store's record: a token the service
 * never issued has no session (401 "Invalid OAuth session", reason `issuer_unknown`). Deleting a
 * session revokes its access token and, when it came with refresh tokens, their whole family.
 *
 * Revoke and introspect authenticate the client as the standard token endpoint does (Basic or
 * form body) and only ever act on tokens issued to that client: another client's token is a 200
 * no-op for revoke and `{"active":false}` for introspect, as is anything invalid, expired or
 * unknown (RFC 7009 §2.2, RFC 7662 §2.2). Revoking a refresh token revokes its family — every
 * refresh and access token of the original grant (RFC 7009 §2.1's SHOULD). Revoking an access
 * token revokes that token only.
 *
 * Every revocation goes through `store.revoke` / `store.revokeFamily` (what every replica's
 * denylist syncs from) and is added to this replica's denylist at once.
 *
 * @example
 *   const sessions = createSessions({ store, clock, logger, metrics, verify, denylist, authenticator, ... });
 *   const caller = await sessions.caller(req, url);            // the bearer: { principal, record, owner }
 *   const r = await sessions.getSession(req, url, pathToken);  // RenderedResponse (200 session / 401 / 403)
 *   const r2 = await sessions.revoke(authorization, params);   // RenderedResponse (200, no body)
 */
import { GatewayError, isGatewayError, renderError, type ErrorCode, type RenderOptions } from '../errors.js';
import { clip } from '../clip.js';
import { extractToken, type ExtractOptions } from '../auth/extract-token.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { Clock, Principal } from '../types.js';
import { clientCredentialsFrom, type ClientAuthenticator } from './client-auth.js';
import { NO_STORE_HEADERS, renderTokenError, type Params, type RenderedResponse } from './dialects.js';
import type { Denylist } from './revocation.js';
import { verifySecret } from './secrets.js';
import type { ClientRecord, RevocationRecord, TokenRecord, TokenStore } from './store.js';

/** Who a token belongs to: a user (username) or a client (client id). */
export interface Owner {
  type: 'client' | 'user';
  id: string;
}

/** A bearer that passed verification, the denylist and the store. */
export interface Caller {
  principal: Principal;
  /** The store's record of the token; undefined for a token the service did not issue. */
  record: TokenRecord | undefined;
  /** undefined when the token is not the service's (only the same token then counts as the owner). */
  owner: Owner | undefined;
  /** The token as presented (never logged; compared with a path token only). */
  token: string;
}

export interface SessionsDeps {
  store: TokenStore;
  clock: Clock;
  logger: Logger;
  metrics: Pick<Metrics, 'storeErrors' | 'revocations'>;
  /** The gateway's verifier semantics: a Principal, or a GatewayError (401 codes, 503 keys_unavailable). */
  verify: (token: string) => Promise<Principal>;
  denylist: Denylist;
  authenticator: ClientAuthenticator;
  /** token_service.issuer (the configured issuer name) and what it writes into iss / aud. */
  issuerName: string;
  iss?: string | undefined;
  aud?: string | undefined;
  render: RenderOptions;
  /** How the gateway finds a bearer token (tokens.sources, tokens.query_param, tokens.max_token_bytes). */
  extract: ExtractOptions;
}

export interface Sessions {
  /** Authenticates the request's bearer; throws GatewayError (token_missing, 401 codes, token_revoked). */
  caller(req: Request, url: URL): Promise<Caller>;
  /** Verifies a token as `caller` does, from a string (the path token). */
  check(token: string): Promise<Caller>;
  /** Whether `caller` may act on `target`: the same token, or the same owner. */
  sameOwner(caller: Caller, target: Caller): boolean;
  getSession(req: Request, url: URL, pathToken: string): Promise<RenderedResponse>;
  deleteSession(req: Request, url: URL, pathToken: string): Promise<RenderedResponse>;
  /** RFC 7009; `params` is the parsed form body. */
  revoke(authorization: string | null, params: Params): Promise<RenderedResponse>;
  /** RFC 7662. */
  introspect(authorization: string | null, params: Params): Promise<RenderedResponse>;
  /** Revokes records (store first, then this replica's denylist); counts them. */
  revokeRecords(records: readonly Pick<TokenRecord, 'jti' | 'expiresAt'>[]): Promise<void>;
  /** Revokes a refresh family; adds what it revoked to the denylist. */
  revokeFamily(familyId: string): Promise<number>;
  /** The §2 envelope for an error, with Cache-Control: no-store. */
  envelope(err: GatewayError): RenderedResponse;
}

/** `<id>.<secret>` as the endpoint issues refresh tokens (two parts; a JWS has three). */
const REFRESH_TOKEN = /^([A-Za-z0-9_-]{1,128})\.([A-Za-z0-9_-]{16,128})$/;

/** Is `code` a "this token is not valid" answer (as opposed to an outage)? */
function invalidTokenCode(code: ErrorCode): boolean {
  return code !== 'keys_unavailable' && code !== 'store_unavailable' && code !== 'internal_error';
}

function iso(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}

export { iso as isoTime };

export function createSessions(deps: SessionsDeps): Sessions {
  const { store, clock, logger, metrics, verify, denylist, authenticator, render } = deps;
  if (typeof verify !== 'function') throw new TypeError('createSessions: verify must be a function');

  async function guard<T>(op: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (e) {
      if (isGatewayError(e)) throw e;
      metrics.storeErrors.inc({ op });
      throw new GatewayError('store_unavailable', { store: 'token', why: `token store ${op} failed: ${clip(e instanceof Error ? e.message : String(e), 200)}` });
    }
  }

  const envelope = (err: GatewayError): RenderedResponse => {
    const r = renderError(err, render);
    return { status: r.status, headers: { ...r.headers, ...NO_STORE_HEADERS }, body: r.body };
  };

  const revokedError = (jti: string) => new GatewayError('token_revoked', { tokenPresented: true, why: `jti "${clip(jti, 64)}" is revoked` });

  async function check(token: string): Promise<Caller> {
    const principal = await verify(token);
    const jti = principal.tokenId;
    if (jti !== undefined && denylist.has(jti)) throw revokedError(jti);
    let record: TokenRecord | undefined;
    if (principal.issuerName === deps.issuerName && jti !== undefined) {
      record = await guard('getToken', () => store.getToken(jti));
      // The store is the authority: revoked on another replica and not yet synced here.
      if (record?.revokedAt !== undefined) {
        denylist.add(record.jti, record.expiresAt);
        throw revokedError(jti);
      }
    }
    let owner: Owner | undefined;
    if (record) owner = { type: record.ownerType, id: record.ownerId };
    return { principal, record, owner, token };
  }

  async function caller(req: Request, url: URL): Promise<Caller> {
    const auth = req.headers.get('authorization');
    const { token } = extractToken(auth === null ? undefined : [auth], url.search.slice(1), deps.extract);
    return check(token);
  }

  function sameOwner(a: Caller, b: Caller): boolean {
    if (a.token === b.token) return true;
    return a.owner !== undefined && b.owner !== undefined && a.owner.type === b.owner.type && a.owner.id === b.owner.id;
  }

  async function revokeRecords(records: readonly Pick<TokenRecord, 'jti' | 'expiresAt'>[]): Promise<void> {
    if (records.length === 0) return;
    const entries = records.map((r) => ({ jti: r.jti, expiresAt: r.expiresAt }));
    await guard('revoke', () => store.revoke(entries, clock()));
    for (const e of entries) denylist.add(e.jti, e.expiresAt);
    metrics.revocations.inc(entries.length);
  }

  async function revokeFamily(familyId: string): Promise<number> {
    const revoked: RevocationRecord[] = await guard('revokeFamily', () => store.revokeFamily(familyId, clock()));
    for (const r of revoked) denylist.add(r.jti, r.expiresAt);
    if (revoked.length) metrics.revocations.inc(revoked.length);
    return revoked.length;
  }

  /** The path token's session, or the 401 "Invalid OAuth session" for anything else. */
  async function target(pathToken: string): Promise<Caller & { record: TokenRecord }> {
    const t = await check(pathToken);
    if (!t.record) {
      throw new GatewayError('issuer_unknown', {
        tokenPresented: true,
        why: t.principal.issuerName === deps.issuerName ? 'the token service has no record of this token (minted outside it?)' : `the token is issuer "${clip(t.principal.issuerName, 64)}"'s, not the token service's`,
      });
    }
    return t as Caller & { record: TokenRecord };
  }

  /** Bearer first (who asks), then the path token (what about), then ownership. */
  async function authorizeSession(req: Request, url: URL, pathToken: string): Promise<{ asker: Caller; session: Caller & { record: TokenRecord } }> {
    const asker = await caller(req, url);
    const session = asker.token === pathToken && asker.record ? (asker as Caller & { record: TokenRecord }) : await target(pathToken);
    if (!sameOwner(asker, session)) {
      throw new GatewayError('not_owner', {
        why: `the bearer (${asker.owner ? `${asker.owner.type} ${clip(asker.owner.id, 64)}` : 'not a token-service token'}) does not own session ${clip(session.record.jti, 64)}`,
      });
    }
    return { asker, session };
  }

  async function ownerName(o: Owner): Promise<string> {
    if (o.type === 'user') {
      const u = await guard('getUser', () => store.getUser(o.id));
      return u?.displayName ?? o.id;
    }
    const c: ClientRecord | undefined = await guard('getClient', () => store.getClient(o.id));
    return c?.name ?? o.id;
  }

  const ok = (status: number, value: unknown): RenderedResponse => ({
    status,
    headers: { 'content-type': 'application/json', ...NO_STORE_HEADERS },
    body: value === undefined ? '' : JSON.stringify(value),
  });

  async function refuseable(run: () => Promise<RenderedResponse>): Promise<RenderedResponse> {
    try {
      return await run();
    } catch (e) {
      if (!isGatewayError(e)) throw e;
      logger.info({ event: 'session_refused', reason: e.code, why: e.detail.why }, 'session request refused');
      return envelope(e);
    }
  }

  // ── RFC 7009 / RFC 7662 ─────────────────────────────────────────────────────────────────────

  async function authenticateClient(authorization: string | null, params: Params): Promise<ClientRecord> {
    const got = clientCredentialsFrom('standard', authorization, params);
    if (!got.ok) throw Object.assign(new GatewayError(got.code, { why: got.why }), { challenge: got.challenge });
    try {
      return await authenticator.authenticate(got.creds);
    } catch (e) {
      if (isGatewayError(e)) throw Object.assign(e, { challenge: got.creds.method === 'client_secret_basic' });
      throw e;
    }
  }

  async function clientEndpoint(authorization: string | null, params: Params, run: (client: ClientRecord, token: string, hint: string | undefined) => Promise<RenderedResponse>): Promise<RenderedResponse> {
    let clientId: string | undefined;
    try {
      const client = await authenticateClient(authorization, params);
      clientId = client.id;
      const token = params.get('token');
      if (token === undefined || token === '') throw new GatewayError('invalid_request', { why: 'the token parameter is required' });
      return await run(client, token, params.get('token_type_hint'));
    } catch (e) {
      if (!isGatewayError(e)) throw e;
      logger.info({ event: 'client_endpoint_refused', reason: e.code, why: e.detail.why, client_id: clientId === undefined ? undefined : clip(clientId, 64) }, 'revoke/introspect refused');
      return renderTokenError('standard', e, { ...render, basicChallenge: (e as GatewayError & { challenge?: boolean }).challenge === true });
    }
  }

  /** A live refresh token of `client`, or undefined. */
  async function liveRefresh(client: ClientRecord, token: string) {
    const m = REFRESH_TOKEN.exec(token);
    if (!m) return undefined;
    const rec = await guard('getRefresh', () => store.getRefresh(m[1]!));
    if (!rec || rec.clientId !== client.id) return undefined;
    if (!(await verifySecret(m[2]!, rec.secretHash))) return undefined;
    return rec;
  }

  /** A valid access token issued to `client` (its record), or undefined; outages throw. */
  async function liveAccess(client: ClientRecord, token: string): Promise<Caller & { record: TokenRecord } | undefined> {
    try {
      const c = await check(token);
      if (!c.record || c.record.clientId !== client.id || c.record.kind !== 'access') return undefined;
      return c as Caller & { record: TokenRecord };
    } catch (e) {
      if (isGatewayError(e) && invalidTokenCode(e.code)) return undefined;
      throw e;
    }
  }

  const looksLikeRefresh = (token: string) => REFRESH_TOKEN.test(token);

  return {
    caller,
    check,
    sameOwner,
    revokeRecords,
    revokeFamily,
    envelope,

    getSession: (req, url, pathToken) =>
      refuseable(async () => {
        const { session } = await authorizeSession(req, url, pathToken);
        const r = session.record;
        const owner = session.owner!;
        const now = clock();
        return ok(200, {
          access_token: pathToken,
          expires_in: Math.max(0, Math.floor((r.expiresAt - now) / 1000)),
          scopes: [...r.scopes],
          client_id: r.clientId ?? null,
          owner: { id: owner.id, name: await ownerName(owner) },
          owner_type: r.ownerType,
          ...(r.name !== undefined ? { name: r.name } : {}),
          ...(r.roomId !== undefined ? { room: { id: r.roomId } } : {}),
          created_at: iso(r.createdAt),
        });
      }),

    deleteSession: (req, url, pathToken) =>
      refuseable(async () => {
        const { session, asker } = await authorizeSession(req, url, pathToken);
        const r = session.record;
        await revokeRecords([r]);
        const family = r.familyId !== undefined ? await revokeFamily(r.familyId) : 0;
        logger.info(
          { event: 'session_deleted', jti: clip(r.jti, 64), by: asker.owner ? `${asker.owner.type}:${clip(asker.owner.id, 64)}` : 'same token', family_tokens: family },
          'session deleted: token revoked',
        );
        return ok(204, undefined);
      }),

    revoke: (authorization, params) =>
      clientEndpoint(authorization, params, async (client, token, hint) => {
        // The hint only orders the lookups (RFC 7009 §2.1); the token's shape decides.
        void hint;
        if (looksLikeRefresh(token)) {
          const rec = await liveRefresh(client, token);
          if (rec) {
            const n = await revokeFamily(rec.familyId);
            logger.info({ event: 'token_revoked', kind: 'refresh', client_id: clip(client.id, 64), family_access_tokens: n }, 'refresh token revoked with its family (RFC 7009)');
          }
        } else {
          const live = await liveAccess(client, token);
          if (live) {
            await revokeRecords([live.record]);
            logger.info({ event: 'token_revoked', kind: 'access', client_id: clip(client.id, 64), jti: clip(live.record.jti, 64) }, 'access token revoked (RFC 7009)');
          }
        }
        return { status: 200, headers: { ...NO_STORE_HEADERS }, body: '' };
      }),

    introspect: (authorization, params) =>
      clientEndpoint(authorization, params, async (client, token) => {
        const inactive = ok(200, { active: false });
        const now = clock();
        if (looksLikeRefresh(token)) {
          const rec = await liveRefresh(client, token);
          if (!rec || rec.revokedAt !== undefined || rec.replacedBy !== undefined || rec.expiresAt <= now) return inactive;
          return ok(200, {
            active: true,
            scope: rec.scopes.join(' '),
            client_id: rec.clientId,
            sub: rec.subject,
            exp: Math.floor(rec.expiresAt / 1000),
            iat: Math.floor(rec.createdAt / 1000),
            token_type: 'refresh_token',
            ...(deps.iss !== undefined ? { iss: deps.iss } : {}),
            jti: rec.id,
          });
        }
        const live = await liveAccess(client, token);
        if (!live) return inactive;
        const r = live.record;
        return ok(200, {
          active: true,
          scope: r.scopes.join(' '),
          client_id: r.clientId,
          sub: r.subject,
          exp: live.principal.exp ?? Math.floor(r.expiresAt / 1000),
          iat: Math.floor(r.createdAt / 1000),
          token_type: 'Bearer',
          ...(deps.iss !== undefined ? { iss: deps.iss } : {}),
          ...(deps.aud !== undefined ? { aud: deps.aud } : {}),
          jti: r.jti,
        });
      }),
  };
}
