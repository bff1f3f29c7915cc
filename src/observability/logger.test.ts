import { describe, it, expect } from 'vitest';
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { createLogger, redactQuery, redactUrl, tokenFingerprint, REDACTED } from './logger.js';

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
