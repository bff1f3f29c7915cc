import { describe, it, expect } from 'vitest';
import type { IncomingHttpHeaders } from 'node:http';
import type { Principal } from '../types.js';
import {
  HOP_BY_HOP,
  MAX_IDENTITY_VALUE_BYTES,
  MAX_SCOPES_HEADER_BYTES,
  identityHeaders,
  CLIENT_ADDRESS_HEADERS,
  ROUTING_OVERRIDE_HEADERS,
  buildUpstreamHeaders,
  foldHeaderName,
  responseHeaderList,
  safeHeaderValue,
} from './upstream-headers.js';



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

  it.each<[string, IncomingHttpHeaders, boolean | undefined, string]>([
    ['sets X-Forwarded-For to the client ip', {}, undefined, '10.0.0.7'],
    ['replaces an untrusted peer\'s X-Forwarded-For', { 'x-forwarded-for': '1.1.1.1, 2.2.2.2' }, false, '10.0.0.7'],
    ['replaces X-Forwarded-For when trust is not said (the safe default)', { 'x-forwarded-for': '1.1.1.1' }, undefined, '10.0.0.7'],
    ['appends to a trusted peer\'s X-Forwarded-For', { 'x-forwarded-for': '1.1.1.1, 2.2.2.2' }, true, '1.1.1.1, 2.2.2.2, 10.0.0.7'],
    ['joins a trusted peer\'s repeated X-Forwarded-For', { 'x-forwarded-for': ['1.1.1.1', '2.2.2.2'] } as unknown as IncomingHttpHeaders, true, '1.1.1.1, 2.2.2.2, 10.0.0.7'],
  ])('%s', (_name, incoming, trustedPeer, expected) => {
    expect(buildUpstreamHeaders(incoming, { ...base, trustedPeer })['x-forwarded-for']).toBe(expected);
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

describe('buildUpstreamHeaders: underscores, look-alikes and routing overrides (SPEC §5)', () => {
  const spoofs: IncomingHttpHeaders = {
    x_auth_subject: 'admin',
    'x-auth_scopes': 'admin_group',
    x_auth_room: '1',
    'x_auth-is-admin': 'true',
  };

  it.each<['drop' | 'keep' | undefined, boolean]>([
    [undefined, false],
    ['drop', false],
    ['keep', false],
    ['keep', true],
  ])('never lets an identity look-alike through (underscoreHeaders %s, trustedPeer %s)', (underscoreHeaders, trustedPeer) => {
    const out = buildUpstreamHeaders({ ...spoofs, 'X_AUTH_GROUP': 'root' } as IncomingHttpHeaders, { ...base, principal, underscoreHeaders, trustedPeer });
    const identity = Object.entries(out).filter(([k]) => foldHeaderName(k).startsWith('x-auth-'));
    expect(Object.fromEntries(identity)).toEqual({
      'x-auth-subject': 'user-42',
      'x-auth-client-type': 'room',
      'x-auth-scopes': 'send_notification view_room',
      'x-auth-room': '1234',
      'x-auth-room-name': 'ops',
      'x-auth-group': 'g-7',
      'x-auth-token-id': 'jti-1',
      'x-auth-issuer': 'scopegate-local',
    });
  });

  it('removes identity look-alikes on a public route, with any prefix spelling', () => {
    for (const identityPrefix of ['X-Auth-', 'x-auth-', 'X-AUTH-']) {
      const out = buildUpstreamHeaders(spoofs, { ...base, identityPrefix, underscoreHeaders: 'keep' });
      expect(Object.keys(out).filter((k) => foldHeaderName(k).startsWith('x-auth-'))).toEqual([]);
    }
  });

  it('drops every header name containing "_" by default', () => {
    const out = buildUpstreamHeaders({ x_custom: '1', 'x-trace_id': 't', accept: 'a', 'x-plain': 'p' }, base);
    expect(out).toMatchObject({ accept: 'a', 'x-plain': 'p' });
    expect(Object.keys(out).filter((k) => k.includes('_'))).toEqual([]);
  });

  it('keeps underscore names with underscoreHeaders: keep, unless they fold onto another header', () => {
    const out = buildUpstreamHeaders(
      { x_custom: '1', 'x-tenant': 'a', x_tenant: 'b', 'x_dup-name': 'c', x_dup_name: 'd' },
      { ...base, underscoreHeaders: 'keep' },
    );
    expect(out['x_custom']).toBe('1');
    expect(out['x-tenant']).toBe('a');
    expect(out).not.toHaveProperty('x_tenant');
    expect(out).not.toHaveProperty('x_dup-name');
    expect(out).not.toHaveProperty('x_dup_name');
  });

  it.each([
    'x_forwarded_for',
    'x_forwarded-host',
    'x_real_ip',
    'x_request_id',
    'transfer_encoding',
    'content_length',
    'proxy_authorization',
    'x_original_url',
    'x_http_method_override',
    '__proto__',
  ])('drops %s even with underscoreHeaders: keep and a trusted peer', (name) => {
    const out = buildUpstreamHeaders({ [name]: ['x'] } as IncomingHttpHeaders, { ...base, underscoreHeaders: 'keep', trustedPeer: true });
    expect(Object.keys(out)).not.toContain(name);
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
  });

  it.each([...ROUTING_OVERRIDE_HEADERS])('removes the routing override %s from anyone', (name) => {
    for (const trustedPeer of [false, true]) {
      const out = buildUpstreamHeaders(
        { [name]: '/v2/admin/x', [name.toUpperCase()]: 'DELETE', [name.replaceAll('-', '_')]: '/x' },
        { ...base, trustedPeer, underscoreHeaders: 'keep' },
      );
      expect(Object.keys(out).map(foldHeaderName)).not.toContain(name);
    }
  });

  it('folds header names as CGI and WSGI do', () => {
    expect(foldHeaderName('X_Auth-SUBJECT')).toBe('x-auth-subject');
    expect(foldHeaderName('accept')).toBe('accept');
  });
});

describe('buildUpstreamHeaders: forwarding headers and trusted peers (SPEC §5)', () => {
  const fromProxy: IncomingHttpHeaders = {
    host: 'gw.internal:8080',
    'x-forwarded-for': '203.0.113.9',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'api.example.com',
    'x-forwarded-port': '443',
    'x-forwarded-server': 'lb-1',
    'x-forwarded-ssl': 'on',
    forwarded: 'for=203.0.113.9;proto=https;host=api.example.com',
    'x-real-ip': '203.0.113.9',
    'true-client-ip': '203.0.113.9',
  };

  it('replaces everything an untrusted peer says about the request\'s origin', () => {
    const out = buildUpstreamHeaders(fromProxy, { ...base, trustedPeer: false });
    expect(out['x-forwarded-for']).toBe('10.0.0.7');
    expect(out['x-forwarded-proto']).toBe('http');
    expect(out['x-forwarded-host']).toBe('gw.internal:8080');
    for (const name of ['x-forwarded-port', 'x-forwarded-server', 'x-forwarded-ssl', 'forwarded', ...CLIENT_ADDRESS_HEADERS]) {
      expect(out, name).not.toHaveProperty(name);
    }
  });

  it('keeps a trusted peer\'s forwarding headers and appends this hop', () => {
    const out = buildUpstreamHeaders(fromProxy, { ...base, trustedPeer: true });
    expect(out).toMatchObject({
      'x-forwarded-for': '203.0.113.9, 10.0.0.7',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'api.example.com',
      'x-forwarded-port': '443',
      'x-forwarded-server': 'lb-1',
      'x-forwarded-ssl': 'on',
      'x-real-ip': '203.0.113.9',
      'true-client-ip': '203.0.113.9',
      forwarded: 'for=203.0.113.9;proto=https;host=api.example.com, for=10.0.0.7;host="gw.internal:8080";proto=http',
    });
  });

  it('fills in what a trusted peer left out, and adds no Forwarded of its own', () => {
    const out = buildUpstreamHeaders({ host: 'gw' }, { ...base, trustedPeer: true, proto: 'https' });
    expect(out).toMatchObject({ 'x-forwarded-for': '10.0.0.7', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'gw' });
    expect(out).not.toHaveProperty('forwarded');
  });

  it('quotes an IPv6 client and escapes the host in the Forwarded element', () => {
    const out = buildUpstreamHeaders({ forwarded: 'for=1.2.3.4' }, { ...base, trustedPeer: true, clientIp: '::1', host: 'a"b' });
    expect(out['forwarded']).toBe('for=1.2.3.4, for="[::1]";host="a\\"b";proto=http');
  });

  it('still removes X-Forwarded-Prefix from a trusted peer (a routing override)', () => {
    expect(buildUpstreamHeaders({ 'x-forwarded-prefix': '/admin' }, { ...base, trustedPeer: true })).not.toHaveProperty('x-forwarded-prefix');
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

describe('identity headers never forge a scope or drop the room name', () => {
  it('cuts a long scope list between scopes, never inside one', () => {
    const scopes = [...Array.from({ length: 400 }, (_, i) => `filler_scope_${i}`), 'admin_group_readonly'];
    const h = identityHeaders({ issuerName: 'i', clientType: 'user', scopes }, 'x-auth-');
    const sent = h['x-auth-scopes']!.split(' ');
    for (const s of sent) expect(scopes).toContain(s);
    expect(sent).not.toContain('admin_group');
    expect(Buffer.byteLength(h['x-auth-scopes']!)).toBeLessThanOrEqual(MAX_SCOPES_HEADER_BYTES);
  });
  it('sends the room name as X-Auth-Room-Name (SPEC §5)', () => {
    const h = identityHeaders({ issuerName: 'i', clientType: 'room', scopes: [], room: '42', roomName: 'ops' }, 'x-auth-');
    expect(h['x-auth-room']).toBe('42');
    expect(h['x-auth-room-name']).toBe('ops');
  });
});
