/**
 * Client authentication at the token endpoint (RFC 6749 §2.3), in two parts:
 *
 * 1. `clientCredentialsFrom` (pure): which credentials a request presents, per dialect —
 *    HipChat: `Authorization: Basic` only; livedigital: `client_id` + `client_secret` in the JSON
 *    body (its `Authorization: Bearer <client token>` is ignored); standard: Basic
 *    (`client_secret_basic`) or the form body (`client_secret_post`). Two methods at once is
 *    `invalid_request` (RFC 6749 §2.3: "MUST NOT use more than one").
 * 2. `createClientAuthenticator`: checks them against the store's slow salted hash, in constant
 *    time, with a small hot-client cache so a client asking for tokens in a loop pays scrypt once
 *    per `cacheTtlMs`, not per request. The cache keeps (client_id → SHA-256 of the last secret
 *    that verified, and the store hash it verified against): a hit needs the same secret (compared
 *    with timingSafeEqual) AND the same `secretHash` still in the store (read on every request), so
 *    `clients rotate-secret` takes effect at once, and an entry expires after `cacheTtlMs`.
 *    Unknown clients are checked against a dummy hash, so timing does not tell which ids exist.
 *
 * @example
 *   const got = clientCredentialsFrom('standard', req.headers.get('authorization'), params);
 *   if (!got.ok) throw new GatewayError(got.code, { why: got.why });
 *   const auth = createClientAuthenticator({ getClient: (id) => store.getClient(id), clock: Date.now });
 *   const client = await auth.authenticate(got.creds); // ClientRecord, or throws invalid_client
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { GatewayError, type ErrorCode } from '../errors.js';
import { clip } from '../clip.js';
import type { Clock } from '../types.js';
import { parseBasicAuth, type Dialect, type Params } from './dialects.js';
import { hashSecret, newSecret, verifySecret } from './secrets.js';
import type { ClientRecord } from './store.js';

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post';

export interface ClientCredentials {
  method: ClientAuthMethod;
  id: string;
  secret: string;
}

export type CredentialsResult =
  | { ok: true; creds: ClientCredentials }
  /** `challenge`: answer with `WWW-Authenticate: Basic` (Basic was tried, or is the way to authenticate). */
  | { ok: false; code: Extract<ErrorCode, 'invalid_client' | 'invalid_request'>; why: string; challenge: boolean };

/** Longest client id / secret looked at; longer is refused before any store lookup or hash. */
export const MAX_CLIENT_ID_BYTES = 256;
export const MAX_SECRET_BYTES = 1024;

function tooLong(creds: { id: string; secret: string }): boolean {
  return Buffer.byteLength(creds.id) > MAX_CLIENT_ID_BYTES || Buffer.byteLength(creds.secret) > MAX_SECRET_BYTES;
}

/** The credentials `dialect` reads from the Authorization header and the body parameters. */
export function clientCredentialsFrom(dialect: Dialect, authorization: string | null | undefined, params: Params): CredentialsResult {
  const basic = parseBasicAuth(authorization);
  const bodyId = params.get('client_id');
  const bodySecret = params.get('client_secret');
  const invalidClient = (why: string, challenge: boolean): CredentialsResult => ({ ok: false, code: 'invalid_client', why, challenge });
  const invalidRequest = (why: string): CredentialsResult => ({ ok: false, code: 'invalid_request', why, challenge: false });

  if (dialect === 'livedigital') {
    if (basic.kind !== 'none') return invalidRequest('client credentials go in the JSON body (client_id, client_secret), not in Basic');
    if (bodyId === undefined || bodySecret === undefined) return invalidClient('client_id and client_secret are required in the body', false);
    return { ok: true, creds: { method: 'client_secret_post', id: bodyId, secret: bodySecret } };
  }

  if (basic.kind === 'malformed') return invalidClient(basic.why, true);
  if (basic.kind === 'basic') {
    if (bodySecret !== undefined) return invalidRequest('client credentials both in Basic and in the body; use one method');
    if (bodyId !== undefined && bodyId !== basic.id) return invalidRequest('client_id in the body differs from the Basic client id');
    return { ok: true, creds: { method: 'client_secret_basic', id: basic.id, secret: basic.secret } };
  }
  if (dialect === 'hipchat') {
    if (bodySecret !== undefined) return invalidRequest('this endpoint takes client credentials in Authorization: Basic only');
    return invalidClient('no Authorization: Basic client credentials', true);
  }
  // standard: client_secret_post, or nothing at all.
  if (bodyId === undefined && bodySecret === undefined) return invalidClient('no client credentials (Basic or client_id + client_secret)', true);
  if (bodyId === undefined || bodySecret === undefined) return invalidClient('client_id and client_secret must both be sent (public clients are not supported)', false);
  return { ok: true, creds: { method: 'client_secret_post', id: bodyId, secret: bodySecret } };
}

