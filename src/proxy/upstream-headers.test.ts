import { describe, it, expect } from 'vitest';
import type { IncomingHttpHeaders } from 'node:http';
import type { Principal } from '../types.js';
import {
  HOP_BY_HOP,
  MAX_IDENTITY_VALUE_BYTES,
  buildUpstreamHeaders,
  responseHeaderList,
  safeHeaderValue,
  stripQueryParams,
} from './upstream-headers.js';

const DROP = new Set(['auth_token', 'auth_test']);

describe('stripQueryParams', () => {
  it.each([
    ['removes auth_token and keeps the rest', 'auth_token=abc&expand=items.user', 'expand=items.user'],
    ['removes auth_test', 'auth_test=true&max-results=10', 'max-results=10'],
    ['removes both', 'auth_test=TRUE&auth_token=abc', ''],
    ['removes a percent-encoded name', 'a=1&auth%5Ftoken=abc', 'a=1'],
    ['removes a name with lower-case escapes', 'auth%5ftoken=abc&b=2', 'b=2'],
    ['removes a bare name without value', 'auth_token&x=1', 'x=1'],
    ['removes every occurrence', 'auth_token=a&q=1&auth_token=b', 'q=1'],
    ['keeps repeated names in order', 'a=1&auth_token=t&a=2', 'a=1&a=2'],
    ['keeps escapes byte for byte', 'x=%2F&y=%2f%20+z', 'x=%2F&y=%2f%20+z'],
    ['keeps empty values', 'a=&b&auth_token=t', 'a=&b'],
    ['does not split on ";"', 'a=1;auth_token=t&b=2', 'a=1;auth_token=t&b=2'],
    ['keeps names that only contain the dropped name', 'my_auth_token=1&auth_token_x=2', 'my_auth_token=1&auth_token_x=2'],
    ['keeps a value that looks like the name', 'q=auth_token%3Dx', 'q=auth_token%3Dx'],
    ['keeps a malformed escape', 'a=%zz&%E0%A4%A=1', 'a=%zz&%E0%A4%A=1'],
    ['returns empty for empty input', '', ''],
    ['returns empty when only the token was there', 'auth_token=abc', ''],
  ])('%s', (_name, input, expected) => {
    expect(stripQueryParams(input, DROP)).toBe(expected);
  });

  it('uses the configured names only', () => {
    expect(stripQueryParams('access_token=x&auth_token=y', new Set(['access_token']))).toBe('auth_token=y');
  });
});

const principal: Principal = {
  issuerName: 'local',
  iss: 'scopegate-local',
  subject: 'user-42',
  clientType: 'room',
  scopes: ['send_notification', 'view_room'],
  room: '1234',
  roomName: 'ops',
  group: 'g-7',
  tokenId: 'jti-1',
};

const base = {
  identityPrefix: 'X-Auth-',
  forwardToken: true,
  requestId: 'req-1',
  clientIp: '10.0.0.7',
  proto: 'http' as const,
};

