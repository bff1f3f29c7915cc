import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GatewayError } from '../errors.js';
import {
  descriptionText,
  isMediaType,
  parseBasicAuth,
  parseFormBody,
  parseJsonBody,
  parseScope,
  renderTokenError,
  renderTokenSuccess,
} from './dialects.js';

/** RFC 6749 Appendix B encoding, as oauth4webapi and simple-oauth2 write Basic credentials. */
const formUrlEncode = (s: string) => encodeURIComponent(s).replace(/%20/g, '+').replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${formUrlEncode(id)}:${formUrlEncode(secret)}`).toString('base64')}`;

describe('parseFormBody', () => {
  it.each([
    ['grant_type=client_credentials&scope=send_notification+view_room', { grant_type: 'client_credentials', scope: 'send_notification view_room' }],
    ['a=1&&b=%41', { a: '1', b: 'A' }],
    ['a=&b', {}],
    ['', {}],
    ['x=a%3Db', { x: 'a=b' }],
  ])('reads %j', (body, want) => {
    const r = parseFormBody(body);
    expect(r.ok).toBe(true);
    if (r.ok) expect(Object.fromEntries(r.params)).toEqual(want);
  });

  it.each(['a=1&a=2', 'a=&a=1', 'grant_type=password&grant%5Ftype=x', 'scope=%zz', '%E0%A4%A=1'])('refuses %j', (body) => {
    expect(parseFormBody(body).ok).toBe(false);
  });

  it('never throws, and what it reads round-trips through URLSearchParams', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (body) => {
        const r = parseFormBody(body);
        if (r.ok) for (const [k, v] of r.params) expect(typeof k === 'string' && v !== '').toBe(true);
      }),
    );
    fc.assert(
      fc.property(fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }), fc.string({ minLength: 1, maxLength: 20 }), { maxKeys: 6 }), (dict) => {
        const r = parseFormBody(new URLSearchParams(dict).toString());
        expect(r.ok).toBe(true);
        if (r.ok) expect(Object.fromEntries(r.params)).toEqual(dict);
      }),
    );
  });

  it('refuses any repeated name however it is spelled on the wire', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 10 }), fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), (name, v1, v2) => {
        const enc = new URLSearchParams([[name, v1]]).toString().split('=')[0]!;
        const alt = encodeURIComponent(name);
        expect(parseFormBody(`${enc}=${encodeURIComponent(v1)}&${alt}=${encodeURIComponent(v2)}`).ok).toBe(false);
      }),
    );
  });
});

describe('parseJsonBody', () => {
  it('reads string members; null and "" are omitted', () => {
    const r = parseJsonBody('{"client_id":"a","client_secret":"b","grant_type":"client_credentials","scope":null,"x":""}');
    expect(r.ok && Object.fromEntries(r.params)).toEqual({ client_id: 'a', client_secret: 'b', grant_type: 'client_credentials' });
  });
  it.each(['[]', 'null', '"x"', '{"client_id":1}', '{"scope":["a"]}', '{"a":{}}', '{', ''])('refuses %j', (body) => {
    expect(parseJsonBody(body).ok).toBe(false);
  });
  it('never throws on arbitrary text or JSON values', () => {
    fc.assert(fc.property(fc.string({ maxLength: 200 }), (s) => void parseJsonBody(s)));
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const r = parseJsonBody(JSON.stringify(v));
        if (r.ok) for (const val of r.params.values()) expect(typeof val).toBe('string');
      }),
    );
  });
});

describe('parseBasicAuth', () => {
  it('decodes form-urlencoded credentials (RFC 6749 §2.3.1)', () => {
    expect(parseBasicAuth(basic('client:1', 'p@ss w+rd/é'))).toEqual({ kind: 'basic', id: 'client:1', secret: 'p@ss w+rd/é' });
    expect(parseBasicAuth(`bAsIc ${Buffer.from('id:').toString('base64')}`)).toEqual({ kind: 'basic', id: 'id', secret: '' });
  });
  it('treats other schemes and no header as none', () => {
    expect(parseBasicAuth(undefined)).toEqual({ kind: 'none' });
    expect(parseBasicAuth('Bearer eyJ.x.y')).toEqual({ kind: 'none' });
    expect(parseBasicAuth('Basicx abc')).toEqual({ kind: 'none' });
  });
  it.each(['Basic', 'Basic !!!', `Basic ${Buffer.from('nocolon').toString('base64')}`, `Basic ${Buffer.from(':secret').toString('base64')}`, `Basic ${Buffer.from([0xff, 0x3a, 0x61]).toString('base64')}`, `Basic ${Buffer.from('a%zz:b').toString('base64')}`])(
    'calls %j malformed',
    (h) => {
      expect(parseBasicAuth(h).kind).toBe('malformed');
    },
  );
  it('round-trips any id and secret, and never throws on arbitrary headers', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 40 }), fc.string({ maxLength: 60 }), (id, secret) => {
        expect(parseBasicAuth(basic(id, secret))).toEqual({ kind: 'basic', id, secret });
      }),
    );
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 80 }), fc.string({ maxLength: 60 }).map((s) => `Basic ${s}`), fc.uint8Array({ maxLength: 60 }).map((b) => `Basic ${Buffer.from(b).toString('base64')}`)), (h) => {
        const r = parseBasicAuth(h);
        if (r.kind === 'basic') expect(r.id).not.toBe('');
      }),
    );
  });
});

