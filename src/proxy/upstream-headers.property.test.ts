/**
 * Properties of buildUpstreamHeaders (SPEC §5) over arbitrary header records: whatever the client
 * sends, the upstream gets no identity header but the gateway's own (names compared as CGI/WSGI
 * do: case-folded, `_` read as `-`), no underscore name unless `keep`, no routing override, and
 * forwarding headers only from a trusted peer. It never throws.
 *
 * @example
 *   npx vitest run src/proxy/upstream-headers.property.test.ts
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { IncomingHttpHeaders } from 'node:http';
import type { Principal } from '../types.js';
import { CLIENT_ADDRESS_HEADERS, ROUTING_OVERRIDE_HEADERS, buildUpstreamHeaders, foldHeaderName, identityHeaders } from './upstream-headers.js';

/** Header names built from the dangerous parts, in every spelling a client can choose. */
const NAME_PARTS = [
  'x', 'auth', 'subject', 'scopes', 'room', 'user', 'forwarded', 'for', 'host', 'proto', 'real', 'ip', 'original', 'url', 'rewrite',
  'http', 'method', 'override', 'prefix', 'request', 'id', 'authorization', 'connection', 'transfer', 'encoding', 'content', 'length',
  'uri', '__proto__', 'constructor', 'a',
];
const respell = (s: string, mode: number) => (mode === 0 ? s : mode === 1 ? s.toUpperCase() : s.replace(/^./, (c) => c.toUpperCase()));
const headerName = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.array(fc.tuple(fc.constantFrom(...NAME_PARTS), fc.nat(2)), { minLength: 1, maxLength: 4 }), fc.array(fc.constantFrom('-', '_'), { minLength: 3, maxLength: 3 })).map(([parts, seps]) => parts.map(([p, m], i) => (i ? seps[(i - 1) % 3] : '') + respell(p, m)).join('')) },
  { weight: 1, arbitrary: fc.constantFrom(...ROUTING_OVERRIDE_HEADERS, ...CLIENT_ADDRESS_HEADERS, 'x-forwarded-for', 'forwarded', 'x-auth-subject', 'X_Auth_Subject', 'x-auth_subject') },
  { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 16 }) },
);
const headerValue = fc.oneof(fc.string({ maxLength: 20 }), fc.array(fc.string({ maxLength: 8 }), { minLength: 1, maxLength: 3 }), fc.constant(undefined));
const headers = fc.dictionary(headerName, headerValue, { maxKeys: 12 }) as fc.Arbitrary<IncomingHttpHeaders>;

const principalArb: fc.Arbitrary<Principal | undefined> = fc.option(
  fc.record({
    issuerName: fc.constant('local'),
    iss: fc.constant('scopegate-test'),
    subject: fc.string({ minLength: 1, maxLength: 12 }),
    clientType: fc.constantFrom('group', 'room', 'user'),
    scopes: fc.array(fc.constantFrom('view_group', 'send_notification'), { maxLength: 2 }),
    room: fc.option(fc.constantFrom('42', 'ops'), { nil: undefined }),
  }),
  { nil: undefined },
);
const options = fc.record({
  identityPrefix: fc.constantFrom('X-Auth-', 'x-auth-', 'X-User-'),
  principal: principalArb,
  underscoreHeaders: fc.constantFrom('drop' as const, 'keep' as const, undefined),
  trustedPeer: fc.constantFrom(true, false, undefined),
  proto: fc.constantFrom('http' as const, 'https' as const),
});

const FORWARDING = (folded: string) => folded === 'forwarded' || folded.startsWith('x-forwarded-') || CLIENT_ADDRESS_HEADERS.has(folded);
const OURS = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']);

describe('buildUpstreamHeaders on arbitrary headers', () => {
  it('never throws, and lets no identity look-alike, underscore name, routing override or untrusted forwarding header through', () => {
    fc.assert(
      fc.property(headers, options, (incoming, o) => {
        const out = buildUpstreamHeaders(incoming, { ...o, forwardToken: false, requestId: 'r', clientIp: '10.0.0.7' });
        const prefix = o.identityPrefix.toLowerCase();
        const own = o.principal ? identityHeaders(o.principal, prefix) : {};
        const problems: string[] = [];
        const seen = new Set<string>();
        if (Object.getPrototypeOf(out) !== Object.prototype) problems.push('prototype replaced');
        for (const [name, value] of Object.entries(out)) {
          const folded = foldHeaderName(name);
          // Only the gateway's own identity headers, exactly as it writes them.
          if (folded.startsWith(prefix) && !(Object.hasOwn(own, name) && own[name] === value)) problems.push(`identity look-alike ${name}`);
          if (o.underscoreHeaders !== 'keep' && name.includes('_')) problems.push(`underscore name ${name}`);
          if (ROUTING_OVERRIDE_HEADERS.has(folded)) problems.push(`routing override ${name}`);
          if (o.trustedPeer !== true && FORWARDING(folded) && !OURS.has(name)) problems.push(`untrusted forwarding header ${name}`);
          // No two names reach the upstream that a CGI/WSGI server would merge into one.
          if (seen.has(folded)) problems.push(`two spellings of ${folded}`);
          seen.add(folded);
        }
        const xff = out['x-forwarded-for'];
        if (o.trustedPeer === true ? !(typeof xff === 'string' && /(^|, )10\.0\.0\.7$/.test(xff)) : xff !== '10.0.0.7') problems.push(`x-forwarded-for ${String(xff)}`);
        if (o.trustedPeer !== true && out['x-forwarded-proto'] !== o.proto) problems.push('x-forwarded-proto');
        if (out['x-request-id'] !== 'r') problems.push('x-request-id');
        if ('authorization' in out) problems.push('authorization without a verified token');
        expect(problems).toEqual([]);
      }),
      { numRuns: 2000 },
    );
  });
});
