import { describe, it, expect } from 'vitest';
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import { accessFields, createLogger, holdsJws, redactQuery, redactText, redactUrl, tokenFingerprint, REDACTED } from './logger.js';

const TOKEN = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlLXNlY3JldA';

/** A destination that keeps every line pino writes. */
function capture(): { stream: Writable; lines: () => Record<string, unknown>[]; raw: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  const raw = () => chunks.join('');
  return {
    stream,
    raw,
    lines: () =>
      raw()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe('createLogger', () => {
  it('writes no token text when a token sits in authorization and token fields', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream, level: 'info' });
    log.info(
      {
        authorization: `Bearer ${TOKEN}`,
        token: TOKEN,
        req: { headers: { authorization: `Bearer ${TOKEN}`, cookie: `sid=${TOKEN}`, host: 'api' } },
        headers: { authorization: `Bearer ${TOKEN}`, 'proxy-authorization': `Basic ${TOKEN}`, 'set-cookie': [TOKEN] },
        upstream: { request: { headers: { authorization: `Bearer ${TOKEN}` } } },
        issuer: { secrets: [TOKEN], secret: TOKEN, password: TOKEN },
        query: { auth_token: TOKEN },
      },
      'request',
    );
    expect(out.raw()).not.toContain(TOKEN);
    expect(out.raw()).not.toContain('c2lnbmF0dXJl');
    const [line] = out.lines();
    expect(line).toMatchObject({
      msg: 'request',
      authorization: REDACTED,
      token: REDACTED,
      req: { headers: { authorization: REDACTED, cookie: REDACTED, host: 'api' } },
      headers: { authorization: REDACTED, 'proxy-authorization': REDACTED, 'set-cookie': REDACTED },
      upstream: { request: { headers: { authorization: REDACTED } } },
      issuer: { secrets: REDACTED, secret: REDACTED, password: REDACTED },
      query: { auth_token: REDACTED },
    });
  });

  it('keeps fields that are not secrets', () => {
    const out = capture();
    createLogger({ destination: out.stream }).info({ route: 'rooms', status: 403, reason: 'scope_insufficient' }, 'x');
    expect(out.lines()[0]).toMatchObject({ route: 'rooms', status: 403, reason: 'scope_insufficient', level: 30 });
  });

  it('honours the level and the base fields', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream, level: 'warn', base: { service: 'scopegate' } });
    log.info('dropped');
    log.warn('kept');
    const lines = out.lines();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ msg: 'kept', service: 'scopegate' });
    expect(lines[0]).not.toHaveProperty('pid');
  });

  it('takes the level from LOG_LEVEL when none is given', () => {
    const before = process.env['LOG_LEVEL'];
    process.env['LOG_LEVEL'] = 'debug';
    try {
      expect(createLogger({ destination: capture().stream }).level).toBe('debug');
      delete process.env['LOG_LEVEL'];
      expect(createLogger({ destination: capture().stream }).level).toBe('info');
    } finally {
      if (before === undefined) delete process.env['LOG_LEVEL'];
      else process.env['LOG_LEVEL'] = before;
    }
  });

  it('rejects an unknown level, naming the allowed ones', () => {
    expect(() => createLogger({ level: 'verbose', destination: capture().stream })).toThrow(
      /unknown log level "verbose"; allowed: .*debug.*silent/,
    );
  });
});

