import { describe, it, expect } from 'vitest';
import type { JWTPayload } from 'jose';
import { inexactReason, mapClaims } from './claims.js';
import { tokensConfig } from '../../test/helpers/tokens.js';
import type { ClaimsConfig } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import { NOT_REVOKED_AT } from '../types.js';

/** ClaimsConfig exactly as the schema fills it in (defaults included). */
function claims(raw: Record<string, unknown> = {}): ClaimsConfig {
  return tokensConfig({ issuers: [{ name: 'x', algorithms: ['HS256'], secrets: ['s'.repeat(32)], claims: raw }] }).issuers[0]!.claims;
}

interface Case {
  name: string;
  payload: JWTPayload;
  claims?: Record<string, unknown>;
  want: Record<string, unknown>;
}

const cases: Case[] = [
  {
    name: 'maps the default claim names',
    payload: { iss: 'me', sub: 'u1', client_type: 'user', scope: 'view_group view_room', room_id: 'r1', room_name: 'Ops', group_id: 'g1', jti: 'j1', exp: 100 },
    want: { iss: 'me', subject: 'u1', clientType: 'user', scopes: ['view_group', 'view_room'], room: 'r1', roomName: 'Ops', group: 'g1', tokenId: 'j1', exp: 100 },
  },
  { name: 'splits a scope string on single spaces and drops empty items and duplicates', payload: { scope: ' a  b a ' }, want: { scopes: ['a', 'b'] } },
  { name: 'accepts scopes as an array of strings', payload: { scope: ['a', 'b', 'a', ''] }, want: { scopes: ['a', 'b'] } },
  { name: 'yields no scopes when the claim is absent', payload: {}, want: { scopes: [] } },
  { name: 'yields no scopes for an empty string', payload: { scope: '' }, want: { scopes: [] } },
  { name: 'yields no scopes for an empty array', payload: { scope: [] }, want: { scopes: [] } },
  { name: 'reads scopes from a configured claim', payload: { scp: ['x'] }, claims: { scopes: 'scp' }, want: { scopes: ['x'] } },
  { name: 'maps scope values through the ref map', payload: { perms: 'r w' }, claims: { scopes: { claim: 'perms', map: { r: 'view_room' } } }, want: { scopes: ['view_room', 'w'] } },
  { name: 'keeps long and non-ASCII scopes exactly', payload: { scope: 'view_group_and_more_than_13 ünïcødé' }, want: { scopes: ['view_group_and_more_than_13', 'ünïcødé'] } },
  { name: 'turns integer room and group ids into decimal strings', payload: { room_id: 42, group_id: 7 }, want: { room: '42', group: '7' } },
  { name: 'keeps 0 and negative integers', payload: { room_id: 0, group_id: -5 }, want: { room: '0', group: '-5' } },
  { name: 'keeps the largest safe integer', payload: { room_id: Number.MAX_SAFE_INTEGER }, want: { room: '9007199254740991' } },
  { name: 'reads 1e3 (the JSON number 1000) as the integer 1000', payload: JSON.parse('{"room_id":1e3}') as JWTPayload, want: { room: '1000' } },
  { name: 'keeps a subject of exactly 1024 bytes', payload: { sub: 'a'.repeat(1024) }, want: { subject: 'a'.repeat(1024) } },
  { name: 'keeps a multi-byte subject of exactly 1024 bytes', payload: { sub: 'é'.repeat(512) }, want: { subject: 'é'.repeat(512) } },
  { name: 'keeps inner spaces and non-ASCII in a room name', payload: { room_name: 'Ops – Général 🚀' }, want: { roomName: 'Ops – Général 🚀' } },
  { name: 'keeps a ZWJ emoji sequence', payload: { room_name: '👨‍👩‍👧' }, want: { roomName: '👨‍👩‍👧' } },
  { name: 'leaves absent ids absent', payload: {}, want: { subject: undefined, room: undefined, roomName: undefined, group: undefined, tokenId: undefined, iss: undefined } },
  { name: 'maps an id through its ref map', payload: { org: 'acme' }, claims: { group: { claim: 'org', map: { acme: '17' } } }, want: { group: '17' } },
  { name: 'gives a missing client type as the empty string', payload: {}, want: { clientType: '' } },
  { name: 'gives an empty client type as the empty string', payload: { client_type: '' }, want: { clientType: '' } },
  { name: 'passes an unknown client type through as a string', payload: { client_type: 'robot' }, want: { clientType: 'robot' } },
  { name: 'maps client types through client_type_map', payload: { client_type: 'client' }, claims: { client_type_map: { client: 'group' } }, want: { clientType: 'group' } },
  {
    name: 'maps client types through a {claim, map} ref',
    payload: { kind: 'person' },
    claims: { client_type: { claim: 'kind', map: { person: 'user' } } },
    want: { clientType: 'user' },
  },
  {
    name: 'lets client_type_map win over the ref map',
    payload: { kind: 'x' },
    claims: { client_type: { claim: 'kind', map: { x: 'user' } }, client_type_map: { x: 'room' } },
    want: { clientType: 'room' },
  },
  {
    name: 'takes the first mapped element of an array client-type claim (aud)',
    payload: { aud: ['api', 'client'] },
    claims: { client_type: { claim: 'aud', map: { client: 'group', user: 'user' } } },
    want: { clientType: 'group' },
  },
  {
    name: 'passes the first element of an unmapped array client-type claim through',
    payload: { aud: ['api', 'other'] },
    claims: { client_type: { claim: 'aud', map: { client: 'group' } } },
    want: { clientType: 'api' },
  },
  { name: 'gives an empty array client type as the empty string', payload: { aud: [] }, claims: { client_type: 'aud' }, want: { clientType: '' } },
  { name: 'reads a dotted claim path', payload: { realm: { roles: ['a'] } }, claims: { scopes: 'realm.roles' }, want: { scopes: ['a'] } },
  { name: 'treats a dotted path through a non-object as absent', payload: { realm: 'x' }, claims: { scopes: 'realm.roles' }, want: { scopes: [] } },
  { name: 'prefers a literal dotted claim name over the path', payload: { 'a.b': 'lit', a: { b: 'path' } }, claims: { subject: 'a.b' }, want: { subject: 'lit' } },
  { name: 'leaves exp undefined when it is not a number', payload: { exp: 'soon' as unknown as number }, want: { exp: undefined } },
  { name: 'leaves tokenHash for the verifier to set', payload: { sub: 'u1' }, want: { tokenHash: undefined } },
];

