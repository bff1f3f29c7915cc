/**
 * `scopegate check` (SPEC §6) through the built CLI: one small config per error and per warning
 * kind (exit code and message, with YAML path and line), the route table with its limits, the
 * --json shape, and every shipped config passing.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckReport } from '../../src/check.js';
import { ROOT, runCli } from '../helpers/process.js';
import { tempDir, type TempDir } from '../helpers/tokens.js';

const HEAD = `upstreams:
  default: { url: "http://127.0.0.1:9" }
tokens:
  issuers:
    - name: local
      algorithms: [HS256]
      secrets: ["0123456789abcdef0123456789abcdef"]
`;
/** Line of the first route item ("  - ...") in a config built as HEAD + extra + "routes:\n" + routes. */
const HEAD_LINES = HEAD.split('\n').length - 1;

let dir: TempDir;
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(async () => {
  await dir?.cleanup();
});

let n = 0;
async function check(routes: string, opts: { extra?: string; json?: boolean } = {}) {
  const file = await dir.write(`c${++n}.yaml`, `${HEAD}${opts.extra ?? ''}routes:\n${routes}`);
  return runCli(['check', '--config', file, ...(opts.json ? ['--json'] : [])]);
}

/** 1-based line of route `i` when every route before it takes `perRoute` lines and extra none. */
const routeLine = (i: number, perRoute: number) => HEAD_LINES + 2 + i * perRoute;

describe('scopegate check: errors (exit 1)', () => {
  it('reports every duplicate method + path, each with its YAML path and line, and still prints the table', async () => {
    const r = await check(
      [
        '  - { path: "/a/{x}", methods: [GET], scopes: [s] }',
        '  - { path: "/a/{y}", methods: [GET, POST], scopes: [s] }',
        '  - { path: "/a/{z}", methods: [GET], scopes: [s] }',
        '  - { path: /b, scopes: [s] }',
        '  - { path: /b, methods: [DELETE], scopes: [s] }',
        '',
      ].join('\n'),
    );
    expect(r.code).toBe(1);
    const errs = r.stdout.split('\n').filter((l) => /^ {2}error/.test(l));
    expect(errs).toHaveLength(3);
    expect(errs[0]).toMatch(new RegExp(`routes\\[1\\] \\(line ${routeLine(1, 1)}\\) duplicate: .*serves GET on path "/a/\\{y\\}".*"/a/\\{x\\}" \\(routes\\[0\\]\\) already serves`));
    expect(errs[1]).toMatch(new RegExp(`routes\\[2\\] \\(line ${routeLine(2, 1)}\\) duplicate: .*"/a/\\{x\\}" \\(routes\\[0\\]\\)`));
    expect(errs[2]).toMatch(new RegExp(`routes\\[4\\] \\(line ${routeLine(4, 1)}\\) duplicate: .*serves DELETE on path "/b".*routes\\[3\\]`));
    expect(r.stdout).toMatch(/^\/a\/\{y\} +GET,POST,HEAD +\/a\/\{y\}/m);
    expect(r.stdout).toMatch(/3 error\(s\), 0 warning\(s\)/);
  });

  it('reports a duplicate id at the id line', async () => {
    const r = await check(['  - { id: x, path: /a, scopes: [s] }', '  - id: x', '    path: /b', '    scopes: [s]', ''].join('\n'));
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`error +routes\\[1\\]\\.id \\(line ${routeLine(1, 1)}\\) duplicate_id: .*id "x" is already the id of routes\\[0\\]`));
  });

  it('names the YAML path and line of an unknown key', async () => {
    const r = await check(['  - path: /a', '    scopes: [s]', '    scope: [t]', ''].join('\n'));
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`error +routes\\[0\\]\\.scope \\(line ${routeLine(0, 0) + 2}\\): unknown key "scope"`));
    expect(r.stdout).not.toMatch(/^id +methods/m);
  });

  it('prints every schema error with path, line and the allowed values', async () => {
    const r = await check(
      ['  - path: /a', '    methods: [FETCH]', '    scopes: [s]', '    client_types: [robot]', '  - path: /b/*/c', ''].join('\n'),
      { extra: 'fallback: allow\n' },
    );
    expect(r.code).toBe(1);
    const base = HEAD_LINES + 1; // "fallback:" line
    expect(r.stdout).toMatch(new RegExp(`fallback \\(line ${base}\\): .*"deny"\\|"authenticated"`));
    expect(r.stdout).toMatch(new RegExp(`routes\\[0\\]\\.methods\\[0\\] \\(line ${base + 3}\\): .*"GET"\\|"HEAD"\\|"POST"`));
    expect(r.stdout).toMatch(new RegExp(`routes\\[0\\]\\.client_types\\[0\\] \\(line ${base + 5}\\): .*"group"\\|"room"\\|"user"\\|"oauth"`));
    expect(r.stdout).toMatch(new RegExp(`routes\\[1\\]\\.path \\(line ${base + 6}\\): "\\*" is only allowed as the last segment`));
    expect(r.stdout).toMatch(/4 error\(s\)/);
  });

  it('fails on a file that cannot be read', async () => {
    const r = await runCli(['check', '--config', `${dir.path}/missing.yaml`]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/cannot read .*missing\.yaml: ENOENT/);
  });
});

