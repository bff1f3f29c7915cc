/**
 * Personal and room notification tokens (SPEC §9): long-lived tokens a user (or a room admin)
 * makes for themselves, shown once, listed without the token, deleted = revoked everywhere.
 *
 *   POST   /v2/oauth/personal-tokens                   {name, scopes, expires_in_s?} → 201 {id, token, name, scopes, created_at, expires_at}
 *   GET    /v2/oauth/personal-tokens                   → {"tokens": [{id, name, scopes, created_at, last_used_at, expires_at}]}
 *   DELETE /v2/oauth/personal-tokens/{id}              → 204
 *   POST   /v2/room/{room_id_or_name}/notification-tokens        {name, expires_in_s?} (scope send_notification)
 *   GET    /v2/room/{room_id_or_name}/notification-tokens
 *   DELETE /v2/room/{room_id_or_name}/notification-tokens/{id}
 *
 * Personal tokens: the caller is a `user` token (else 403 client_type_forbidden) that is not
 * itself personal; the new token's scopes are a subset of the caller's (else 400 invalid_scope),
 * its lifetime at most `lifetimes.personal_s` (the default). Room notification tokens: the
 * caller has `admin_room` or `admin_group` (else 403 scope_insufficient), a room-bound caller
 * only for its own room (403 room_forbidden); the token is a `room` client bound to that room
 * with `send_notification` only. Each caller lists and deletes only its own tokens (someone
 * else's id: 403 not_owner).
 *
 * What marks a token personal: its `jti` starts with `pt_` (room notification: `rn_`) — the
 * token-id claim every replica and the gateway see — and the store's record says `kind:
 * personal`. Either one refuses it here.
 *
 * `last_used_at`: `createUsageRecorder(store, { clock })` — the gateway calls `seen(jti)` after a
 * successful decision for a token of the service's issuer; each replica writes `touchToken` at
 * most once per token per 10 minutes (in memory, bounded), whichever replica saw it.
 *
 * @example
 *   const personal = createPersonalTokens({ store, signer, clock, logger, metrics, sessions, personalS: 31536000 });
 *   const made = await personal.create({ type: 'user', id: 'alice' }, { kind: 'personal', name: 'ci', scopes: ['view_group'] }, ['view_group', 'send_message']);
 *   made.token;                                     // shown once
 *   await personal.list({ type: 'user', id: 'alice' }, 'personal');
 *   const usage = createUsageRecorder(store, { clock: Date.now });
 *   usage.seen(principal.tokenId);                  // at most one touchToken per jti per 10 min
 */
import { LRUCache } from 'lru-cache';
import { GatewayError, isGatewayError } from '../errors.js';
import { clip } from '../clip.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { Clock } from '../types.js';
import { isNumericPathValue, roomMatches } from '../authz/authorize.js';
import { NO_STORE_HEADERS, type RenderedResponse } from './dialects.js';
import type { TokenClaims, TokenSigner } from './issue.js';
import { newId } from './secrets.js';
import type { Caller, Owner, Sessions } from './sessions.js';
import type { TokenKind, TokenRecord, TokenStore } from './store.js';

export type OwnTokenKind = Extract<TokenKind, 'personal' | 'room_notification'>;

/** The jti prefix that marks each kind (the token-id claim). */
export const JTI_PREFIX: Readonly<Record<OwnTokenKind, string>> = { personal: 'pt', room_notification: 'rn' };
/** The `client_id` claim these tokens carry (they are issued to no client). */
export const KIND_CLIENT_ID: Readonly<Record<OwnTokenKind, string>> = { personal: 'personal', room_notification: 'room_notification' };
export const ROOM_TOKEN_SCOPES: readonly string[] = ['send_notification'];
export const ROOM_ADMIN_SCOPES: readonly string[] = ['admin_room', 'admin_group'];

const MAX_NAME_BYTES = 128;
// eslint-disable-next-line no-control-regex -- control characters are exactly what it looks for
const CONTROL = /[\x00-\x1f\x7f]/;
/** RFC 6749 §3.3 scope-token. */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;
const MAX_SCOPES = 64;
const MAX_ROOM_BYTES = 1024;