describe('parseScope', () => {
  it('splits, deduplicates and keeps request order', () => {
    expect(parseScope('view_room  send_notification view_room')).toEqual({ ok: true, scopes: ['view_room', 'send_notification'] });
    expect(parseScope(undefined)).toEqual({ ok: true, scopes: undefined });
    expect(parseScope('   ')).toEqual({ ok: true, scopes: undefined });
  });
  it.each(['a"b', 'a\\b', 'a\tb', 'é'])('refuses %j', (s) => expect(parseScope(s).ok).toBe(false));
  it('yields only RFC 6749 §3.3 scope tokens, never throws', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 60 }), (s) => {
        const r = parseScope(s);
        if (r.ok && r.scopes) for (const t of r.scopes) expect(t).toMatch(/^[\x21\x23-\x5b\x5d-\x7e]+$/);
      }),
    );
  });
});

describe('renderTokenSuccess', () => {
  const t = { accessToken: 'AT', expiresIn: 3600, scopes: ['send_notification', 'view_room'], groupId: '123456', groupName: 'TestGroup' };
  it('writes HipChat bodies in hipchat-go fixture order, group_id a number when all digits', () => {
    expect(renderTokenSuccess('hipchat', t).body).toBe(
      '{"access_token":"AT","token_type":"bearer","expires_in":3600,"scope":"send_notification view_room","group_id":123456,"group_name":"TestGroup"}',
    );
    expect(renderTokenSuccess('hipchat', { ...t, groupId: 'g-1', groupName: undefined }).body).toBe(
      '{"access_token":"AT","token_type":"bearer","expires_in":3600,"scope":"send_notification view_room","group_id":"g-1"}',
    );
    expect(renderTokenSuccess('hipchat', { ...t, groupId: undefined, groupName: undefined, refreshToken: 'RT' }).body).toBe(
      '{"access_token":"AT","token_type":"bearer","expires_in":3600,"refresh_token":"RT","scope":"send_notification view_room"}',
    );
    expect(renderTokenSuccess('hipchat', { ...t, groupId: '99999999999999999999' }).body).toContain('"group_id":"99999999999999999999"');
  });
  it('writes livedigital and standard bodies, no-store always', () => {
    const ld = renderTokenSuccess('livedigital', { ...t, refreshToken: 'RT' });
    expect(ld.body).toBe('{"token_type":"Bearer","access_token":"AT","refresh_token":"RT"}');
    expect(ld.headers).toEqual({ 'content-type': 'application/json', 'cache-control': 'no-store', pragma: 'no-cache' });
    expect(renderTokenSuccess('standard', t).body).toBe('{"access_token":"AT","token_type":"Bearer","expires_in":3600,"scope":"send_notification view_room"}');
  });
});

describe('renderTokenError', () => {
  const opts = { realm: 'api' };
  it('HipChat: the §2 envelope with the RFC code as reason', () => {
    const r = renderTokenError('hipchat', new GatewayError('invalid_client', { why: 'x' }), { ...opts, basicChallenge: true });
    expect(r.status).toBe(401);
    expect(r.body).toBe('{"error":{"code":401,"message":"Client authentication failed.","type":"Unauthorized","reason":"invalid_client"}}');
    expect(r.headers).toMatchObject({ 'www-authenticate': 'Basic realm="api"', 'cache-control': 'no-store', pragma: 'no-cache' });
  });
  it('RFC dialects: {"error","error_description"}; outages use registered codes', () => {
    expect(renderTokenError('standard', new GatewayError('invalid_scope'), opts).body).toBe(
      '{"error":"invalid_scope","error_description":"The requested scope is invalid or exceeds the scope granted to the client."}',
    );
    const down = renderTokenError('livedigital', new GatewayError('store_unavailable'), opts);
    expect([down.status, JSON.parse(down.body).error]).toEqual([503, 'temporarily_unavailable']);
    expect(JSON.parse(renderTokenError('standard', new GatewayError('internal_error'), opts).body).error).toBe('server_error');
    expect(renderTokenError('standard', new GatewayError('invalid_client'), opts).headers['www-authenticate']).toBeUndefined();
  });
  it('error_description only ever holds RFC 6749 §5.2 characters', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (why) => {
        const body = JSON.parse(renderTokenError('standard', new GatewayError('invalid_request', { why }), opts).body) as { error_description: string };
        expect(body.error_description).toMatch(/^[\x20\x21\x23-\x5b\x5d-\x7e]*$/);
      }),
    );
    expect(descriptionText('a"b\\c\n')).toBe('a b c ');
  });
});

it('isMediaType ignores parameters and case', () => {
  expect(isMediaType('Application/X-WWW-Form-Urlencoded; charset=UTF-8', 'application/x-www-form-urlencoded')).toBe(true);
  expect(isMediaType('application/json', 'application/x-www-form-urlencoded')).toBe(false);
  expect(isMediaType(null, 'application/json')).toBe(false);
});