describe('scopegate check: the key files serve would load', () => {
  it('fails on a public_key_file that does not exist, naming its YAML path (serve would fail the same way)', async () => {
    const file = await dir.write(
      'keys-missing.yaml',
      `upstreams:\n  default: { url: "http://127.0.0.1:9" }\ntokens:\n  issuers:\n    - name: idp\n      algorithms: [RS256]\n      public_key_file: ./nope.pem\nroutes:\n  - { path: /a, scopes: [s] }\n`,
    );
    const r = await runCli(['check', '--config', file]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/tokens\.issuers\[0\]\.public_key_file/);
  });
  it('fails on a key file that is not a key', async () => {
    await dir.write('garbage.pem', 'not a key\n');
    const file = await dir.write(
      'keys-garbage.yaml',
      `upstreams:\n  default: { url: "http://127.0.0.1:9" }\ntokens:\n  issuers:\n    - name: idp\n      algorithms: [RS256]\n      public_key_file: ./garbage.pem\nroutes:\n  - { path: /a, scopes: [s] }\n`,
    );
    const r = await runCli(['check', '--config', file]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/public_key_file/);
  });
});

describe('scopegate check: the TLS files serve would load', () => {
  const withTls = (cert: string, key: string) =>
    `listen: { tls: { cert_file: ${cert}, key_file: ${key} } }\nupstreams:\n  default: { url: "http://127.0.0.1:9" }\ntokens:\n  issuers:\n    - name: idp\n      algorithms: [HS256]\n      secrets: ["0123456789abcdef0123456789abcdef"]\nroutes:\n  - { path: /a, scopes: [s] }\n`;

  it('fails on a missing certificate, naming listen.tls.cert_file (serve would fail the same way)', async () => {
    const file = await dir.write('tls-missing.yaml', withTls('./nope.pem', './nope.key'));
    const r = await runCli(['check', '--config', file]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/listen\.tls\.cert_file.*cannot read certificate file .*nope\.pem: ENOENT/);
    expect(r.stdout).toMatch(/listen\.tls\.key_file.*cannot read key file .*nope\.key: ENOENT/);
  });

  it('fails on a key that does not belong to the certificate, and passes the right pair', async () => {
    const openssl = (args: string[]) => execFileSync('openssl', args, { cwd: dir.path, stdio: ['ignore', 'ignore', 'pipe'] });
    for (const name of ['one', 'two']) {
      openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-subj', '/CN=localhost', '-days', '2']);
    }
    const bad = await runCli(['check', '--config', await dir.write('tls-mismatch.yaml', withTls('./one.pem', './two.key'))]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/listen\.tls\.key_file.*does not belong to the certificate/);
    expect(bad.stdout).not.toMatch(/PRIVATE KEY/);
    const good = await runCli(['check', '--config', await dir.write('tls-good.yaml', withTls('./one.pem', './one.key'))]);
    expect(good.stdout).not.toMatch(/listen\.tls/);
    expect(good.code).toBe(0);
  });
});

