/**
 * The Hono middleware behind real servers and real sockets (SPEC §8): @hono/node-server's
 * `serve({ fetch, port: 0 })` in this process, and `Bun.serve` in a Bun process
 * (node_modules/.bin/bun running a small app on the TypeScript source, port 0). Real tokens
 * (TEST_SECRET), raw HTTP/1.1 requests (so two `Authorization` lines reach the server as two
 * lines). Each app counts its handler runs on /handled, so every refusal and auth_test can be
 * shown to have run nothing. The shipped example (examples/hono-app/server.mjs) is run on Node
 * and on Bun when dist/ has been built (`npm test` builds first).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scopegate } from '../../src/doors/hono/index.js';
import { TEST_ISSUER, TEST_SECRET } from '../helpers/gateway.js';
import { rawExchange, rawRequest, type RawResponse } from '../helpers/http.js';
import { BUN, ROOT } from '../helpers/process.js';
import { hsToken } from '../helpers/tokens.js';

// A 31-day window (the schema's longest): no window boundary falls inside a test run.
const WINDOW_S = 2_678_400;
const CONFIG = `realm: api
tokens:
  issuers:
${TEST_ISSUER}
      claims: { client_type: client_type, scopes: scope, room: room_id, room_name: room_name }
rate_limit:
  store: memory
  default: { limit: 2, window_s: ${WINDOW_S} }
routes:
  - path: /v2/capabilities
    public: true
  - id: get-room
    path: /v2/room/{room_id_or_name}
    methods: [GET]
    scopes: [view_group, view_room]
    client_types: [group, room, user]
    room_param: room_id_or_name
`;

const dir = mkdtempSync(join(tmpdir(), 'sg-hono-srv-'));
const configFile = join(dir, 'scopegate.yaml');
writeFileSync(configFile, CONFIG);

let seq = 0;
function token(claims: Record<string, unknown> = {}): Promise<string> {
  return hsToken(TEST_SECRET, {
    iss: 'scopegate-test',
    aud: 'api',
    sub: 'user-1',
    client_type: 'user',
    scope: 'view_group',
    exp: Math.floor(Date.now() / 1000) + 3600,
    jti: `srv-${process.pid}-${++seq}`,
    ...claims,
  });
}

/** The app both servers run (the Bun script below is the same app, as text). */
function buildApp(): Hono {
  const app = new Hono();
  let handled = 0;
  app.get('/handled', (c) => c.json({ handled }));
  app.use('/v2/*', scopegate({ configFile }));
  app.get('/v2/capabilities', (c) => (handled++, c.json({ principal: c.get('scopegate') ?? null })));
  app.get('/v2/room/:room', (c) => (handled++, c.json({ room: c.req.param('room'), principal: c.get('scopegate') })));
  return app;
}

const BUN_APP = `
import { Hono } from ${JSON.stringify(join(ROOT, 'node_modules/hono/dist/index.js'))};
import { scopegate } from ${JSON.stringify(join(ROOT, 'src/doors/hono/index.ts'))};
const app = new Hono();
let handled = 0;
app.get('/handled', (c) => c.json({ handled }));
app.use('/v2/*', scopegate({ configFile: process.argv[2] }));
app.get('/v2/capabilities', (c) => (handled++, c.json({ principal: c.get('scopegate') ?? null })));
app.get('/v2/room/:room', (c) => (handled++, c.json({ room: c.req.param('room'), principal: c.get('scopegate') })));
const server = Bun.serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' });
console.log(JSON.stringify({ msg: 'hono-app listening', url: 'http://127.0.0.1:' + server.port }));
`;

interface Running {
  url: string;
  stop(): Promise<void>;
}

function startNode(): Promise<Running> {
  return new Promise((resolve) => {
    const server: ServerType = serve({ fetch: buildApp().fetch, port: 0, hostname: '127.0.0.1' }, (info) =>
      resolve({ url: `http://127.0.0.1:${info.port}`, stop: () => new Promise((r) => server.close(() => r())) }),
    );
  });
}

/** Spawns `runtime script args`, resolving with the URL from its "hono-app listening" line. */
function spawnApp(runtime: string, args: string[], env: Record<string, string> = {}): Promise<Running & { child: ChildProcess }> {
  const child = spawn(runtime, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line within 20 s; stderr: ${err}`)), 20_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited (${code}) before listening; stderr: ${err}`));
    });
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const line = out.split('\n').find((l) => l.includes('hono-app listening'));
      if (!line) return;
      clearTimeout(timer);
      const { url } = JSON.parse(line) as { url: string };
      resolve({
        url,
        child,
        stop: async () => {
          if (child.exitCode === null) child.kill('SIGKILL');
          await exited;
        },
      });
    });
  });
}

/** A JSON body: an envelope, the app's answer or /handled's count. */
interface Body {
  [k: string]: unknown;
  error: { reason: string; [k: string]: unknown };
}
const body = (r: RawResponse) => JSON.parse(r.body) as Body;