describe('mapClaims: exact claims are carried over unchanged', () => {
  it.each(cases)('$name', ({ payload, claims: raw, want }) => {
    const p = mapClaims(payload, claims(raw), 'local');
    expect(p.issuerName).toBe('local');
    for (const [k, v] of Object.entries(want)) {
      expect(p[k as keyof typeof p], k).toEqual(v);
    }
  });
});

describe('mapClaims: one object shape for every principal', () => {
  it('creates the revocation stamp with the principal, unset, and keeps it out of JSON', () => {
    const a = mapClaims({ sub: 'u1', scope: 'send_notification', jti: 'j1' }, claims({}), 'local');
    const b = mapClaims({ sub: 'u2' }, claims({}), 'other');
    // The same own keys in the same order, the stamp included: stamping a cached principal later
    // (core/decide.ts) fills a slot it already has instead of adding a property.
    expect(Reflect.ownKeys(a)).toEqual(Reflect.ownKeys(b));
    expect(Reflect.ownKeys(a)).toContain(NOT_REVOKED_AT);
    expect(a[NOT_REVOKED_AT]).toBeUndefined();
    a[NOT_REVOKED_AT] = 3;
    expect(Reflect.ownKeys(a)).toEqual(Reflect.ownKeys(b));
    expect(Object.values(JSON.parse(JSON.stringify(a)) as object)).not.toContain(3);
    expect(Object.keys(a)).toEqual(Object.keys(b));
  });
});