export interface ClientAuthenticatorOptions {
  /** Reads a client; should map store failures to GatewayError('store_unavailable'). */
  getClient: (id: string) => Promise<ClientRecord | undefined>;
  clock: Clock;
  /** How long a verified secret is remembered, ms (default 60 000; 0 disables the cache). */
  cacheTtlMs?: number | undefined;
  /** Clients remembered at most (default 1000). */
  cacheMaxEntries?: number | undefined;
}

export interface ClientAuthenticator {
  /** The authenticated client; throws GatewayError `invalid_client` (why says which check failed). */
  authenticate(creds: ClientCredentials): Promise<ClientRecord>;
  /** Drops a client's cached secret (after rotate-secret or delete in this process). */
  forget(id: string): void;
  /** Cached clients (tests, diagnostics). */
  readonly cacheSize: number;
}

interface HotEntry {
  /** SHA-256 of the secret that verified. */
  digest: Buffer;
  /** The store hash it verified against. */
  secretHash: string;
  expiresAt: number;
}

function nonNegativeInt(name: string, v: number | undefined, def: number): number {
  const n = v ?? def;
  if (!Number.isSafeInteger(n) || n < 0) throw new TypeError(`createClientAuthenticator: ${name} must be a non-negative integer, got ${String(v)}`);
  return n;
}

function digestOf(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

export function createClientAuthenticator(opts: ClientAuthenticatorOptions): ClientAuthenticator {
  if (typeof opts.getClient !== 'function') throw new TypeError('createClientAuthenticator: getClient must be a function');
  if (typeof opts.clock !== 'function') throw new TypeError('createClientAuthenticator: clock must be a function');
  const ttl = nonNegativeInt('cacheTtlMs', opts.cacheTtlMs, 60_000);
  const max = nonNegativeInt('cacheMaxEntries', opts.cacheMaxEntries, 1000);
  const clock = opts.clock;
  const hot = ttl > 0 && max > 0 ? new LRUCache<string, HotEntry>({ max }) : undefined;
  let dummy: Promise<string> | undefined;
  const dummyHash = () => (dummy ??= hashSecret(newSecret()));

  const refuse = (why: string) => new GatewayError('invalid_client', { why });

  return {
    async authenticate(creds) {
      if (tooLong(creds)) throw refuse('client id or secret is too long');
      const client = await opts.getClient(creds.id);
      if (!client) {
        // Same cost as a real check, so response time does not reveal which client ids exist.
        await verifySecret(creds.secret, await dummyHash());
        throw refuse(`unknown client_id ${clip(creds.id, 64)}`);
      }
      const digest = digestOf(creds.secret);
      const now = clock();
      const cached = hot?.get(client.id);
      if (cached && cached.expiresAt > now && cached.secretHash === client.secretHash && timingSafeEqual(cached.digest, digest)) {
        return client;
      }
      if (!(await verifySecret(creds.secret, client.secretHash))) {
        throw refuse(`wrong client_secret for client_id ${clip(client.id, 64)}`);
      }
      hot?.set(client.id, { digest, secretHash: client.secretHash, expiresAt: now + ttl });
      return client;
    },
    forget(id) {
      hot?.delete(id);
    },
    get cacheSize() {
      return hot?.size ?? 0;
    },
  };
}