/** The behaviours SPEC §8 asks of the door, against one running app. */
function behaviours(name: string, start: () => Promise<Running>): void {
  describe(name, () => {
    let app: Running;
    beforeAll(async () => {
      app = await start();
    }, 30_000);
    afterAll(async () => {
      await app?.stop();
    });
    const handled = async () => body(await rawRequest(app.url, 'GET', '/handled'))['handled'] as number;

    it('allows a valid token and hands the handler the principal; adds the rate-limit headers', async () => {
      const before = await handled();
      const t = await token({ sub: 'alice', group_id: 'g7' });
      const r = await rawRequest(app.url, 'GET', '/v2/room/42', { authorization: `Bearer ${t}` });
      expect(r.status).toBe(200);
      expect(body(r)).toEqual({
        room: '42',
        principal: { subject: 'alice', clientType: 'user', scopes: ['view_group'], group: 'g7', tokenId: `srv-${process.pid}-${seq}`, issuer: 'scopegate-test', route: 'get-room' },
      });
      expect(r.headers['x-ratelimit-limit']).toBe('2');
      expect(r.headers['x-ratelimit-remaining']).toBe('1');
      expect(Number(r.headers['x-ratelimit-reset'])).toBe((Math.floor(Date.now() / 1000 / WINDOW_S) + 1) * WINDOW_S);
      expect(r.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      expect(await handled()).toBe(before + 1);
    });

    it('answers 401 token_missing with WWW-Authenticate; the handler never runs', async () => {
      const before = await handled();
      const r = await rawRequest(app.url, 'GET', '/v2/room/42');
      expect(r.status).toBe(401);
      expect(r.headers['www-authenticate']).toBe('Bearer realm="api"');
      expect(r.headers['content-type']).toBe('application/json');
      expect(body(r)).toEqual({ error: { code: 401, message: 'Authenticated requests only.', type: 'Unauthorized', reason: 'token_missing' } });
      expect(await handled()).toBe(before);
    });

    it('answers 403 scope_insufficient and 403 room_forbidden; the handler never runs', async () => {
      const before = await handled();
      const weak = await rawRequest(app.url, 'GET', '/v2/room/42', { authorization: `Bearer ${await token({ scope: 'send_message' })}` });
      expect(weak.status).toBe(403);
      expect(body(weak)['error'].reason).toBe('scope_insufficient');
      expect(weak.headers['www-authenticate']).toBe('Bearer realm="api", error="insufficient_scope", scope="view_group view_room"');
      const roomToken = await token({ client_type: 'room', room_id: '42', scope: 'view_room' });
      const other = await rawRequest(app.url, 'GET', '/v2/room/43', { authorization: `Bearer ${roomToken}` });
      expect(other.status).toBe(403);
      expect(body(other)['error'].reason).toBe('room_forbidden');
      expect(await handled()).toBe(before);
    });

    it('answers 429 with Retry-After and X-Ratelimit headers once the budget is spent', async () => {
      const t = await token();
      for (let i = 0; i < 2; i++) expect((await rawRequest(app.url, 'GET', '/v2/room/42', { authorization: `Bearer ${t}` })).status).toBe(200);
      const before = await handled();
      const sentAt = Date.now();
      const r = await rawRequest(app.url, 'GET', '/v2/room/42', { authorization: `Bearer ${t}` });
      const answeredAt = Date.now();
      expect(r.status).toBe(429);
      expect(body(r)['error']).toMatchObject({ code: 429, message: 'Rate limit exceeded', reason: 'rate_limited' });
      // Retry-After is counted at the moment of the decision, somewhere between sending and the
      // answer; reading the clock once afterwards fails whenever a second boundary falls between.
      const reset = Number(r.headers['x-ratelimit-reset']);
      const retryAfter = Number(r.headers['retry-after']);
      expect(retryAfter).toBeGreaterThanOrEqual(Math.max(0, Math.ceil(reset - answeredAt / 1000)));
      expect(retryAfter).toBeLessThanOrEqual(Math.max(0, Math.ceil(reset - sentAt / 1000)));
      expect(r.headers['x-ratelimit-remaining']).toBe('0');
      expect(await handled()).toBe(before);
    });

    it('answers auth_test=true with the 202 without running the handler or spending budget', async () => {
      const before = await handled();
      const t = await token();
      const r = await rawRequest(app.url, 'GET', '/v2/room/42?auth_test=true', { authorization: `Bearer ${t}` });
      expect(r.status).toBe(202);
      expect(r.body).toBe('{"success":{"code":202,"message":"This auth_token has access to use this method.","type":"Accepted"}}');
      expect(r.headers['x-ratelimit-remaining']).toBe('2');
      expect(await handled()).toBe(before);
    });

    it('answers 400 token_conflict for two Authorization header lines on the wire', async () => {
      const before = await handled();
      const a = await token();
      const b = await token();
      const r = await rawRequest(app.url, 'GET', '/v2/room/42', { authorization: [`Bearer ${a}`, `Bearer ${b}`] });
      expect(r.status).toBe(400);
      expect(body(r)['error'].reason).toBe('token_conflict');
      expect(r.headers['www-authenticate']).toBe('Bearer realm="api", error="invalid_request"');
      const same = await rawRequest(app.url, 'GET', '/v2/room/42', { authorization: [`Bearer ${a}`, `Bearer ${a}`] });
      expect(same.status).toBe(400);
      expect(await handled()).toBe(before);
    });

    it('runs a public route with no principal', async () => {
      const r = await rawRequest(app.url, 'GET', '/v2/capabilities');
      expect(r.status).toBe(200);
      expect(body(r)).toEqual({ principal: null });
    });
  });
}

behaviours('behind @hono/node-server', startNode);
behaviours('behind Bun.serve (a Bun process)', () => {
  const script = join(dir, 'bun-app.mjs');
  writeFileSync(script, BUN_APP);
  return spawnApp(BUN, [script, configFile]);
});

describe('behind Bun.serve, a request without a usable Host', () => {
  let app: Running;
  beforeAll(async () => {
    const script = join(dir, 'bun-app-hostless.mjs');
    writeFileSync(script, BUN_APP);
    app = await spawnApp(BUN, [script, configFile]);
  }, 30_000);
  afterAll(() => app?.stop());

  /** One raw exchange; Bun.serve gives the app a relative req.url when the Host is missing. */
  const exchange = (head: string): Promise<string> => rawExchange(app.url, head);
  const count = async (): Promise<number> => body(await rawRequest(app.url, 'GET', '/handled'))['handled'] as number;

  it('is refused 400 by the middleware, so no path the decision picks can differ from the one Hono runs; the handler never runs', async () => {
    const t = await token();
    const before = await count();
    // Hono cuts a relative URL's path at the first "/" after index (first ":") + 4: this one it
    // routes to /v2/room/42, while the old target rule (cut after the first segment) decided on
    // the public /v2/capabilities: the room handler ran without authentication.
    const confused = await exchange('GET /x/v2/capabilities?a=:123/v2/room/42 HTTP/1.0\r\n\r\n');
    expect(confused.startsWith('HTTP/1.1 400 '), confused.slice(0, 100)).toBe(true);
    expect(confused).toContain('"reason":"bad_request"');
    const plain = await exchange(`GET /abc/v2/room/42 HTTP/1.0\r\nAuthorization: Bearer ${t}\r\n\r\n`);
    expect(plain.startsWith('HTTP/1.1 400 '), plain.slice(0, 100)).toBe(true);
    expect(await count()).toBe(before);
    // With a Host, the same request is decided as usual.
    expect((await exchange(`GET /v2/room/42 HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer ${t}\r\n\r\n`)).startsWith('HTTP/1.1 200 ')).toBe(true);
    expect(await count()).toBe(before + 1);
  });
});

const DIST = join(ROOT, 'dist/doors/hono/index.js');
const EXAMPLE = join(ROOT, 'examples/hono-app/server.mjs');
const SECRET = 'example-secret-0123456789abcdef-0123';

describe.skipIf(!existsSync(DIST))('the shipped example (examples/hono-app, on dist/)', () => {
  for (const runtime of ['node', 'bun'] as const) {
    it(`serves on ${runtime}: public route, 401, and an allowed room call with a token from mint.mjs`, async () => {
      const exe = runtime === 'node' ? process.execPath : BUN;
      const app = await spawnApp(exe, [EXAMPLE], { PORT: '0', HONO_EXAMPLE_SECRET: SECRET });
      try {
        expect((await rawRequest(app.url, 'GET', '/v2/capabilities')).status).toBe(200);
        const denied = await rawRequest(app.url, 'GET', '/v2/room/42');
        expect(denied.status).toBe(401);
        expect(denied.headers['www-authenticate']).toBe('Bearer realm="hono-example"');
        const minted = await new Promise<string>((resolve, reject) => {
          const m = spawn(process.execPath, [join(ROOT, 'examples/hono-app/mint.mjs'), '--sub', 'ex-user', '--scopes', 'view_room'], {
            cwd: ROOT,
            env: { ...process.env, HONO_EXAMPLE_SECRET: SECRET },
          });
          let out = '';
          m.stdout.on('data', (c: Buffer) => (out += c.toString()));
          m.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`mint exited ${code}`))));
        });
        const ok = await rawRequest(app.url, 'GET', '/v2/room/42', { authorization: `Bearer ${minted}` });
        expect(ok.status).toBe(200);
        expect(body(ok)['principal']).toMatchObject({ subject: 'ex-user', route: 'get-room', issuer: 'hono-example' });
        expect(body(await rawRequest(app.url, 'GET', '/handled'))['handled']).toBe(2);
      } finally {
        await app.stop();
      }
    }, 30_000);
  }
});