/** Every way a present value can fail to be an exact identity (SPEC §3). */
const badIdValues: Array<[string, unknown]> = [
  ['an array', ['42']],
  ['an empty array', []],
  ['an object', { id: 42 }],
  ['an empty object', {}],
  ['a nested object', { a: { b: 'c' } }],
  ['true', true],
  ['false', false],
  ['null', null],
  ['a float', 42.5],
  ['-0', -0],
  ['2**53 (not a safe integer)', 2 ** 53],
  ['-(2**53)', -(2 ** 53)],
  ['1e21 (String() would write an exponent)', 1e21],
  ['a tiny float', 1e-7],
  ['NaN', Number.NaN],
  ['Infinity', Number.POSITIVE_INFINITY],
  ['the empty string', ''],
  ['a trailing NUL', 'admin\u0000'],
  ['a BEL inside', 'ad\u0007min'],
  ['a newline inside', 'admin\nX-Evil: 1'],
  ['a CR inside', 'ad\rmin'],
  ['a tab inside', 'ad\tmin'],
  ['ESC', '\u001badmin'],
  ['DEL', 'admin\u007f'],
  ['a C1 control (U+0085 NEL)', 'ad\u0085min'],
  ['a C1 control (U+009B CSI)', 'admin\u009b'],
  ['U+2028 LINE SEPARATOR', 'ad\u2028min'],
  ['U+2029 PARAGRAPH SEPARATOR', 'admin\u2029'],
  ['a lone high surrogate', 'admin\ud800'],
  ['a lone low surrogate', '\udc00admin'],
  ['reversed surrogates', 'a\udc00\ud800b'],
  ['leading spaces', '  admin'],
  ['trailing spaces', 'admin  '],
  ['surrounding spaces', '  admin  '],
  ['a leading NBSP', '\u00a0admin'],
  ['a trailing ideographic space', 'admin\u3000'],
  ['a trailing em space', 'admin\u2003'],
  ['a leading BOM', '\ufeffadmin'],
  ['only a space', ' '],
  ['1025 ASCII bytes', 'a'.repeat(1025)],
  ['1026 bytes of é (513 characters)', 'é'.repeat(513)],
  ['two long values that differ only after byte 1024', `${'a'.repeat(1024)}X`],
  ['1028 bytes of emoji', '🚀'.repeat(257)],
];

const idClaims: Array<[string, string]> = [
  ['sub', 'subject'],
  ['room_id', 'room'],
  ['room_name', 'room name'],
  ['group_id', 'group'],
  ['jti', 'token id'],
  ['iss', 'issuer'],
];

function expectMalformed(payload: JWTPayload, raw: Record<string, unknown> | undefined, claim: string, value?: unknown): GatewayError {
  let err: unknown;
  try {
    mapClaims(payload, claims(raw), 'local');
  } catch (e) {
    err = e;
  }
  expect(err, 'expected token_malformed').toBeInstanceOf(GatewayError);
  const g = err as GatewayError;
  expect(g.code).toBe('token_malformed');
  expect(g.status).toBe(401);
  expect(g.detail.tokenPresented).toBe(true);
  expect(g.detail.why).toContain(`"${claim}"`);
  // The operator message names the claim, never its value.
  if (typeof value === 'string' && value.trim().length > 3) expect(g.detail.why).not.toContain(value.trim());
  return g;
}