describe('scopegate check: routes the token service shadows', () => {
  it('warns about a route on a path the token service answers first', async () => {
    const r = await check('  - { path: "/v2/oauth/token", methods: [POST], scopes: [s] }\n', {
      extra: 'token_service: { issuer: local, store: ./data-never-opened }\n',
      json: true,
    });
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as CheckReport;
    expect(report.findings.map((f) => f.code)).toContain('service_shadowed');
  });
});

describe('scopegate check: warnings (exit 0)', () => {
  const warnings: Array<[string, string, RegExp]> = [
    [
      'shadowed',
      ['  - { path: "/a/*", methods: [GET], scopes: [s] }', '  - { path: "/a/{x}", methods: [GET], scopes: [s] }', '  - { path: "/a/{x}/*", methods: [GET], scopes: [s] }'].join('\n'),
      new RegExp(`warning +routes\\[0\\] \\(line ${routeLine(0, 1)}\\) shadowed: .*only used for paths ending in "/"`),
    ],
    [
      'method_shadowed',
      ['  - { path: "/f/*", methods: [GET, POST], scopes: [s] }', '  - { path: "/f/{x}", methods: [GET], scopes: [s] }', '  - { path: "/f/{x}/*", methods: [GET], scopes: [s] }'].join('\n'),
      new RegExp(`warning +routes\\[0\\]\\.methods \\(line ${routeLine(0, 1)}\\) method_shadowed: .*never handles GET`),
    ],
    ['no_scopes', '  - { path: /a, methods: [GET] }', /warning +routes\[0\] \(line \d+\) no_scopes: .*is not public but lists no scopes/],
    [
      'room_param_missing',
      ['  - path: "/r/{room}"', '    scopes: [s]', '    room_param: room_id'].join('\n'),
      new RegExp(`warning +routes\\[0\\]\\.room_param \\(line ${routeLine(0, 0) + 2}\\) room_param_missing: .*room_param "room_id", but its path parameters are \\{room\\}`),
    ],
    [
      'flood_param_missing',
      ['  - path: "/r/{room}/notify"', '    scopes: [s]', '    flood_control: { limit: 1, window_s: 1, param: rooom }'].join('\n'),
      new RegExp(`warning +routes\\[0\\]\\.flood_control\\.param \\(line ${routeLine(0, 0) + 2}\\) flood_param_missing: .*"rooom"`),
    ],
  ];
  it.each(warnings)('reports %s as a warning and passes', async (code, routes, message) => {
    const r = await check(`${routes}\n`);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(message);
    expect(r.stdout).toMatch(/0 error\(s\), 1 warning\(s\)/);
    const j = JSON.parse((await check(`${routes}\n`, { json: true })).stdout) as CheckReport;
    expect(j.ok).toBe(true);
    expect(j.findings.map((f) => `${f.severity} ${f.code}`)).toEqual([`warning ${code}`]);
  });

  it('reports warnings next to duplicates in one run', async () => {
    const r = await check(['  - { path: /a, methods: [GET] }', '  - { path: /a, methods: [GET], scopes: [s] }', ''].join('\n'));
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/warning +routes\[0\] .*no_scopes/);
    expect(r.stdout).toMatch(/error +routes\[1\] .*duplicate/);
    expect(r.stdout).toMatch(/1 error\(s\), 1 warning\(s\)/);
  });
});

