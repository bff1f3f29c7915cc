/**
 * Token minting (`scopegate mint`, the demo, tests): signs a JWT that the same issuer config
 * verifies, writing claims under the issuer's configured claim names.
 *
 * @example
 *   const token = await mintToken(config.tokens.issuers[0], { kind: 'room-notification', room: '42' });
 *   const t2 = await mintToken(issuer, { kind: 'personal', sub: 'alice', scopes: ['view_group'], ttl: '30d' });
 *   parseTtl('15m'); // 900; parseTtl('never') → null
 */
import { randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT, type JWTPayload } from 'jose';
import type { ClaimRefConfig, ClientType, IssuerConfig } from '../config/schema.js';
import { HMAC_ALGORITHMS } from '../config/schema.js';
import { systemClock, type Clock } from '../types.js';
import { claimMap, claimName, clientTypeMap } from './claims.js';
import { algorithmsForKey, loadPrivateKey } from './keys.js';

export type TokenKind = 'addon' | 'user' | 'personal' | 'room-notification';

export interface TokenKindDefaults {
  clientType: ClientType;
  scopes: string[];
  /** Default lifetime, in `parseTtl` syntax. */
  ttl: string;
  /** One line for humans (`scopegate mint --help`, the demo). */
  note: string;
}

/** The token kinds of the seed system (SPEC §3) and what `mint` gives each by default. */
export const TOKEN_KINDS: Readonly<Record<TokenKind, TokenKindDefaults>> = {
  addon: {
    clientType: 'group',
    scopes: ['send_notification', 'view_group', 'view_room'],
    ttl: '1h',
    note: 'add-on token: a group client (global install); for a room install use --client-type room --room R',
  },
  user: {
    clientType: 'user',
    scopes: ['view_group', 'view_room', 'view_messages', 'send_message', 'send_notification'],
    ttl: '1h',
    note: 'user (OAuth) token: a user client, short-lived; refresh it via your IdP',
  },
  personal: {
    clientType: 'user',
    scopes: ['view_group', 'view_room', 'view_messages', 'send_message', 'send_notification'],
    ttl: '365d',
    note: 'personal access token: a user client, long-lived',
  },
  'room-notification': {
    clientType: 'room',
    scopes: ['send_notification'],
    ttl: '365d',
    note: 'room notification token: a room client bound to one room (--room), send_notification only',
  },
};

const TTL = /^([1-9][0-9]{0,9})(s|m|h|d)$/;
const UNIT_S = { s: 1, m: 60, h: 3600, d: 86_400 } as const;

/**
 * Parses a token lifetime: `<positive integer><s|m|h|d>` → seconds, `never` → null.
 * Throws TypeError for anything else.
 */
export function parseTtl(s: string): number | null {
  if (s === 'never') return null;
  const m = TTL.exec(s);
  if (!m) {
    throw new TypeError(`invalid ttl "${s}": use a positive whole number followed by s, m, h or d (30s, 15m, 1h, 365d), or "never"`);
  }
  return Number(m[1]) * UNIT_S[m[2] as keyof typeof UNIT_S];
}

export interface MintOptions {
  /** Sets defaults for client type, scopes and ttl (`TOKEN_KINDS`). */
  kind?: TokenKind | undefined;
  sub?: string | undefined;
  /** Overrides the kind's client type (default without a kind: `user`). Any string is written. */
  clientType?: string | undefined;
  /** Overrides the kind's scopes (default without a kind: none). */
  scopes?: readonly string[] | undefined;
  room?: string | undefined;
  roomName?: string | undefined;
  group?: string | undefined;
  /** Lifetime (`parseTtl`), default the kind's, else 1h. `never` writes no `exp`. */
  ttl?: string | undefined;
  /** Token id (`jti`); random UUID when absent. */
  jti?: string | undefined;
  clock?: Clock | undefined;
  /** Directory a relative `private_key_file` resolves against. */
  baseDir?: string | undefined;
}

/**
 * Signs a token for `issuer` with its first secret (first allowed HS algorithm) or its
 * `private_key_file` (first allowed algorithm the key fits). Sets `iss` (when the issuer has one),
 * `aud` (its first audience), `iat`, `exp` (unless ttl `never`), `jti`, and the mapped claims.
 */