describe('redactQuery', () => {
  const P = ['auth_token'];
  it.each([
    ['no query', '/v2/room/1', '/v2/room/1'],
    ['empty query', '/v2/room/1?', '/v2/room/1?'],
    ['only the token', '/v2/room?auth_token=abc.def.ghi', `/v2/room?auth_token=${REDACTED}`],
    ['token among others, rest byte for byte', '/v2/room?max-results=10&auth_token=abc&x=%20y+z', `/v2/room?max-results=10&auth_token=${REDACTED}&x=%20y+z`],
    ['repeated param', '/r?auth_token=a&auth_token=b', `/r?auth_token=${REDACTED}&auth_token=${REDACTED}`],
    ['percent-encoded name', '/r?auth%5Ftoken=secret1&a=1', `/r?auth%5Ftoken=${REDACTED}&a=1`],
    ['lower-case escape in name', '/r?auth%5ftoken=secret1', `/r?auth%5ftoken=${REDACTED}`],
    ['mis-cased name', '/r?AUTH_TOKEN=secret1', `/r?AUTH_TOKEN=${REDACTED}`],
    ['empty value stays empty', '/r?auth_token=&a=1', '/r?auth_token=&a=1'],
    ['name without value stays', '/r?auth_token&a=1', '/r?auth_token&a=1'],
    ['name merely containing auth_token stays', '/r?xauth_token=keep&auth_tokens=keep2', '/r?xauth_token=keep&auth_tokens=keep2'],
    ['auth_token inside another value stays', '/r?next=auth_token%3Dz', '/r?next=auth_token%3Dz'],
    ['value containing = is wholly redacted', '/r?auth_token=a=b==', `/r?auth_token=${REDACTED}`],
    ['fragment is kept', '/r?auth_token=a#frag', `/r?auth_token=${REDACTED}#frag`],
    ['malformed escape elsewhere is kept', '/r?%zz=1&auth_token=t', `/r?%zz=1&auth_token=${REDACTED}`],
    ['empty segments are kept', '/r?&&auth_token=t&', `/r?&&auth_token=${REDACTED}&`],
    ['? in the value does not start a new query', '/r?a=?&auth_token=t', `/r?a=?&auth_token=${REDACTED}`],
  ])('%s', (_name, input, expected) => {
    expect(redactQuery(input, P)).toBe(expected);
  });

  it('redacts every named parameter', () => {
    expect(redactQuery('/r?access_token=a&auth_token=b&c=d', ['auth_token', 'access_token'])).toBe(
      `/r?access_token=${REDACTED}&auth_token=${REDACTED}&c=d`,
    );
  });

  it('returns the input unchanged with no parameter names', () => {
    expect(redactQuery('/r?auth_token=b', [])).toBe('/r?auth_token=b');
  });
});

describe('tokenFingerprint', () => {
  it('is the first 12 hex characters of the token SHA-256', () => {
    const fp = tokenFingerprint(TOKEN);
    expect(fp).toMatch(/^[0-9a-f]{12}$/);
    expect(fp).toBe(createHash('sha256').update(TOKEN).digest('hex').slice(0, 12));
  });

  it('matches the SHA-256 test vector for "abc"', () => {
    expect(tokenFingerprint('abc')).toBe('ba7816bf8f01');
  });

  it('differs between tokens and never contains the token', () => {
    expect(tokenFingerprint('a.b.c')).not.toBe(tokenFingerprint('a.b.d'));
    expect(tokenFingerprint(TOKEN)).not.toContain(TOKEN.slice(0, 6));
  });
});

describe('redactUrl', () => {
  const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.sig_-x';
  it.each([
    [`/v2/oauth/token/${jwt}`, '/v2/oauth/token/[REDACTED]'],
    [`/v2/room/1?auth_token=${jwt}&x=1`, '/v2/room/1?auth_token=[REDACTED]&x=1'],
    [`/a?next=${jwt}`, '/a?next=[REDACTED]'],
    ['/v2/room/42?expand=items.user', '/v2/room/42?expand=items.user'],
    ['/files/a.b.c', '/files/a.b.c'],
  ])('%s → %s', (input, expected) => {
    expect(redactUrl(input, ['auth_token'])).toBe(expected);
  });
});

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const SIG = 'c2lnbmF0dXJlLXNlY3JldC1ieXRlcy0wMTIzNDU2Nzg5YWJj';
/** Tokens a redactor relying on `eyJ` misses: a header with leading or inner whitespace. */
const SPACED = `${b64(' {"alg":"HS256"}')}.${b64({ sub: 'u1' })}.${SIG}`;
const INNER = `${b64('{ "alg": "HS256" }')}.${b64({ sub: 'u1' })}.${SIG}`;
const NEWLINE = `${b64('\n{"alg":"HS256"}')}.${b64({ sub: 'u1' })}.${SIG}`;
const NONE = `${b64({ alg: 'none' })}.${b64({ sub: 'root' })}.`;
/** Not JSON in the first part at all, but long parts and a signature-sized last one. */
const OPAQUE = `${'Q'.repeat(20)}.${'R'.repeat(30)}.${SIG}`;
const pct = (t: string) => t.replace(/\./g, '%2E');
const pct2 = (t: string) => t.replace(/\./g, '%252E');
const allPct = (t: string) => [...t].map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join('');

