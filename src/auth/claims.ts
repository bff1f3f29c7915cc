/**
 * Claim mapping (SPEC §3): turns a verified JWT payload into a `Principal` using the issuer's
 * `claims` config. Pure.
 *
 * Claims must be representable exactly: every value that becomes an identity (subject, room, room
 * name, group, token id, issuer, client type, each scope) is either carried over unchanged or the
 * token is refused with 401 `token_malformed` — never trimmed, cut, stringified from an object or
 * dropped, since a dropped room claim would unbind the token and a rewritten subject would be
 * somebody else upstream. An absent claim stays absent.
 *
 * @example
 *   const p = mapClaims({ sub: 'u1', client_type: 'room', scope: 'send_notification', room_id: 42 },
 *                       issuer.claims, 'local');
 *   // p.clientType === 'room', p.scopes = ['send_notification'], p.room === '42'
 *
 *   mapClaims({ sub: 'admin\u0000' }, issuer.claims, 'local');
 *   // throws GatewayError('token_malformed', { why: 'claim "sub" (subject) contains a control character …' })
 */
import type { JWTPayload } from 'jose';
import type { ClaimRefConfig, ClaimsConfig } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import { NOT_REVOKED_AT, type Principal } from '../types.js';
import { clip } from '../clip.js';

/** Longest identity value accepted, UTF-8 bytes (SPEC §3). */
export const MAX_CLAIM_BYTES = 1024;

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
 * Maps a verified payload onto a Principal, or throws `GatewayError('token_malformed')` whose
 * `why` names the claim (never its value):
 * - ids (subject, room, room name, group, token id) and `iss`: a non-empty string, or a safe
 *   integer (written in decimal, so `42` → `'42'`; `-0`, `42.5`, `2**53`, `1e21`, NaN are refused),
 *   without control characters (C0, DEL, C1, U+2028/U+2029), lone surrogates or surrounding
 *   whitespace, at most 1024 UTF-8 bytes; then mapped through the ref's map. Anything else that is
 *   present (object, array, boolean, null) is refused;
 * - client type: a clean string mapped through `clientTypeMap` (an unmapped value passes through:
 *   authentic, but no route allows it → 403 later). An array claim of strings (e.g. `aud`) yields
 *   its first mapped element, else its first element. Missing → '';
 * - scopes: a string split on single spaces (RFC 6749 §3.3; tab, newline and other whitespace are
 *   refused), or an array of strings none of which holds whitespace; each mapped through the
 *   ref's map, duplicates and empty items dropped.
 * A claim name is looked up as-is, then as a dotted path (`realm_access.roles`).
 */
export function mapClaims(payload: JWTPayload, claims: ClaimsConfig, issuerName: string): Principal {
  return {
    issuerName,
    iss: idValue(payload.iss, 'iss', 'issuer'),
    subject: idClaim(payload, claims.subject, 'subject'),
    clientType: clientType(payload, claims),
    scopes: scopes(payload, claims.scopes),
    room: idClaim(payload, claims.room, 'room'),
    roomName: idClaim(payload, claims.room_name, 'room name'),
    group: idClaim(payload, claims.group, 'group'),
    tokenId: idClaim(payload, claims.token_id, 'token id'),
    exp: typeof payload.exp === 'number' && Number.isFinite(payload.exp) ? payload.exp : undefined,
    tokenHash: undefined,
    [NOT_REVOKED_AT]: undefined,
  };
}

/**
 * Why `s` is not an exact identity value, or null when it is: empty, a control character (C0,
 * DEL, C1, U+2028/U+2029), a lone surrogate, leading or trailing whitespace, over `maxBytes`.
 */
export function inexactReason(s: string, maxBytes: number = MAX_CLAIM_BYTES): string | null {
  if (s === '') return 'is empty';
  if (CONTROL.test(s)) return 'contains a control character';
  if (LONE_SURROGATE.test(s)) return 'contains a lone surrogate (not valid UTF-8)';
  if (EDGE_SPACE.test(s)) return 'has leading or trailing whitespace';
  if (utf8Bytes(s) > maxBytes) return `is longer than ${maxBytes} bytes`;
  return null;
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const EDGE_SPACE = /^\s|\s$/;
const ANY_SPACE = /\s/;
const OTHER_SPACE = /(?! )\s/;

function utf8Bytes(s: string): number {
  // Fast path: every UTF-16 unit is at most 3 UTF-8 bytes.
  if (s.length * 3 <= MAX_CLAIM_BYTES) return s.length;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4; // a (checked) surrogate pair: one 4-byte character
      i++;
    } else n += 3;
  }
  return n;
}

