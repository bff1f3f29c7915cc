import { describe, it, expect } from 'vitest';
import type { JWTPayload } from 'jose';
import { mapClaims } from './claims.js';
import { tokensConfig } from '../../test/helpers/tokens.js';
import type { ClaimsConfig } from '../config/schema.js';

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
  { name: 'splits a scope string on any whitespace and drops empties', payload: { scope: '  a \t b  a ' }, want: { scopes: ['a', 'b'] } },
  { name: 'accepts scopes as an array of strings, ignoring other members', payload: { scope: ['a', 7, 'b', null] }, want: { scopes: ['a', 'b'] } },
  { name: 'yields no scopes when the claim is absent', payload: {}, want: { scopes: [] } },
  { name: 'yields no scopes for a non-string, non-array claim', payload: { scope: 5 }, want: { scopes: [] } },
  { name: 'reads scopes from a configured claim', payload: { scp: ['x'] }, claims: { scopes: 'scp' }, want: { scopes: ['x'] } },
  { name: 'maps scope values through the ref map', payload: { perms: 'r w' }, claims: { scopes: { claim: 'perms', map: { r: 'view_room' } } }, want: { scopes: ['view_room', 'w'] } },
  { name: 'turns numeric room and group ids into strings', payload: { room_id: 42, group_id: 7 }, want: { room: '42', group: '7' } },
  { name: 'ignores non-scalar ids', payload: { room_id: { a: 1 }, sub: true as unknown as string, group_id: Number.NaN }, want: { room: undefined, subject: undefined, group: undefined } },
  { name: 'gives a missing client type as the empty string', payload: {}, want: { clientType: '' } },
  { name: 'passes an unknown client type through as a string', payload: { client_type: 'robot' }, want: { clientType: 'robot' } },
  { name: 'passes a numeric client type through as a string', payload: { client_type: 3 }, want: { clientType: '3' } },
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
  { name: 'reads a dotted claim path', payload: { realm: { roles: ['a'] } }, claims: { scopes: 'realm.roles' }, want: { scopes: ['a'] } },
  { name: 'prefers a literal dotted claim name over the path', payload: { 'a.b': 'lit', a: { b: 'path' } }, claims: { subject: 'a.b' }, want: { subject: 'lit' } },
  { name: 'leaves iss undefined when it is not a string', payload: { iss: 5 as unknown as string }, want: { iss: undefined } },
  { name: 'leaves exp undefined when it is not a number', payload: { exp: 'soon' as unknown as number }, want: { exp: undefined } },
];

describe('mapClaims', () => {
  it.each(cases)('$name', ({ payload, claims: raw, want }) => {
    const p = mapClaims(payload, claims(raw), 'local');
    expect(p.issuerName).toBe('local');
    for (const [k, v] of Object.entries(want)) {
      expect(p[k as keyof typeof p], k).toEqual(v);
    }
  });
});
