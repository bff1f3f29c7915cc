/**
 * The middleware's options (options.ts, through `scopegate()`): validated once, synchronously,
 * in `scopegate check`'s words; what only a listening gateway uses is refused; key files are
 * read at build time. Property tests: arbitrary options objects and arbitrary config files never
 * throw anything but ScopegateConfigError, and never compile with a refused key.
 */
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { runCheck } from '../../check.js';
import { ConfigError } from '../../errors.js';
import { TEST_ISSUER, TEST_SECRET } from '../../../test/helpers/gateway.js';
import { generateKeys, hsToken, signToken } from '../../../test/helpers/tokens.js';
import { scopegate, ScopegateConfigError } from './index.js';

const dir = mkdtempSync(join(tmpdir(), 'sg-hono-opts-'));
let seq = 0;
function file(text: string, name = `c-${++seq}.yaml`, sub = ''): string {
  const d = join(dir, sub);
  mkdirSync(d, { recursive: true });
  const f = join(d, name);
  writeFileSync(f, text);
  return f;
}

const GOOD = `realm: api
tokens:
  issuers:
${TEST_ISSUER}
routes:
  - id: get-room
    path: /v2/room/{room}
    methods: [GET]
    scopes: [view_room]
`;

/** The error scopegate(options) throws; fails the test when it does not throw synchronously. */
function thrown(options: unknown): ScopegateConfigError {
  try {
    scopegate(options as Parameters<typeof scopegate>[0]);
  } catch (e) {
    expect(e).toBeInstanceOf(ScopegateConfigError);
    return e as ScopegateConfigError;
  }
  throw new Error('scopegate(options) did not throw');
}

const INLINE_TOKENS = { issuers: [{ name: 'local', issuer: 'scopegate-test', audience: 'api', algorithms: ['HS256'], secrets: [TEST_SECRET] }] };

