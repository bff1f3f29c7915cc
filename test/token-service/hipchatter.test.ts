/**
 * A real HipChat client library against the gateway: `hipchatter` (npm, 1.0.0), pointed at the
 * gateway by its own `api_root` constructor argument (`new Hipchatter(token, '<gateway>/v2/')`;
 * it sends the token as `?auth_token=`, as HipChat's v2 clients did). A room notification token
 * made on the Integration page (its real forms, over HTTP) sends a notification through the
 * gateway to a real upstream; after it is deleted on the page, the library reports HipChat's
 * "Invalid OAuth session". Personal tokens and sessions through the library's generic
 * `request` (the paths HipChat's API had): create, read the session, delete it.
 */
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSecret } from '../../src/token-service/secrets.js';
import type { TokenStore } from '../../src/token-service/store.js';
import { openTokenStore } from '../../src/token-service/store/open.js';
import { startTestGateway, TEST_ISSUER, type TestGateway } from '../helpers/gateway.js';
import { tempDir, type TempDir } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

interface HipchatterClient {
  notify(room: string, options: { message: string; token?: string; color?: string }, cb: (err: Error | null, body?: unknown, status?: number) => void): void;
  request(type: string, path: string, payload: unknown, cb: (err: Error | null, body?: unknown, status?: number) => void): void;
  request(type: string, path: string, cb: (err: Error | null, body?: unknown, status?: number) => void): void;
}
type HipchatterCtor = new (token: string, apiRoot?: string) => HipchatterClient;
const Hipchatter = createRequire(import.meta.url)('hipchatter') as HipchatterCtor;

function call<T>(f: (cb: (err: Error | null, body?: unknown, status?: number) => void) => void): Promise<{ err: Error | null; body: T; status?: number | undefined }> {
  return new Promise((resolve) => f((err, body, status) => resolve({ err, body: body as T, status })));
}

function gatewayYaml(o: { upstream: string; store: string }): string {
  return `
realm: api
shutdown_timeout_ms: 2000
upstreams:
  default: { url: ${o.upstream}, timeout_ms: 2000, connect_timeout_ms: 500 }
tokens:
  issuers:
    - name: svc
      issuer: https://auth.scopegate.test
      audience: api
      algorithms: [ES256]
${TEST_ISSUER}
token_service:
  issuer: svc
  store: ${o.store}
  password_grant: true
  integration_page: /integration
  revocation: { max_lag_ms: 200 }
routes:
  - id: send-room-notification
    path: /v2/room/{room_id_or_name}/notification
    methods: [POST]
    scopes: [send_notification]
    client_types: [group, room, user]
    room_param: room_id_or_name
  - id: get-all-rooms
    path: /v2/room
    methods: [GET]
    scopes: [view_group, view_room]
    client_types: [group, user]
`;
}

/** A browser-less user of the Integration page: its forms over HTTP with the session cookie. */
class PageUser {
  cookie = '';
  constructor(private readonly base: string) {}
  private take(res: Response) {
    const set = res.headers.get('set-cookie');
    if (set) this.cookie = set.split(';')[0]!;
  }
  async get(): Promise<string> {
    const res = await fetch(`${this.base}/integration`, { headers: this.cookie ? { cookie: this.cookie } : {} });
    this.take(res);
    return res.text();
  }
  async post(path: string, fields: Record<string, string>): Promise<{ status: number; html: string; location: string | null }> {
    const res = await fetch(`${this.base}/integration${path}`, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie: this.cookie, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });
    this.take(res);
    return { status: res.status, html: await res.text(), location: res.headers.get('location') };
  }
  static field(html: string, name: string): string {
    const m = new RegExp(`name="${name}" value="([^"]*)"`).exec(html);
    if (!m) throw new Error(`no ${name} field in the page`);
    return m[1]!;
  }
}