export interface OwnTokenRequest {
  name: string;
  scopes: string[];
  /** Lifetime in seconds. */
  expiresInS: number;
}

export type ParsedRequest = { ok: true; value: OwnTokenRequest } | { ok: false; code: 'invalid_request' | 'invalid_scope'; why: string };

/** Is the token a personal one, by its claim (jti prefix) or its store record? */
export function isPersonal(c: Pick<Caller, 'principal' | 'record'>): boolean {
  return c.record?.kind === 'personal' || (c.principal.tokenId ?? '').startsWith(`${JTI_PREFIX.personal}_`);
}

/** A token display name: 1..128 bytes, no control characters, not only spaces. */
export function validTokenName(s: unknown): s is string {
  return typeof s === 'string' && s.trim() !== '' && Buffer.byteLength(s) <= MAX_NAME_BYTES && !CONTROL.test(s);
}

/**
 * Parses a create request (the decoded JSON body, or the page's form as an object) — pure, never
 * throws. `scopes` may be an array or a space-separated string; each must be in `allowed`
 * (returned in `allowed`'s order, each once). `expires_in_s` (or `expiresInS`) is an integer
 * 1..maxLifetimeS, default maxLifetimeS. `fixedScopes` (room tokens): scopes may be left out
 * and, when given, must be exactly those.
 */
export function parseOwnTokenRequest(body: unknown, o: { allowed: readonly string[]; maxLifetimeS: number; fixedScopes?: readonly string[] }): ParsedRequest {
  const bad = (why: string): ParsedRequest => ({ ok: false, code: 'invalid_request', why });
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return bad('the body must be a JSON object');
  const b = body as Record<string, unknown>;
  const name = Object.hasOwn(b, 'name') ? b['name'] : undefined;
  if (!validTokenName(name)) return bad('name must be a string of 1..128 bytes without control characters');

  let scopes: string[];
  const raw = Object.hasOwn(b, 'scopes') ? b['scopes'] : undefined;
  if (raw === undefined && o.fixedScopes) {
    scopes = [...o.fixedScopes];
  } else {
    const list = typeof raw === 'string' ? raw.split(' ').filter((s) => s !== '') : Array.isArray(raw) ? raw : undefined;
    if (!list || list.length === 0 || list.length > MAX_SCOPES) return bad(`scopes must be a non-empty array (at most ${MAX_SCOPES}) or space-separated string`);
    if (!list.every((s): s is string => typeof s === 'string' && SCOPE_TOKEN.test(s))) return bad('scopes must be scope strings (RFC 6749 §3.3)');
    if (o.fixedScopes && !(list.every((s) => o.fixedScopes!.includes(s)) && o.fixedScopes.every((s) => list.includes(s)))) {
      return { ok: false, code: 'invalid_scope', why: `this token's scopes are exactly ${o.fixedScopes.join(' ')}` };
    }
    const outside = list.filter((s) => !o.allowed.includes(s));
    if (outside.length) return { ok: false, code: 'invalid_scope', why: `scope ${clip(outside[0]!, 64)} exceeds the caller's scopes` };
    scopes = o.allowed.filter((s) => list.includes(s));
  }

  let ttl = o.maxLifetimeS;
  const rawTtl = Object.hasOwn(b, 'expires_in_s') ? b['expires_in_s'] : Object.hasOwn(b, 'expiresInS') ? b['expiresInS'] : undefined;
  if (rawTtl !== undefined && rawTtl !== null && rawTtl !== '') {
    const n = typeof rawTtl === 'string' && /^[0-9]{1,12}$/.test(rawTtl) ? Number(rawTtl) : rawTtl;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1 || n > o.maxLifetimeS) return bad(`expires_in_s must be an integer from 1 to ${o.maxLifetimeS}`);
    ttl = n;
  }
  return { ok: true, value: { name: name.trim(), scopes, expiresInS: ttl } };
}