describe('scopegate(options): validation', () => {
  it('builds from a good file and from a good object without throwing', () => {
    expect(typeof scopegate({ configFile: file(GOOD) })).toBe('function');
    expect(typeof scopegate({ tokens: INLINE_TOKENS, routes: [{ path: '/x', scopes: ['a'] }] })).toBe('function');
  });

  it('throws ScopegateConfigError synchronously with the issues `scopegate check` reports for the same file', async () => {
    const bad = file(`realm: api
tokens:
  issuers:
${TEST_ISSUER}
  bogus: 1
rate_limit:
  store: memcached
routes:
  - path: /v2/room/{room}
    methods: [FETCH]
`);
    const err = thrown({ configFile: bad });
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.name).toBe('ScopegateConfigError');
    const report = await runCheck(bad);
    const fromCheck = report.errors.map((i) => ({ path: i.path, line: i.line, message: i.message }));
    const ours = err.issues.map((i) => ({ path: i.path, line: i.line ?? null, message: i.message }));
    // check sorts and may add the missing-upstream complaint; every one of ours is one of check's, in check's words
    expect(ours.length).toBeGreaterThanOrEqual(3);
    for (const i of ours) expect(fromCheck).toContainEqual(i);
    expect(ours.map((i) => i.path)).toEqual(expect.arrayContaining(['tokens.bogus', 'rate_limit.store', 'routes[0].methods[0]']));
    expect(err.message).toContain(`invalid config ${bad}:`);
    expect(err.message).toMatch(/rate_limit\.store \(line 11\): /);
  });

  it('refuses listen, admin and upstreams in a file, naming their lines', () => {
    const f = file(`listen: { port: 8080 }
admin: { port: 9090 }
upstreams:
  default: { url: "http://127.0.0.1:1" }
${GOOD}`);
    const err = thrown({ configFile: f });
    expect(err.issues.map((i) => [i.path, i.line])).toEqual([
      ['listen', 1],
      ['admin', 2],
      ['upstreams', 3],
    ]);
    expect(err.issues[2]!.message).toMatch(/not used by the Hono middleware/);
  });

  it('refuses listen, admin, upstreams and a route upstream in an object', () => {
    const err = thrown({
      tokens: INLINE_TOKENS,
      listen: { port: 1 },
      admin: { enabled: false },
      upstreams: { default: { url: 'http://127.0.0.1:1' } },
      routes: [{ path: '/x', scopes: ['a'], upstream: 'default' }],
    });
    expect(err.issues.map((i) => i.path)).toEqual(['listen', 'admin', 'upstreams', 'routes[0].upstream']);
  });

  it('refuses forward_auth, watch, shutdown_timeout_ms and unknown keys', () => {
    expect(thrown({ tokens: INLINE_TOKENS, forward_auth: { path: '/a' }, watch: true, shutdown_timeout_ms: 1, tokenz: 1 }).issues.map((i) => i.path)).toEqual([
      'forward_auth',
      'watch',
      'shutdown_timeout_ms',
      'tokenz',
    ]);
    expect(thrown({ configFile: file(GOOD), routes: [] }).issues[0]!.message).toMatch(/next to configFile/);
  });

  it('reports schema problems of an object by YAML path, as check would', () => {
    const err = thrown({ tokens: { issuers: [{ name: 'x', algorithms: ['none'], secrets: ['s'] }] }, routes: [{ path: 'no-slash' }], fallback: 'maybe' });
    const paths = err.issues.map((i) => i.path);
    expect(paths).toContain('tokens.issuers[0].algorithms[0]');
    expect(paths).toContain('fallback');
    expect(err.issues.find((i) => i.path === 'fallback')!.message).toMatch(/deny|authenticated/);
  });

  it('reports duplicate routes (compiled at build time) with their lines', () => {
    const f = file(`${GOOD}  - path: /v2/room/{other}
    methods: [GET]
    scopes: [view_room]
`);
    const err = thrown({ configFile: f });
    expect(err.issues.length).toBeGreaterThan(0);
    expect(err.issues[0]!.path).toMatch(/^routes\[\d\]/);
    expect(err.issues[0]!.line).toBeGreaterThan(5);
  });

  it('names an unreadable config file as check does', () => {
    const missing = join(dir, 'nope.yaml');
    const err = thrown({ configFile: missing });
    expect(err.issues).toEqual([{ path: '', message: `cannot read ${missing}: ENOENT` }]);
  });

  it('fails at build time, not on the first request, for a key file that does not exist', () => {
    const err = thrown({ tokens: { issuers: [{ name: 'idp', algorithms: ['RS256'], public_key_file: 'keys/missing.pem' }] }, baseDir: dir });
    expect(err.issues).toEqual([{ path: 'tokens.issuers[0].public_key_file', message: `cannot read key file ${join(dir, 'keys/missing.pem')}: ENOENT` }]);
    const f = file(`tokens:
  issuers:
    - name: idp
      algorithms: [RS256]
      jwks_file: ./jwks.json
routes: []
`);
    const e2 = thrown({ configFile: f });
    expect(e2.issues[0]).toMatchObject({ path: 'tokens.issuers[0].jwks_file', line: 5 });
  });

  it('refuses an issuer without a key source (the token service store is out of reach)', () => {
    const err = thrown({
      tokens: { issuers: [{ name: 'local', algorithms: ['ES256'] }] },
      token_service: { issuer: 'local' },
    });
    expect(err.issues[0]).toMatchObject({ path: 'tokens.issuers[0]' });
    expect(err.issues[0]!.message).toMatch(/jwks_url/);
  });

  it('refuses options that are not an object, and runtime options that are not functions', () => {
    for (const v of [undefined, null, 'config.yaml', 42, []]) expect(thrown(v).issues[0]!.path).toBe('');
    expect(thrown({ configFile: file(GOOD), clock: 5 }).issues).toEqual([{ path: 'clock', message: 'must be a function' }]);
  });

  it('expands ${ENV} from the env option and resolves key files against the config file', async () => {
    const keys = await generateKeys('RS256', { kid: 'k1' });
    file(keys.publicPem, 'pub.pem', 'nested');
    const f = file(
      `realm: \${REALM}
tokens:
  issuers:
    - name: idp
      issuer: \${ISS:-https://idp.example}
      algorithms: [RS256]
      public_key_file: pub.pem
routes:
  - path: /v2/x
    scopes: [a]
`,
      'c.yaml',
      'nested',
    );
    const app = new Hono();
    app.use('*', scopegate({ configFile: f, env: { REALM: 'env-realm' } }));
    app.get('/v2/x', (c) => c.text(`${c.get('scopegate')?.issuer}`));
    const denied = await app.request('/v2/x');
    expect(denied.headers.get('www-authenticate')).toBe('Bearer realm="env-realm"');
    const t = await signToken(keys, { iss: 'https://idp.example', sub: 's', scope: 'a', client_type: 'user', exp: Math.floor(Date.now() / 1000) + 60 });
    const ok = await app.request('/v2/x', { headers: { authorization: `Bearer ${t}` } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe('https://idp.example');
    expect(thrown({ configFile: f, env: {} }).issues[0]!.message).toMatch(/environment variable REALM is not set/);
  });

  it('reports the issuer name as `issuer` for an issuer matched without iss', async () => {
    const app = new Hono();
    app.use('*', scopegate({ tokens: { issuers: [{ name: 'no-iss', algorithms: ['HS256'], secrets: [TEST_SECRET] }] }, routes: [{ path: '/x' }] }));
    app.get('/x', (c) => c.json(c.get('scopegate')));
    const t = await hsToken(TEST_SECRET, { sub: 's', client_type: 'group', exp: Math.floor(Date.now() / 1000) + 60 });
    const res = await app.request('/x', { headers: { authorization: `Bearer ${t}` } });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ issuer: 'no-iss', subject: 's', route: '/x', scopes: [] });
  });
});