describe('scopegate check: the route table', () => {
  const extra = `rate_limit:
  enabled: true
  default: { limit: 500, window_s: 300 }
  client_types:
    room: { limit: 100, window_s: 300 }
    group: { limit: 1000, window_s: 300 }
`;
  const routes = [
    '  - { path: /v2/capabilities, public: true }',
    '  - id: notify',
    '    path: "/v2/room/{room}/notification"',
    '    methods: [POST]',
    '    scopes: [send_notification]',
    '    client_types: [room, user]',
    '    room_param: room',
    '    flood_control: { limit: 30, window_s: 60, param: room }',
    '  - { id: admin, path: "/v2/admin/*", scopes_all: [admin_group, view_group], client_types: [user], rate_limit: { limit: 50, window_s: 60 } }',
    '',
  ].join('\n');

  it('shows methods, scopes, client types, room binding, limits with per-client-type overrides, upstream', async () => {
    const r = await check(routes, { extra });
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines.find((l) => l.startsWith('id '))).toMatch(/^id +methods +path +scopes +client types +room +limits +upstream$/);
    expect(lines.find((l) => l.startsWith('/v2/capabilities'))).toMatch(/\* \(not TRACE, CONNECT\) +\/v2\/capabilities +public +- +- +- +default/);
    expect(lines.find((l) => l.startsWith('notify'))).toMatch(
      /POST +\/v2\/room\/\{room\}\/notification +any of send_notification +room,user +\{room\} +500\/300s \(room 100\/300s\); flood 30\/60s per \{room\} +default/,
    );
    expect(lines.find((l) => l.startsWith('admin'))).toMatch(/\* \(not TRACE, CONNECT\) +\/v2\/admin\/\* +all of admin_group view_group +user +- +50\/60s \(own window\) +default/);
    expect(r.stdout).toMatch(/0 error\(s\), 0 warning\(s\)/);
  });

  it('--json gives the documented stable shape', async () => {
    const r = await check(routes, { extra, json: true });
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as CheckReport;
    expect(Object.keys(j)).toEqual(['ok', 'file', 'summary', 'errors', 'findings', 'routes']);
    expect(j.summary).toEqual({ routes: 3, errors: 0, warnings: 0 });
    expect(j.routes[1]).toEqual({
      id: 'notify',
      index: 1,
      line: HEAD_LINES + extra.split('\n').length - 1 + 3,
      methods: ['POST'],
      path: '/v2/room/{room}/notification',
      public: false,
      scopes: { mode: 'any', list: ['send_notification'] },
      client_types: ['room', 'user'],
      room_param: 'room',
      rate_limit: { limit: 500, window_s: 300, window: 'token', client_types: { room: { limit: 100, window_s: 300 } } },
      flood_control: { limit: 30, window_s: 60, param: 'room' },
      upstream: 'default',
    });
    expect(j.routes[0]).toMatchObject({ public: true, scopes: { mode: 'public', list: [] }, client_types: [], rate_limit: null, methods: null });
    expect(j.routes[2]).toMatchObject({ scopes: { mode: 'all' }, rate_limit: { limit: 50, window_s: 60, window: 'route', client_types: {} } });

    const bad = JSON.parse((await check('  - { path: /a, bogus: 1 }\n', { json: true })).stdout) as CheckReport;
    expect(bad.ok).toBe(false);
    expect(bad.errors).toEqual([{ path: 'routes[0].bogus', line: HEAD_LINES + 2, message: 'unknown key "bogus"' }]);
  });
});

describe('scopegate check on the shipped configs', () => {
  const files = readdirSync(`${ROOT}/config`).filter((f) => /\.ya?ml$/.test(f));
  it.each(files)('passes config/%s', async (file) => {
    const r = await runCli(['check', '--config', `config/${file}`], { env: { SCOPEGATE_HS_SECRET: 'dummy-secret-0123456789abcdef0123' } });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^✓ /);
    expect(r.stdout).toMatch(/0 error\(s\)/);
  });
});