/** A room path value the service binds a token to: 1..1024 bytes, no control characters. */
export function validRoom(room: string): boolean {
  return room !== '' && Buffer.byteLength(room) <= MAX_ROOM_BYTES && !CONTROL.test(room);
}

/** What the list shows of a token: never the token itself. */
export function publicView(r: TokenRecord): Record<string, unknown> {
  return {
    id: r.jti,
    name: r.name ?? null,
    scopes: [...r.scopes],
    ...(r.kind === 'room_notification' && r.roomId !== undefined ? { room: r.roomId } : {}),
    created_at: new Date(r.createdAt).toISOString(),
    last_used_at: r.lastUsedAt === undefined ? null : new Date(r.lastUsedAt).toISOString(),
    expires_at: new Date(r.expiresAt).toISOString(),
  };
}

export interface PersonalTokensDeps {
  store: TokenStore;
  signer: TokenSigner;
  clock: Clock;
  logger: Logger;
  metrics: Pick<Metrics, 'storeErrors' | 'tokensIssued' | 'revocations'>;
  sessions: Pick<Sessions, 'revokeRecords'>;
  /** lifetimes.personal_s: the longest (and default) lifetime, seconds. */
  personalS: number;
}

export interface CreateInput {
  kind: OwnTokenKind;
  name: string;
  scopes: readonly string[];
  expiresInS: number;
  /** The room a room notification token is bound to (the path value). */
  room?: string | undefined;
  group?: string | undefined;
}

export interface PersonalTokens {
  create(owner: Owner, input: CreateInput): Promise<{ token: string; record: TokenRecord }>;
  list(owner: Owner, kind: OwnTokenKind, room?: string): Promise<TokenRecord[]>;
  /** Revokes one of the owner's tokens; false when it is not theirs (or unknown). */
  remove(owner: Owner, kind: OwnTokenKind, id: string, room?: string): Promise<boolean>;
  /** The HTTP side: `sub` is what follows the collection path ('' or '/{id}'). */
  handle(req: Request, o: { kind: OwnTokenKind; room?: string | undefined; id?: string | undefined; body?: unknown; caller: Caller }): Promise<RenderedResponse>;
}