describe('redactUrl without relying on eyJ (SPEC 6)', () => {
  it.each([
    ['header with leading space', `/v2/oauth/token/${SPACED}`, '/v2/oauth/token/[REDACTED]'],
    ['header with inner spaces', `/v2/oauth/token/${INNER}`, '/v2/oauth/token/[REDACTED]'],
    ['header with a newline', `/a?next=${NEWLINE}`, '/a?next=[REDACTED]'],
    ['alg none, empty signature', `/a/${NONE}/b`, '/a/[REDACTED]/b'],
    ['non-JSON first part with a signature-sized tail', `/a?x=${OPAQUE}`, '/a?x=[REDACTED]'],
    ['%2E dots in another parameter', `/v2/room/1?next=${pct(TOKEN)}&a=1`, '/v2/room/1?next=[REDACTED]&a=1'],
    ['%252E dots (double-encoded)', `/v2/room/1?next=${pct2(SPACED)}`, '/v2/room/1?next=[REDACTED]'],
    ['every character percent-encoded in a path segment', `/v2/oauth/token/${allPct(TOKEN)}`, '/v2/oauth/token/[REDACTED]'],
    ['%2E dots in a path segment', `/v2/oauth/token/${pct(SPACED)}/x`, '/v2/oauth/token/[REDACTED]/x'],
    ['token after a prefix in a segment', `/v2/oauth/token/Bearer%20${TOKEN}`, '/v2/oauth/token/[REDACTED]'],
    ['token in a query name', `/a?${TOKEN}&b=1`, '/a?[REDACTED]&b=1'],
    ['token in a query name with a value', `/a?${pct(TOKEN)}=1`, '/a?[REDACTED]'],
    ['token inside a URL in a value', `/a?next=${encodeURIComponent(`https://x.example/cb?auth_token=${TOKEN}`)}`, '/a?next=[REDACTED]'],
    ['token in the fragment', `/a?b=1#${pct(TOKEN)}`, '/a?b=1#[REDACTED]'],
    ['token param in the fragment', `/a?b=1#auth_token=opaque-secret`, '/a?b=1#auth_token=[REDACTED]'],
    ['look-alike parameter', `/v2/room/1?AUTH.TOKEN=opaque-secret&a=1`, '/v2/room/1?AUTH.TOKEN=[REDACTED]&a=1'],
    ['NUL-cut look-alike, token in the name', `/v2/room/1?auth_token%00${pct(TOKEN)}=1`, '/v2/room/1?[REDACTED]'],
    [';-separated token parameter', `/v2/room/1?x=1;auth_token=opaque-secret`, '/v2/room/1?x=[REDACTED]'],
    ['double-encoded look-alike name', `/v2/room/1?auth%255Ftoken=opaque-secret`, '/v2/room/1?[REDACTED]'],
    ['padded base64url parts', `/a?t=${TOKEN}==`, '/a?t=[REDACTED]'],
  ])('%s', (_n, input, expected) => {
    expect(redactUrl(input, ['auth_token'])).toBe(expected);
  });

  it.each([
    '/v2/room/42?expand=items.user.name',
    '/files/a.b.c',
    '/dl/example.tar.gz',
    '/static/jquery.min.js?v=1.2.3',
    '/pkg/com.example.application.module',
    '/v2/room/../room/17',
    '/a?x=%2E%2E.%2E',
    '/a?q=eyes.on.me&r=ex.it.now',
    '/v2/user/someone@example.com',
    '/a?x=%zz&y=%E0%A4%A',
  ])('keeps %s readable', (url) => {
    expect(redactUrl(url, ['auth_token'])).toBe(url);
  });

  it('never leaves a token or its signature in the output, however the dots are written (property)', () => {
    const tokens = [TOKEN, SPACED, INNER, NEWLINE, NONE, OPAQUE];
    const spell = fc.constantFrom((t: string) => t, pct, pct2, allPct, (t: string) => t.replace(/\./g, '%2e'), encodeURIComponent);
    const where = fc.constantFrom(
      (t: string) => `/v2/oauth/token/${t}`,
      (t: string) => `/a/${t}/b?c=d`,
      (t: string) => `/a?next=${t}`,
      (t: string) => `/a?x=1&${t}`,
      (t: string) => `/a?x=1;auth_token=${t}`,
      (t: string) => `/a?AUTH_TOKEN=${t}`,
      (t: string) => `/a?auth_token[]=${t}`,
      (t: string) => `/a?b#${t}`,
      (t: string) => `/a?q=prefix-${t}-suffix`,
    );
    fc.assert(
      fc.property(fc.constantFrom(...tokens), spell, where, fc.string({ maxLength: 8 }), (token, sp, w, junk) => {
        const url = w(sp(token)) + (junk.includes('?') || junk.includes('#') ? '' : junk.replace(/[/&]/g, ''));
        const out = redactUrl(url, ['auth_token']);
        const sig = token.split('.')[2]!;
        for (const needle of [token, sp(token), sig.length >= 8 ? sig : token, token.split('.')[1]!]) expect(out).not.toContain(needle);
      }),
      { numRuns: 1000 },
    );
  });

  it('never throws on arbitrary text', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.array(fc.constantFrom('/', '?', '#', '&', '=', '.', '%', '2E', 'eyJ', 'a', ';', '%25')).map((a) => a.join(''))), (s) => {
        redactUrl(s, ['auth_token']);
        redactText(s);
        holdsJws(s);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('redactText', () => {
  it('replaces a JWS run and keeps the words around it', () => {
    expect(redactText(`token ${SPACED} was bad`)).toBe(`token ${REDACTED} was bad`);
  });
  it('replaces the whole text when the token is visible only after decoding', () => {
    expect(redactText(`x=${pct(TOKEN)}`)).toBe(REDACTED);
  });
  it('keeps ordinary text as is', () => {
    expect(redactText('rate-limit store error: ECONNREFUSED 127.0.0.1:6379')).toBe('rate-limit store error: ECONNREFUSED 127.0.0.1:6379');
  });
});

describe('accessFields', () => {
  it('clips every string field to 256 bytes and keeps the others', () => {
    const long = 'é'.repeat(300);
    const out = accessFields({ request_id: 'r1', subject: long, status: 200, upstream_ms: undefined, scopes: ['a', 'x'.repeat(400)] });
    expect(out.request_id).toBe('r1');
    expect(out.status).toBe(200);
    expect(Object.keys(out)).toEqual(['request_id', 'subject', 'status', 'upstream_ms', 'scopes']);
    expect(Buffer.byteLength(out.subject.replace(/…$/, ''))).toBeLessThanOrEqual(256);
    expect(out.subject.endsWith('…')).toBe(true);
    expect((out.scopes as string[])[0]).toBe('a');
    expect(Buffer.byteLength((out.scopes as string[])[1]!)).toBeLessThanOrEqual(256 + 3);
  });

  it('redacts a token in any field before clipping it', () => {
    const out = accessFields({ subject: `${'s'.repeat(240)} ${TOKEN}`, path: `/a/${pct(SPACED)}`, user_agent: SPACED });
    const line = JSON.stringify(out);
    for (const t of [TOKEN, SPACED, SIG, 'c2lnbmF0dXJl']) expect(line).not.toContain(t);
    expect(out.user_agent).toBe(REDACTED);
  });

  it('does not change its input', () => {
    const input = { subject: 'x'.repeat(300) };
    accessFields(input);
    expect(input.subject).toHaveLength(300);
  });
});