describe('hipchatter (a real HipChat v2 client) against the gateway', () => {
  let up: Upstream;
  let dir: TempDir;
  let gw: TestGateway;
  let store: TokenStore;
  let user: PageUser;
  let roomToken: string;

  beforeAll(async () => {
    up = await startUpstream({ routes: { '/v2/room/42/notification': { kind: 'respond', status: 204 } } });
    dir = await tempDir();
    gw = await startTestGateway(gatewayYaml({ upstream: up.url, store: `${dir.path}/store` }));
    store = await openTokenStore(`${dir.path}/store`, { attach: true });
    await store.putUser({ username: 'rhea', passwordHash: await hashSecret('rhea-pw'), scopes: ['view_group', 'view_room', 'admin_room', 'send_notification'], createdAt: Date.now() });
    user = new PageUser(gw.url);
    const signIn = await user.get();
    const login = await user.post('/login', { csrf: PageUser.field(signIn, 'csrf'), username: 'rhea', password: 'rhea-pw' });
    expect(login.status).toBe(303);
  }, 60_000);
  afterAll(async () => {
    await store?.close();
    await gw?.close();
    await up?.close();
    await dir?.cleanup();
  });

  it('sends a room notification with a token made on the Integration page', async () => {
    const page = await user.get();
    const made = await user.post('/room-tokens', { csrf: PageUser.field(page, 'csrf'), nonce: PageUser.field(page, 'nonce'), room: '42', name: 'hipchatter', expires_days: '30' });
    expect(made.status).toBe(201);
    roomToken = /<textarea id="secret-value"[^>]*>([^<]+)<\/textarea>/.exec(made.html)![1]!;

    const n = up.requests.length;
    const hc = new Hipchatter(roomToken, `${gw.url}/v2/`);
    const sent = await call((cb) => hc.notify('42', { message: 'build 7 passed', color: 'green', token: roomToken }, cb));
    expect(sent.err).toBeNull();
    expect(sent.status).toBe(204);
    const got = up.requests[n]!;
    await got.done;
    expect(got.method).toBe('POST');
    expect(got.url).toBe('/v2/room/42/notification'); // auth_token is never forwarded
    expect(JSON.parse(got.body.toString('utf8'))).toMatchObject({ message: 'build 7 passed', color: 'green' });
    expect(got.headers['x-auth-client-type']).toBe('room');
    expect(got.headers['x-auth-room']).toBe('42');

    // Bound to room 42: another room is refused by the gateway, in HipChat's words.
    const elsewhere = await call((cb) => hc.notify('43', { message: 'x', token: roomToken }, cb));
    expect(elsewhere.err?.message).toMatch(/another room/);
    expect(up.requests).toHaveLength(n + 1);
  });

  it('after the token is deleted on the page, hipchatter reports "Invalid OAuth session"', async () => {
    const page = await user.get();
    const id = /action="\/integration\/room-tokens\/delete"[\s\S]*?name="id" value="([^"]+)"/.exec(page)![1]!;
    const del = await user.post('/room-tokens/delete', { csrf: PageUser.field(page, 'csrf'), id });
    expect(del.status).toBe(303);
    const n = up.requests.length;
    const hc = new Hipchatter(roomToken, `${gw.url}/v2/`);
    const sent = await call((cb) => hc.notify('42', { message: 'after delete', token: roomToken }, cb));
    expect(sent.err?.message).toBe('Invalid OAuth session');
    expect(up.requests).toHaveLength(n);
  });

  it('manages personal tokens and sessions through the library: create, read the session, delete it', async () => {
    // A user token from the password grant of the user's own client (Integration page: Get client ID).
    const page = await user.get();
    const got = await user.post('/client', { csrf: PageUser.field(page, 'csrf'), action: 'get' });
    const clientId = /<dd><code>([^<]+)<\/code><\/dd>/.exec(got.html)![1]!;
    const secret = /<textarea id="secret-value"[^>]*>([^<]+)<\/textarea>/.exec(got.html)![1]!;
    const grant = await fetch(`${gw.url}/v2/oauth/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=password&username=rhea&password=rhea-pw',
    });
    expect(grant.status).toBe(200);
    const userToken = ((await grant.json()) as { access_token: string }).access_token;

    const asUser = new Hipchatter(userToken, `${gw.url}/v2/`);
    const created = await call<{ id: string; token: string; scopes: string[] }>((cb) => asUser.request('post', 'oauth/personal-tokens', { name: 'from hipchatter', scopes: ['view_group'] }, cb));
    expect(created.err).toBeNull();
    expect(created.status).toBe(201);
    expect(created.body.scopes).toEqual(['view_group']);
    const personal = created.body.token;

    const listed = await call<{ tokens: Array<{ id: string; name: string }> }>((cb) => asUser.request('get', 'oauth/personal-tokens', cb));
    expect(listed.body.tokens.map((t) => t.name)).toContain('from hipchatter');
    expect(JSON.stringify(listed.body)).not.toContain(personal);

    const asPersonal = new Hipchatter(personal, `${gw.url}/v2/`);
    const session = await call<{ access_token: string; owner: { id: string }; owner_type: string; scopes: string[] }>((cb) => asPersonal.request('get', `oauth/token/${personal}`, cb));
    expect(session.err).toBeNull();
    expect(session.body).toMatchObject({ access_token: personal, owner: { id: 'rhea' }, owner_type: 'user', scopes: ['view_group'] });
    const rooms = await call((cb) => asPersonal.request('get', 'room', cb));
    expect(rooms.err).toBeNull();

    const deleted = await call((cb) => asPersonal.request('delete', `oauth/token/${personal}`, cb));
    expect(deleted.err).toBeNull();
    expect(deleted.status).toBe(204);
    const after = await call((cb) => asPersonal.request('get', `oauth/token/${personal}`, cb));
    expect(after.err?.message).toBe('Invalid OAuth session');
  });
});