describe('scopegate(options): properties', () => {
  const REFUSED = ['listen', 'admin', 'upstreams', 'forward_auth', 'watch', 'shutdown_timeout_ms'];

  it('arbitrary options objects never throw anything but ScopegateConfigError, and never compile with a refused key', () => {
    const key = fc.oneof(fc.constantFrom('tokens', 'rate_limit', 'routes', 'realm', 'docs_url', 'fallback', 'trusted_proxies', 'token_service', 'baseDir', ...REFUSED), fc.string());
    const value = fc.oneof(fc.anything(), fc.constant(INLINE_TOKENS), fc.constant([{ path: '/x' }]));
    fc.assert(
      fc.property(fc.dictionary(key, value, { maxKeys: 6 }), (o) => {
        let built = false;
        try {
          scopegate(o as unknown as Parameters<typeof scopegate>[0]);
          built = true;
        } catch (e) {
          expect(e).toBeInstanceOf(ScopegateConfigError);
          expect((e as ScopegateConfigError).issues.length).toBeGreaterThan(0);
        }
        if (built) for (const k of REFUSED) expect(Object.keys(o)).not.toContain(k);
      }),
      { numRuns: 400 },
    );
  });

  it('arbitrary config file text never throws anything but ScopegateConfigError', () => {
    const line = fc.oneof(
      fc.constantFrom('tokens:', '  issuers:', TEST_ISSUER, 'routes:', '  - path: /x', '    scopes: [a]', 'listen: {port: 1}', 'upstreams: {}', 'realm: ${R}', 'realm: __SGENV_7__', '...', '---', '{a: 1}', '- x'),
      fc.stringMatching(/^[ -~]{0,30}$/),
    );
    const f = join(dir, 'prop.yaml');
    fc.assert(
      fc.property(fc.array(line, { maxLength: 12 }), (lines) => {
        writeFileSync(f, lines.join('\n'));
        let built = false;
        try {
          scopegate({ configFile: f, env: {} });
          built = true;
        } catch (e) {
          expect(e).toBeInstanceOf(ScopegateConfigError);
        }
        if (built) expect(lines.some((l) => /^(listen|upstreams):/.test(l))).toBe(false);
      }),
      { numRuns: 300 },
    );
  });
});