describe('mapClaims: a present id claim that is not exact makes the token token_malformed', () => {
  const table = idClaims.flatMap(([claim, role]) => badIdValues.map(([what, value]) => ({ claim, role, what, value })));
  it.each(table)('$claim ($role) that is $what', ({ claim, role, value }) => {
    const g = expectMalformed({ [claim]: value } as JWTPayload, undefined, claim, value);
    expect(g.detail.why).toContain(role);
  });

  it('refuses an inexact value read through a configured claim name and a dotted path', () => {
    expectMalformed({ user: { id: 'root\u0000' } }, { subject: 'user.id' }, 'user.id');
    expectMalformed({ rid: [1, 2] }, { room: { claim: 'rid', map: { '1': 'one' } } }, 'rid');
  });

  it('checks every claim, not just the first: a clean subject does not hide a bad room', () => {
    expectMalformed({ sub: 'alice', room_id: { id: 1 } }, undefined, 'room_id');
    expectMalformed({ sub: 'alice', room_id: 1, jti: ['a'] as unknown as string }, undefined, 'jti');
  });
});

describe('mapClaims: client type', () => {
  const bad: Array<[string, unknown]> = [
    ['a number', 3],
    ['true', true],
    ['null', null],
    ['an object', { type: 'user' }],
    ['a string with a NUL', 'user\u0000'],
    ['a string with trailing space', 'user '],
    ['a string with a C1 control', 'us\u0085er'],
    ['an array with a non-string member', ['user', 1]],
    ['an array whose first element has a control character', ['us\u0007er']],
    ['an over-long string', 'u'.repeat(1025)],
  ];
  it.each(bad)('refuses a client type that is %s', (_what, value) => {
    expectMalformed({ client_type: value } as JWTPayload, undefined, 'client_type');
  });

  it('accepts an aud array whose unchosen members are odd but strings', () => {
    const p = mapClaims({ aud: ['client', ' x '] }, claims({ client_type: { claim: 'aud', map: { client: 'group' } } }), 'local');
    expect(p.clientType).toBe('group');
  });
});

describe('mapClaims: scopes', () => {
  const bad: Array<[string, unknown]> = [
    ['an element with a space ("x admin_group")', ['view_room', 'x admin_group']],
    ['an element with a tab', ['a\tb']],
    ['an element with a newline', ['a\nadmin_group']],
    ['an element with a NUL', ['admin_group\u0000']],
    ['an element with DEL', ['a\u007f']],
    ['an element with a C1 control', ['a\u0085b']],
    ['an element with NBSP', ['a\u00a0b']],
    ['an element with U+2028', ['a\u2028b']],
    ['an element with a lone surrogate', ['a\ud800']],
    ['an array with a number', ['a', 7]],
    ['an array with null', ['a', null]],
    ['an array with a nested array', ['a', ['admin_group']]],
    ['an array with an object', [{ scope: 'admin_group' }]],
    ['a string with a tab', 'view_room\tadmin_group'],
    ['a string with a newline', 'view_room\nadmin_group'],
    ['a string with CR LF', 'view_room\r\nadmin_group'],
    ['a string with a vertical tab', 'a\u000bb'],
    ['a string with a form feed', 'a\u000cb'],
    ['a string with NBSP', 'view_room\u00a0admin_group'],
    ['a string with an ideographic space', 'a\u3000b'],
    ['a string with U+2029', 'a\u2029b'],
    ['a string with a NUL', 'view_room\u0000'],
    ['a number', 5],
    ['true', true],
    ['null', null],
    ['an object', { 0: 'admin_group' }],
  ];
  it.each(bad)('refuses a scope claim that is %s', (_what, value) => {
    expectMalformed({ scope: value } as JWTPayload, undefined, 'scope');
  });
});

describe('inexactReason', () => {
  it.each([
    ['admin', null],
    ['', 'is empty'],
    ['a\u0000', 'contains a control character'],
    ['a\ud800', 'contains a lone surrogate (not valid UTF-8)'],
    [' a', 'has leading or trailing whitespace'],
    ['a'.repeat(1025), 'is longer than 1024 bytes'],
  ])('%j → %s', (s, want) => {
    expect(inexactReason(s)).toBe(want);
  });
});