describe('buildUpstreamHeaders', () => {
  it('copies end-to-end headers and drops hop-by-hop ones', () => {
    const out = buildUpstreamHeaders(
      {
        host: 'gw.example.com',
        accept: 'application/json',
        'content-type': 'text/plain',
        'content-length': '5',
        connection: 'keep-alive, X-Custom-Hop',
        'keep-alive': 'timeout=5',
        'x-custom-hop': 'secret',
        'transfer-encoding': 'chunked',
        te: 'trailers',
        trailer: 'x-t',
        upgrade: 'h2c',
        'proxy-authorization': 'Basic x',
        'proxy-connection': 'keep-alive',
        'x-other': 'kept',
      },
      base,
    );
    expect(out).toMatchObject({
      accept: 'application/json',
      'content-type': 'text/plain',
      'content-length': '5',
      'x-other': 'kept',
    });
    for (const name of [...HOP_BY_HOP, 'x-custom-hop']) expect(out).not.toHaveProperty(name);
  });

  it.each<[string, IncomingHttpHeaders, string]>([
    ['a spoofed X-Auth-Subject', { 'x-auth-subject': 'admin' }, 'x-auth-subject'],
    ['a spoofed scope list', { 'x-auth-scopes': 'admin_group' }, 'x-auth-scopes'],
    ['an invented identity header', { 'x-auth-is-admin': 'true' }, 'x-auth-is-admin'],
    ['an upper-case spoof (Node lower-cases names)', { 'X-AUTH-ROOM': '1' } as IncomingHttpHeaders, 'x-auth-room'],
  ])('removes %s on a public route (no principal)', (_name, incoming, header) => {
    const out = buildUpstreamHeaders(incoming, base);
    expect(out).not.toHaveProperty(header);
    expect(Object.keys(out).some((k) => k.toLowerCase().startsWith('x-auth-'))).toBe(false);
  });

  it.each(['X-Auth-', 'x-auth-', 'X-AUTH-'])('matches the prefix %s case-insensitively', (identityPrefix) => {
    const out = buildUpstreamHeaders({ 'x-auth-subject': 'admin', 'x-auth-group': 'root' }, { ...base, identityPrefix, principal });
    expect(out['x-auth-subject']).toBe('user-42');
    expect(out['x-auth-group']).toBe('g-7');
  });

  it('uses a custom prefix and leaves the default one alone', () => {
    const out = buildUpstreamHeaders(
      { 'x-user-subject': 'admin', 'x-auth-subject': 'not-ours' },
      { ...base, identityPrefix: 'X-User-', principal },
    );
    expect(out['x-user-subject']).toBe('user-42');
    expect(out['x-auth-subject']).toBe('not-ours');
  });

  it('replaces spoofed identity with the principal', () => {
    const out = buildUpstreamHeaders({ 'x-auth-subject': 'admin', 'x-auth-scopes': 'admin_group' }, { ...base, principal });
    expect(out).toMatchObject({
      'x-auth-subject': 'user-42',
      'x-auth-client-type': 'room',
      'x-auth-scopes': 'send_notification view_room',
      'x-auth-room': '1234',
      'x-auth-group': 'g-7',
      'x-auth-token-id': 'jti-1',
      'x-auth-issuer': 'scopegate-local',
    });
  });

  it('sets only the identity headers the principal has', () => {
    const out = buildUpstreamHeaders({}, { ...base, principal: { issuerName: 'local', clientType: 'user', scopes: [] } });
    const identity = Object.keys(out).filter((k) => k.startsWith('x-auth-'));
    expect(identity).toEqual(['x-auth-client-type']);
  });

  it.each<[string, { forwardToken: boolean; token?: string }, IncomingHttpHeaders, string | undefined]>([
    ['forwards a header token', { forwardToken: true, token: 'tok' }, { authorization: 'bearer tok' }, 'Bearer tok'],
    ['forwards a query token as a header', { forwardToken: true, token: 'tok' }, {}, 'Bearer tok'],
    ['strips a header token when forward_token is false', { forwardToken: false, token: 'tok' }, { authorization: 'Bearer tok' }, undefined],
    ['never forwards a query token when forward_token is false', { forwardToken: false, token: 'tok' }, {}, undefined],
    ['drops Authorization without a verified token', { forwardToken: true }, { authorization: 'Basic Zm9vOmJhcg==' }, undefined],
  ])('%s', (_name, opts, incoming, expected) => {
    const out = buildUpstreamHeaders(incoming, { ...base, ...opts });
    expect(out['authorization']).toBe(expected);
  });

  it.each<[string, IncomingHttpHeaders, string]>([
    ['sets X-Forwarded-For to the client ip', {}, '10.0.0.7'],
    ['appends to an incoming X-Forwarded-For', { 'x-forwarded-for': '1.1.1.1, 2.2.2.2' }, '1.1.1.1, 2.2.2.2, 10.0.0.7'],
  ])('%s', (_name, incoming, expected) => {
    expect(buildUpstreamHeaders(incoming, base)['x-forwarded-for']).toBe(expected);
  });

  it('sets X-Forwarded-Proto, -Host and X-Request-Id, replacing client values', () => {
    const out = buildUpstreamHeaders(
      { host: 'api.example.com', 'x-forwarded-proto': 'gopher', 'x-forwarded-host': 'evil', 'x-request-id': 'client' },
      { ...base, proto: 'https', requestId: 'gw-id' },
    );
    expect(out['x-forwarded-proto']).toBe('https');
    expect(out['x-forwarded-host']).toBe('api.example.com');
    expect(out['x-request-id']).toBe('gw-id');
    expect(out).not.toHaveProperty('host');
  });

  it('prefers the explicit host option', () => {
    expect(buildUpstreamHeaders({ host: 'a' }, { ...base, host: 'b' })['x-forwarded-host']).toBe('b');
  });

  it('keeps repeated values as arrays', () => {
    const out = buildUpstreamHeaders({ cookie: 'a=1; b=2', 'set-cookie': ['x=1', 'y=2'] }, base);
    expect(out['set-cookie']).toEqual(['x=1', 'y=2']);
    expect(out['cookie']).toBe('a=1; b=2');
  });

  it('neutralises header injection through claims', () => {
    const out = buildUpstreamHeaders({}, { ...base, principal: { ...principal, subject: 'evil\r\nX-Auth-Subject: admin' } });
    expect(out['x-auth-subject']).toBe('evilX-Auth-Subject: admin');
  });
});

