import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { loadConfigText } from './load.js';

const minimal = (extra = '', routes = '  - { path: /a, scopes: [x] }') => `
upstreams:
  default: { url: "http://127.0.0.1:1" }
tokens:
  issuers:
    - name: local
      algorithms: [HS256]
      secrets: ["\${SECRET:-0123456789abcdef0123}"]
${extra}
routes:
${routes}
`;

function issuesOf(text: string, env: Record<string, string> = {}) {
  try {
    loadConfigText(text, { env });
  } catch (e) {
    if (e instanceof ConfigError) return e.issues;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfigText', () => {
  it('fills defaults for a minimal config', () => {
    const { config, routes } = loadConfigText(minimal());
    expect(config.listen).toEqual({ host: '0.0.0.0', port: 8080, header_timeout_ms: 10_000, body_idle_timeout_ms: 30_000, idle_timeout_ms: 65_000, max_connections: 10_000, underscore_headers: 'drop' });
    expect(config.admin.port).toBe(9090);
    expect(config.realm).toBe('scopegate');
    expect(config.tokens.sources).toEqual(['header', 'query']);
    expect(config.tokens.clock_tolerance_s).toBe(60);
    expect(config.tokens.issuers[0]!.require_exp).toBe(true);
    expect(config.rate_limit.enabled).toBe(false);
    expect(routes.routes).toHaveLength(1);
  });

  it('interpolates ${ENV} and ${ENV:-default}, turning a whole-number reference into a number', () => {
    const text = minimal('listen: { port: "${PORT}", host: "${HOST:-127.0.0.1}" }');
    const { config } = loadConfigText(text, { env: { PORT: '18087', SECRET: 'from-env-secret-1234567' } });
    expect(config.listen).toMatchObject({ host: '127.0.0.1', port: 18087 });
    expect(config.tokens.issuers[0]!.secrets).toEqual(['from-env-secret-1234567']);
  });

  it('never lets an environment value inject YAML structure', () => {
    const { config } = loadConfigText(minimal('realm: "${REALM}"'), { env: { REALM: 'x\nwatch: true' } });
    expect(config.realm).toBe('x\nwatch: true');
    expect(config.watch).toBe(false);
  });

  it('reports an unset variable with its YAML path and line', () => {
    const issues = issuesOf(minimal('docs_url: ${DOCS}'));
    expect(issues).toContainEqual(expect.objectContaining({ path: 'docs_url', line: 9, message: expect.stringContaining('DOCS is not set') }));
  });

  it('rejects unknown keys, naming the path and line', () => {
    const issues = issuesOf(minimal('rate_limit: { stor: memory }'));
    expect(issues).toContainEqual(expect.objectContaining({ path: 'rate_limit.stor', line: 9, message: 'unknown key "stor"' }));
  });

  it('names the allowed values of an enum', () => {
    const issues = issuesOf(minimal('rate_limit: { store: memcached }'));
    const i = issues.find((x) => x.path === 'rate_limit.store');
    expect(i?.message).toMatch(/memory/);
    expect(i?.message).toMatch(/redis/);
  });

  it('rejects alg none: it is not a configurable algorithm', () => {
    const issues = issuesOf(minimal().replace('[HS256]', '[none]'));
    expect(issues.some((i) => i.path === 'tokens.issuers[0].algorithms[0]')).toBe(true);
  });

  it('rejects an issuer with two key sources or an HMAC alg without secrets', () => {
    const two = issuesOf(minimal().replace('      algorithms: [HS256]', '      jwks_file: k.json\n      algorithms: [HS256]'));
    expect(two.some((i) => i.path === 'tokens.issuers[0]' && /several key sources/.test(i.message))).toBe(true);
  });

  it('rejects a route naming an unknown upstream', () => {
    const issues = issuesOf(minimal('', '  - { path: /a, scopes: [x], upstream: billing }'));
    expect(issues).toContainEqual(expect.objectContaining({ path: 'routes[0].upstream', message: expect.stringContaining('unknown upstream "billing"') }));
  });

  it('rejects malformed route patterns', () => {
    for (const bad of ['/a/*/b', 'a', '/a//b', '/a/{x}/{x}', '/a/%2F']) {
      const issues = issuesOf(minimal('', `  - { path: "${bad}", scopes: [x] }`));
      expect(issues.some((i) => i.path === 'routes[0].path'), bad).toBe(true);
    }
  });

  it('rejects the same method and path twice, whatever the parameter names', () => {
    const issues = issuesOf(minimal('', '  - { path: "/a/{x}", methods: [GET], scopes: [x] }\n  - { path: "/a/{y}", methods: [GET, POST], scopes: [x] }'));
    expect(issues.some((i) => i.path.startsWith('routes[1]'))).toBe(true);
  });

  it('reports YAML syntax errors with a line', () => {
    const issues = issuesOf('upstreams:\n  default: { url: "x"\n');
    expect(issues[0]!.message).toMatch(/^YAML syntax/);
    expect(issues[0]!.line).toBeGreaterThan(0);
  });

  it('collects every problem in one error', () => {
    const issues = issuesOf(minimal('realm: 5\nfallback: maybe\nwatch: "yes"'));
    expect(issues.map((i) => i.path)).toEqual(expect.arrayContaining(['realm', 'fallback', 'watch']));
  });
});

describe('interpolation inside flow collections', () => {
  it('expands ${VAR} in a flow mapping, as the shared bench configs write it', () => {
    const text = minimal('listen: { host: 127.0.0.1, port: ${PORT} }\nadmin: { port: ${ADMIN:-9999} }');
    const { config } = loadConfigText(text, { env: { PORT: '18087' } });
    expect(config.listen).toMatchObject({ host: '127.0.0.1', port: 18087 });
    expect(config.admin.port).toBe(9999);
  });

  it('keeps a value with YAML syntax in it as plain text, even in flow context', () => {
    const text = minimal('realm: ${REALM}\nlisten: { host: ${HOST}, port: 1 }');
    const { config } = loadConfigText(text, { env: { REALM: '{ evil: 1 }, watch: true', HOST: 'a, port: 2' } });
    expect(config.realm).toBe('{ evil: 1 }, watch: true');
    expect(config.listen).toMatchObject({ host: 'a, port: 2', port: 1 });
  });

  it('keeps $${ as a literal ${', () => {
    const { config } = loadConfigText(minimal('realm: "a$${B}"'));
    expect(config.realm).toBe('a${B}');
  });
});

describe('a literal placeholder-looking text', () => {
  it('is kept as text, not mistaken for an environment reference', () => {
    const { config } = loadConfigText(minimal().replace('upstreams:', 'realm: __SGENV_3__\nupstreams:'));
    expect(config.realm).toBe('__SGENV_3__');
  });
});