function malformed(claim: string, role: string, reason: string): GatewayError {
  return new GatewayError('token_malformed', { tokenPresented: true, why: `claim "${clip(claim, 64)}" (${role}) ${reason}` });
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

function mapped(value: string, map: Readonly<Record<string, string>>): string {
  return Object.hasOwn(map, value) ? map[value]! : value;
}

/** An id claim's exact string form; undefined when absent; throws when present but inexact. */
function idValue(v: unknown, claim: string, role: string): string | undefined {
  if (v === undefined) return undefined;
  let s: string;
  if (typeof v === 'string') s = v;
  else if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || Object.is(v, -0)) throw malformed(claim, role, 'is a number but not a safe integer');
    s = String(v);
  } else throw malformed(claim, role, `is ${kindOf(v)}, not a string or integer`);
  const why = inexactReason(s);
  if (why !== null) throw malformed(claim, role, why);
  return s;
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return `a ${typeof v}`;
}

function idClaim(payload: JWTPayload, ref: ClaimRefConfig, role: string): string | undefined {
  const name = claimName(ref);
  const v = idValue(lookup(payload, name), name, role);
  return v === undefined ? undefined : mapped(v, claimMap(ref));
}

function clientType(payload: JWTPayload, claims: ClaimsConfig): string {
  const name = claimName(claims.client_type);
  const map = clientTypeMap(claims);
  const raw = lookup(payload, name);
  if (raw === undefined) return '';
  let value: string;
  if (Array.isArray(raw)) {
    // An IdP's `aud` list read as the client type: the first element the map knows, else the first.
    if (!raw.every((s) => typeof s === 'string')) throw malformed(name, 'client type', 'is an array with a member that is not a string');
    const list = raw as string[];
    const hit = list.find((s) => Object.hasOwn(map, s));
    if (hit !== undefined) return map[hit]!;
    if (list.length === 0) return '';
    value = list[0]!;
  } else if (typeof raw === 'string') {
    if (raw === '') return '';
    value = raw;
  } else {
    throw malformed(name, 'client type', `is ${kindOf(raw)}, not a string`);
  }
  const why = inexactReason(value);
  if (why !== null) throw malformed(name, 'client type', why);
  return mapped(value, map);
}

function scopes(payload: JWTPayload, ref: ClaimRefConfig): string[] {
  const name = claimName(ref);
  const raw = lookup(payload, name);
  if (raw === undefined) return [];
  let list: string[];
  const split = typeof raw === 'string';
  if (typeof raw === 'string') {
    // RFC 6749 §3.3: scope-tokens separated by single spaces. Any other whitespace would be split
    // by some upstream and not by another, so it is refused rather than guessed at.
    if (OTHER_SPACE.test(raw)) throw malformed(name, 'scopes', 'holds whitespace other than single spaces');
    if (CONTROL.test(raw)) throw malformed(name, 'scopes', 'holds a scope containing a control character');
    if (LONE_SURROGATE.test(raw)) throw malformed(name, 'scopes', 'holds a scope containing a lone surrogate');
    list = raw.split(' ');
  } else if (Array.isArray(raw)) {
    if (!raw.every((s) => typeof s === 'string')) throw malformed(name, 'scopes', 'is an array with a member that is not a string');
    list = raw as string[];
  } else {
    throw malformed(name, 'scopes', `is ${kindOf(raw)}, not a space-separated string or an array of strings`);
  }
  const map = claimMap(ref);
  const out: string[] = [];
  const seen = new Set<string>();
  let long = false;
  const hasMap = Object.keys(map).length > 0;
  for (const s of list) {
    if (s === '') continue;
    if (!split) {
      if (ANY_SPACE.test(s)) throw malformed(name, 'scopes', 'holds a scope containing whitespace');
      if (CONTROL.test(s)) throw malformed(name, 'scopes', 'holds a scope containing a control character');
      if (LONE_SURROGATE.test(s)) throw malformed(name, 'scopes', 'holds a scope containing a lone surrogate');
    }
    const m = hasMap ? mapped(s, map) : s;
    if (seen.has(m)) continue;
    seen.add(m);
    out.push(m);
    if (m.length >= 13) long = true;
  }
  // V8 represents a substring of 13 characters or more as a slice that keeps its whole parent
  // alive: a cached principal would retain the entire scope claim (duplicates and all), and the
  // token cache's byte estimate would under-count it. One JSON round trip makes every item its
  // own string (JSON.parse never slices), once per verification, only when needed.
  return split && long ? (JSON.parse(JSON.stringify(out)) as string[]) : out;
}