export function createPersonalTokens(deps: PersonalTokensDeps): PersonalTokens {
  if (!deps || !deps.store || !deps.signer || typeof deps.clock !== 'function') throw new TypeError('createPersonalTokens: store, signer and clock are required');
  if (!Number.isSafeInteger(deps.personalS) || deps.personalS < 1) throw new TypeError(`createPersonalTokens: personalS must be a positive integer, got ${String(deps.personalS)}`);
  const { store, signer, clock, logger, metrics, sessions } = deps;

  async function guard<T>(op: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (e) {
      if (isGatewayError(e) || e instanceof TypeError) throw e;
      metrics.storeErrors.inc({ op });
      throw new GatewayError('store_unavailable', { store: 'token', why: `token store ${op} failed: ${clip(e instanceof Error ? e.message : String(e), 200)}` });
    }
  }

  async function create(owner: Owner, input: CreateInput): Promise<{ token: string; record: TokenRecord }> {
    const now = clock();
    const jti = newId(JTI_PREFIX[input.kind]);
    const room = input.kind === 'room_notification' ? input.room : undefined;
    if (input.kind === 'room_notification' && (room === undefined || !validRoom(room))) throw new TypeError('create: a room notification token needs a valid room');
    const claims: TokenClaims =
      input.kind === 'personal'
        ? { subject: owner.id, clientType: 'user', scopes: [...input.scopes], clientId: KIND_CLIENT_ID.personal, group: input.group }
        : {
            subject: owner.id,
            clientType: 'room',
            scopes: [...input.scopes],
            clientId: KIND_CLIENT_ID.room_notification,
            // A numeric path value names the room by id; a name binds the token to that room name (SPEC §3).
            ...(isNumericPathValue(room!) ? { room: room! } : { roomName: room! }),
            group: input.group,
          };
    const sign = () => signer.sign(claims, { jti, nowMs: now, ttlS: input.expiresInS });
    const { token, exp } = signer.source === 'store' ? await guard('signingKey', sign) : await sign();
    const record: TokenRecord = {
      jti,
      kind: input.kind,
      ownerType: owner.type,
      ownerId: owner.id,
      subject: owner.id,
      scopes: [...input.scopes],
      roomId: room,
      name: input.name,
      createdAt: now,
      expiresAt: exp * 1000,
    };
    await guard('recordToken', () => store.recordToken(record));
    metrics.tokensIssued.inc({ dialect: 'hipchat', grant: input.kind });
    logger.info({ event: 'own_token_created', kind: input.kind, jti, owner: `${owner.type}:${clip(owner.id, 64)}`, room: room === undefined ? undefined : clip(room, 64) }, 'token created');
    return { token, record };
  }

  async function list(owner: Owner, kind: OwnTokenKind, room?: string): Promise<TokenRecord[]> {
    const rows = await guard('listTokens', () => store.listTokens({ ownerId: owner.id, kind, ...(room !== undefined ? { roomId: room } : {}) }, clock()));
    return rows.filter((r) => r.ownerType === owner.type);
  }

  async function remove(owner: Owner, kind: OwnTokenKind, id: string, room?: string): Promise<boolean> {
    if (id === '' || Buffer.byteLength(id) > 256) return false;
    const r = await guard('getToken', () => store.getToken(id));
    if (!r || r.kind !== kind || r.ownerType !== owner.type || r.ownerId !== owner.id || (room !== undefined && r.roomId !== room)) return false;
    if (r.revokedAt === undefined) await sessions.revokeRecords([r]);
    logger.info({ event: 'own_token_deleted', kind, jti: clip(id, 64), owner: `${owner.type}:${clip(owner.id, 64)}` }, 'token deleted (revoked)');
    return true;
  }

  const json = (status: number, value: unknown): RenderedResponse => ({
    status,
    headers: { 'content-type': 'application/json', ...NO_STORE_HEADERS },
    body: value === undefined ? '' : JSON.stringify(value),
  });

  /** Who may manage `kind` tokens (of `room`), and with which scopes; throws the refusal. */
  function authorize(c: Caller, kind: OwnTokenKind, room: string | undefined): { owner: Owner; allowed: readonly string[] } {
    const p = c.principal;
    if (kind === 'personal') {
      if (p.clientType !== 'user') throw new GatewayError('client_type_forbidden', { clientType: p.clientType || 'unknown', allowedClientTypes: ['user'], why: 'personal tokens are managed with a user token' });
      if (isPersonal(c)) throw new GatewayError('client_type_forbidden', { clientType: 'personal', allowedClientTypes: ['user'], why: 'a personal token cannot manage personal tokens' });
    } else {
      if (!p.scopes.some((s) => ROOM_ADMIN_SCOPES.includes(s))) throw new GatewayError('scope_insufficient', { scopes: ROOM_ADMIN_SCOPES, why: 'room notification tokens need admin_room or admin_group' });
      const bound = p.clientType === 'room' || p.room !== undefined || p.roomName !== undefined;
      if (bound && !roomMatches(p, room!)) throw new GatewayError('room_forbidden', { room: room!, why: 'a room-bound token manages its own room only' });
    }
    const owner: Owner = c.owner ?? { type: p.clientType === 'user' ? 'user' : 'client', id: p.subject ?? '' };
    if (owner.id === '') throw new GatewayError('not_owner', { why: 'the caller has no subject to own tokens' });
    return { owner, allowed: p.scopes };
  }

  return {
    create,
    list,
    remove,
    async handle(req, o) {
      const room = o.room;
      if (room !== undefined && !validRoom(room)) throw new GatewayError('bad_request', { why: 'the room path value is empty, too long or has control characters' });
      const { owner, allowed } = authorize(o.caller, o.kind, room);
      if (req.method === 'GET' && o.id === undefined) {
        const rows = await list(owner, o.kind, room);
        return json(200, { tokens: rows.map(publicView) });
      }
      if (req.method === 'DELETE' && o.id !== undefined) {
        if (!(await remove(owner, o.kind, o.id, room))) throw new GatewayError('not_owner', { why: `no ${o.kind} token ${clip(o.id, 64)} of this caller` });
        return json(204, undefined);
      }
      // POST on the collection.
      const parsed = parseOwnTokenRequest(o.body, {
        allowed: o.kind === 'personal' ? allowed : ROOM_TOKEN_SCOPES,
        maxLifetimeS: deps.personalS,
        ...(o.kind === 'room_notification' ? { fixedScopes: ROOM_TOKEN_SCOPES } : {}),
      });
      if (!parsed.ok) throw new GatewayError(parsed.code, { why: parsed.why });
      const made = await create(owner, { kind: o.kind, ...parsed.value, room, group: o.caller.principal.group });
      const r = made.record;
      return json(201, {
        id: r.jti,
        token: made.token,
        name: r.name,
        scopes: r.scopes,
        ...(r.roomId !== undefined ? { room: r.roomId } : {}),
        created_at: new Date(r.createdAt).toISOString(),
        expires_at: new Date(r.expiresAt).toISOString(),
      });
    },
  };
}

