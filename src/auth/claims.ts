/**
 * Claim mapping (SPEC §3): turns a verified JWT payload into a `Principal` using the issuer's
 * `claims` config. Pure.
 *
 * @example
 *   const p = mapClaims({ sub: 'u1', client_type: 'room', scope: 'send_notification', room_id: 42 },
 *                       issuer.claims, 'local');
 *   // p.clientType === 'room', p.scopes = ['send_notification'], p.room === '42'
 */
import type { JWTPayload } from 'jose';
import type { ClaimRefConfig, ClaimsConfig } from '../config/schema.js';
import type { Principal } from '../types.js';

/** The claim name a `ClaimRef` reads (the same name `mint` writes). */
export function claimName(ref: ClaimRefConfig): string {
  return typeof ref === 'string' ? ref : ref.claim;
}

/** The value map of a `ClaimRef` (`{}` for a plain name). */
export function claimMap(ref: ClaimRefConfig): Readonly<Record<string, string>> {
  return typeof ref === 'string' ? {} : ref.map;
}

/**
 * The client-type value map: the `client_type` ref's own `map` merged with `client_type_map`
 * (`client_type_map` wins on the same key).
 */
export function clientTypeMap(claims: ClaimsConfig): Readonly<Record<string, string>> {
  return { ...claimMap(claims.client_type), ...claims.client_type_map };
}

/**
 * Maps a verified payload onto a Principal:
 * - ids (subject, room, room name, group, token id): strings, or finite numbers as strings;
 * - client type: mapped through `clientTypeMap`; missing → ''; an unmapped value passes through
 *   as a string (authentic, but no route allows it → 403 later, never 401). An array claim (e.g.
 *   `aud`) yields its first mapped element, else its first string;
 * - scopes: a space-separated string or an array of strings, each mapped through the ref's map.
 * A claim name is looked up as-is, then as a dotted path (`realm_access.roles`).
 */
export function mapClaims(payload: JWTPayload, claims: ClaimsConfig, issuerName: string): Principal {
  return {
    issuerName,
    iss: typeof payload.iss === 'string' ? payload.iss : undefined,
    subject: idClaim(payload, claims.subject),
    clientType: clientType(payload, claims),
    scopes: scopes(payload, claims.scopes),
    room: idClaim(payload, claims.room),
    roomName: idClaim(payload, claims.room_name),
    group: idClaim(payload, claims.group),
    tokenId: idClaim(payload, claims.token_id),
    exp: typeof payload.exp === 'number' && Number.isFinite(payload.exp) ? payload.exp : undefined,
  };
}

function lookup(payload: JWTPayload, name: string): unknown {
  if (Object.hasOwn(payload, name)) return payload[name];
  if (!name.includes('.')) return undefined;
  let cur: unknown = payload;
  for (const part of name.split('.')) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur) || !Object.hasOwn(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function scalar(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return undefined;
}

function mapped(value: string, map: Readonly<Record<string, string>>): string {
  return Object.hasOwn(map, value) ? map[value]! : value;
}

function idClaim(payload: JWTPayload, ref: ClaimRefConfig): string | undefined {
  const v = scalar(lookup(payload, claimName(ref)));
  return v === undefined ? undefined : mapped(v, claimMap(ref));
}

function clientType(payload: JWTPayload, claims: ClaimsConfig): string {
  const map = clientTypeMap(claims);
  const raw = lookup(payload, claimName(claims.client_type));
  if (Array.isArray(raw)) {
    const values = raw.map(scalar).filter((s): s is string => s !== undefined);
    const hit = values.find((s) => Object.hasOwn(map, s));
    if (hit !== undefined) return map[hit]!;
    return values[0] ?? '';
  }
  if (typeof raw === 'boolean') return String(raw);
  const v = scalar(raw);
  return v === undefined ? '' : mapped(v, map);
}

function scopes(payload: JWTPayload, ref: ClaimRefConfig): string[] {
  const raw = lookup(payload, claimName(ref));
  const map = claimMap(ref);
  let list: string[];
  if (typeof raw === 'string') list = raw.split(/\s+/);
  else if (Array.isArray(raw)) list = raw.filter((s): s is string => typeof s === 'string');
  else return [];
  const out: string[] = [];
  for (const s of list) {
    if (s === '') continue;
    const m = mapped(s, map);
    if (!out.includes(m)) out.push(m);
  }
  return out;
}