describe('safeHeaderValue', () => {
  it.each([
    ['strips CR, LF, NUL, TAB and DEL', 'a\r\nb\u0000c\td\u007f', 'abcd'],
    ['keeps printable ASCII', 'user@example.com (x)', 'user@example.com (x)'],
    ['sends non-ASCII as UTF-8 bytes', 'Jörg', Buffer.from('Jörg', 'utf8').toString('latin1')],
  ])('%s', (_name, input, expected) => {
    expect(safeHeaderValue(input)).toBe(expected);
  });

  it('clips to the byte limit without splitting a character', () => {
    const out = safeHeaderValue('€'.repeat(1000)); // 3 bytes each
    expect(Buffer.byteLength(out, 'latin1')).toBe(Math.floor(MAX_IDENTITY_VALUE_BYTES / 3) * 3);
    expect(Buffer.from(out, 'latin1').toString('utf8')).toBe('€'.repeat(Math.floor(MAX_IDENTITY_VALUE_BYTES / 3)));
    expect(safeHeaderValue('x'.repeat(5000))).toHaveLength(MAX_IDENTITY_VALUE_BYTES);
  });
});

describe('responseHeaderList', () => {
  const upstream = {
    'content-type': 'text/plain',
    'Content-Length': '3',
    connection: 'keep-alive, x-hop',
    'keep-alive': 'timeout=5',
    'transfer-encoding': 'chunked',
    'x-hop': '1',
    'set-cookie': ['a=1', 'b=2'],
    'x-undefined': undefined,
  };

  it('drops hop-by-hop and Connection-listed fields, keeps the rest with lower-case names', () => {
    expect(responseHeaderList(upstream, {})).toEqual(['content-type', 'text/plain', 'content-length', '3', 'set-cookie', ['a=1', 'b=2']]);
  });

  it.each([
    { name: 'same case', upstreamName: 'x-ratelimit-limit' },
    { name: 'other case', upstreamName: 'X-RateLimit-Limit' },
  ])("lets the gateway's own header replace the upstream's ($name)", ({ upstreamName }) => {
    const list = responseHeaderList({ [upstreamName]: '1', 'x-request-id': 'upstream', etag: '"e"' }, { 'X-Ratelimit-Limit': '500', 'x-request-id': 'gw' });
    expect(list).toEqual(['etag', '"e"', 'X-Ratelimit-Limit', '500', 'x-request-id', 'gw']);
  });
});