// ── last_used_at ────────────────────────────────────────────────────────────────────────────────

export interface UsageRecorderOptions {
  clock: Clock;
  /** At most one touchToken per jti per this many ms (default 600 000 = 10 minutes). */
  intervalMs?: number | undefined;
  /** jtis remembered at most (default 100 000; the least recently seen go first). */
  maxEntries?: number | undefined;
  metrics?: Pick<Metrics, 'storeErrors'> | undefined;
  logger?: Pick<Logger, 'warn'> | undefined;
}

export interface UsageRecorder {
  /** Synchronous and never throws: schedules a touchToken when this jti was not touched within the interval. */
  seen(jti: string | undefined): void;
  /** Resolves when every scheduled write has finished (tests, shutdown). */
  flush(): Promise<void>;
}

export function createUsageRecorder(store: Pick<TokenStore, 'touchToken'>, opts: UsageRecorderOptions): UsageRecorder {
  if (!store || typeof store.touchToken !== 'function') throw new TypeError('createUsageRecorder: store must have touchToken');
  if (typeof opts.clock !== 'function') throw new TypeError('createUsageRecorder: clock must be a function');
  const intervalMs = opts.intervalMs ?? 600_000;
  const maxEntries = opts.maxEntries ?? 100_000;
  if (!Number.isSafeInteger(intervalMs) || intervalMs < 1) throw new TypeError(`createUsageRecorder: intervalMs must be a positive integer, got ${String(opts.intervalMs)}`);
  if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) throw new TypeError(`createUsageRecorder: maxEntries must be a positive integer, got ${String(opts.maxEntries)}`);
  const { clock } = opts;
  const last = new LRUCache<string, number>({ max: maxEntries });
  const pending = new Set<Promise<void>>();
  let failures = 0;
  return {
    seen(jti) {
      if (typeof jti !== 'string' || jti === '' || jti.length > 256) return;
      const now = clock();
      const at = last.get(jti);
      if (at !== undefined && now - at < intervalMs) return;
      last.set(jti, now);
      const p = store
        .touchToken(jti, now)
        .catch((e: unknown) => {
          // Not written: forget it, so the next sighting tries again.
          last.delete(jti);
          opts.metrics?.storeErrors.inc({ op: 'touchToken' });
          if (failures++ % 100 === 0) opts.logger?.warn({ event: 'touch_token_failed', err: clip(e instanceof Error ? e.message : String(e), 200) }, 'could not record last_used_at');
        })
        .finally(() => pending.delete(p));
      pending.add(p);
    },
    async flush() {
      await Promise.all([...pending]);
    },
  };
}