export async function mintToken(issuer: IssuerConfig, opts: MintOptions = {}): Promise<string> {
  const kind = opts.kind;
  if (kind !== undefined && !Object.hasOwn(TOKEN_KINDS, kind)) {
    throw new TypeError(`unknown token kind "${String(kind)}": expected one of ${Object.keys(TOKEN_KINDS).join(', ')}`);
  }
  const defaults = kind ? TOKEN_KINDS[kind] : undefined;
  if (kind === 'room-notification' && !opts.room) {
    throw new TypeError('a room-notification token is bound to a room: give one (--room)');
  }
  const ttlS = parseTtl(opts.ttl ?? defaults?.ttl ?? '1h');
  if (ttlS === null && issuer.require_exp) {
    throw new TypeError(`ttl "never" makes a token without exp, which issuer "${issuer.name}" rejects (require_exp is true)`);
  }
  const { key, alg, kid } = await signingKey(issuer, opts.baseDir);

  const nowS = Math.floor((opts.clock ?? systemClock)() / 1000);
  const jti = opts.jti ?? randomUUID();
  const payload: JWTPayload = { iat: nowS, jti };
  if (issuer.issuer !== undefined) payload.iss = issuer.issuer;
  const aud = Array.isArray(issuer.audience) ? issuer.audience[0] : issuer.audience;
  if (aud !== undefined) payload.aud = aud;
  if (ttlS !== null) payload.exp = nowS + ttlS;

  const c = issuer.claims;
  const put = (ref: ClaimRefConfig, value: string | undefined, map: Readonly<Record<string, string>> = claimMap(ref)) => {
    if (value === undefined) return;
    const name = claimName(ref);
    const raw = unmap(value, map, name);
    // A claim mapped onto `aud` (an IdP that encodes the client type there) joins the audience.
    if (name === 'aud' && payload.aud !== undefined && payload.aud !== raw) {
      payload.aud = [...(Array.isArray(payload.aud) ? payload.aud : [payload.aud]), raw];
    } else {
      payload[name] = raw;
    }
  };
  put(c.subject, opts.sub);
  put(c.client_type, opts.clientType ?? defaults?.clientType ?? 'user', clientTypeMap(c));
  const scopes = opts.scopes ?? defaults?.scopes ?? [];
  if (scopes.length) {
    const map = claimMap(c.scopes);
    payload[claimName(c.scopes)] = scopes.map((s) => unmap(s, map, claimName(c.scopes))).join(' ');
  }
  put(c.room, opts.room);
  put(c.room_name, opts.roomName);
  put(c.group, opts.group);
  put(c.token_id, jti);

  return new SignJWT(payload)
    .setProtectedHeader({ alg, typ: 'JWT', ...(kid !== undefined ? { kid } : {}) })
    .sign(key);
}

/** The raw claim value that maps to `value` (reverse of a `{claim, map}`), or `value` itself. */
function unmap(value: string, map: Readonly<Record<string, string>>, claim: string): string {
  const raw = Object.keys(map).find((k) => map[k] === value);
  if (raw !== undefined) return raw;
  if (Object.hasOwn(map, value)) {
    throw new TypeError(`"${value}" cannot be written to claim "${claim}": the issuer's map turns "${value}" into "${map[value]}"`);
  }
  return value;
}

async function signingKey(issuer: IssuerConfig, baseDir: string | undefined): Promise<{ key: Uint8Array | KeyObject; alg: string; kid?: string | undefined }> {
  const secret = issuer.secrets?.[0];
  if (secret !== undefined) {
    const alg = issuer.algorithms.find((a) => HMAC_ALGORITHMS.includes(a));
    if (alg === undefined) throw new Error(`issuer "${issuer.name}" has secrets but allows no HS algorithm`);
    return { key: new TextEncoder().encode(secret), alg };
  }
  if (issuer.private_key_file !== undefined) {
    const { key, kid } = await loadPrivateKey(issuer.private_key_file, `issuer "${issuer.name}" private_key_file`, baseDir);
    const alg = algorithmsForKey(key, issuer.algorithms)[0];
    if (alg === undefined) {
      throw new Error(`issuer "${issuer.name}": its private key (${key.asymmetricKeyType ?? 'unknown'}) fits none of its algorithms (${issuer.algorithms.join(', ')})`);
    }
    return { key, alg, kid };
  }
  throw new Error(`issuer "${issuer.name}" has no signing key (needs secrets or private_key_file)`);
}
