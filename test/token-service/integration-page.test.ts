/**
 * The Integration page (SPEC §9) driven in real Chromium (playwright-core, Debian's chromium)
 * against the real gateway (embedded store, real upstream): sign in, get a client id and its
 * secret once, create a personal token (shown once, "Confirm saving"), use it through the
 * gateway, delete it and see the gateway refuse it. Screenshots of every screen go to
 * test-artifacts/integration/. Also: CSRF (no token / a wrong one → 403, nothing created), the
 * cookie flags, the security headers, labels, focus order and contrast, no JavaScript needed;
 * and, without a browser, the session codec's parsers under arbitrary input.
 */
import fc from 'fast-check';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { COOKIE_NAME, createPageSessions, decodePayload, parseCookies, setCookieHeader } from '../../src/token-service/integration-session.js';
import { PAGE_CSS, PAGE_CSS_HASH } from '../../src/token-service/integration-page.js';
import { createTokenService } from '../../src/token-service/service.js';
import { hashSecret } from '../../src/token-service/secrets.js';
import type { TokenStore } from '../../src/token-service/store.js';
import { openEmbeddedStore } from '../../src/token-service/store/embedded.js';
import { openTokenStore } from '../../src/token-service/store/open.js';
import { describeChromium, launchChromium, shot } from '../helpers/chromium.js';
import { startTestGateway, TEST_ISSUER, type TestGateway } from '../helpers/gateway.js';
import { tempDir, testClock, type TempDir } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { jwtPayload } from './harness.js';

const SHOTS = 'integration';

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
  integration_page: /integration
  lifetimes: { personal_s: 31536000 }
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

/** WCAG relative luminance contrast of two CSS rgb() colours, computed in the page. */
const CONTRAST_FN = `(fg, bg) => {
  const parse = (c) => (c.match(/[0-9.]+/g) || []).slice(0, 3).map(Number);
  const lum = (rgb) => { const [r, g, b] = rgb.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const a = lum(parse(fg)), b = lum(parse(bg));
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}`;

/** Every visible text element's contrast against the nearest opaque background, the lowest first. */
async function lowestContrast(page: Page): Promise<{ ratio: number; text: string }> {
  return page.evaluate(`(() => {
    const contrast = ${CONTRAST_FN};
    const bgOf = (el) => { for (let e = el; e; e = e.parentElement) { const c = getComputedStyle(e).backgroundColor; if (c && !c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') return c; } return 'rgb(255, 255, 255)'; };
    let worst = { ratio: 99, text: '' };
    for (const el of document.querySelectorAll('body *')) {
      const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim() !== '');
      if (!own || el.closest('.visually-hidden')) continue;
      const r = contrast(getComputedStyle(el).color, bgOf(el));
      if (r < worst.ratio) worst = { ratio: r, text: el.textContent.trim().slice(0, 40) };
    }
    return worst;
  })()`);
}

/** Every form control that a user sees has a label. */
async function unlabelled(page: Page): Promise<string[]> {
  return page.evaluate(`[...document.querySelectorAll('input:not([type=hidden]), select, textarea')].filter((e) => !e.labels || e.labels.length === 0).map((e) => e.outerHTML.slice(0, 80))`);
}

/** The focused element on arrival (autofocus), then after each of n - 1 presses of Tab. */
async function tabOrder(page: Page, n: number): Promise<string[]> {
  const active = () => page.evaluate(`(() => { const e = document.activeElement; return e ? (e.id || e.getAttribute('name') || e.textContent.trim()) : ''; })()`) as Promise<string>;
  const seen = [await active()];
  for (let i = 1; i < n; i++) {
    await page.keyboard.press('Tab');
    seen.push(await active());
  }
  return seen;
}

describeChromium('the Integration page in Chromium', () => {
  let browser: Browser;
  let up: Upstream;
  let dir: TempDir;
  let gw: TestGateway;
  let store: TokenStore;
  let ctx: BrowserContext;
  let page: Page;
  let personalToken: string;
  let personalId: string;

  beforeAll(async () => {
    up = await startUpstream({ routes: { '/v2/room/42/notification': { kind: 'respond', status: 204 } } });
    dir = await tempDir();
    gw = await startTestGateway(gatewayYaml({ upstream: up.url, store: `${dir.path}/store` }));
    store = await openTokenStore(`${dir.path}/store`, { attach: true });
    await store.putUser({ username: 'alice', passwordHash: await hashSecret('correct horse'), scopes: ['view_group', 'view_room', 'send_notification', 'admin_room'], displayName: 'Alice Example', createdAt: Date.now() });
    browser = await launchChromium();
    // No JavaScript at all: the page must work with plain forms.
    ctx = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1100, height: 900 } });
    page = await ctx.newPage();
  }, 90_000);
  afterAll(async () => {
    await ctx?.close();
    await browser?.close();
    await store?.close();
    await gw?.close();
    await up?.close();
    await dir?.cleanup();
  });

  it('shows an accessible sign-in form with the security headers and a strict session cookie', async () => {
    const res = await page.goto(`${gw.url}/integration`);
    expect(res?.status()).toBe(200);
    const h = await res!.allHeaders();
    expect(h['content-security-policy']).toBe(`default-src 'none'; style-src '${PAGE_CSS_HASH}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`);
    expect(h['x-frame-options']).toBe('DENY');
    expect(h['cache-control']).toBe('no-store');
    expect(h['set-cookie']).toMatch(new RegExp(`^${COOKIE_NAME}=[A-Za-z0-9_.-]+; Path=/integration; Max-Age=\\d+; HttpOnly; SameSite=Strict$`));
    const [cookie] = await ctx.cookies();
    expect(cookie).toMatchObject({ name: COOKIE_NAME, httpOnly: true, sameSite: 'Strict', secure: false, path: '/integration' });
    expect(await page.getAttribute('html', 'lang')).toBe('en');
    expect(await page.textContent('h1')).toBe('Integration');
    expect(await page.textContent('h2')).toBe('Sign in');
    expect(await unlabelled(page)).toEqual([]);
    expect(await tabOrder(page, 3)).toEqual(['username', 'password', 'Sign in']);
    const worst = await lowestContrast(page);
    expect(worst.ratio, `lowest contrast: "${worst.text}"`).toBeGreaterThanOrEqual(4.5);
    // The inline sheet applied (its hash matches the CSP): the button is blue.
    expect(await page.evaluate(`getComputedStyle(document.querySelector('button')).backgroundColor`)).toBe('rgb(10, 88, 202)');
    await shot(page, SHOTS, '01-sign-in');
  });

  it('refuses a wrong password on the page itself', async () => {
    await page.fill('#username', 'alice');
    await page.fill('#password', 'wrong');
    const [res] = await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    expect(res?.status()).toBe(401);
    expect(await page.textContent('[role=alert]')).toBe('Wrong username or password.');
    expect(await page.inputValue('#username')).toBe('alice');
    await shot(page, SHOTS, '02-sign-in-failed');
  });

  it('signs in and shows the account screen', async () => {
    await page.fill('#password', 'correct horse');
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    expect(page.url()).toBe(`${gw.url}/integration`);
    expect(await page.textContent('header')).toContain('Signed in as Alice Example');
    expect(await page.$$eval('h2', (hs) => hs.map((x) => x.textContent))).toEqual(['Client', 'Personal tokens', 'Room notification tokens']);
    expect(await unlabelled(page)).toEqual([]);
    const worst = await lowestContrast(page);
    expect(worst.ratio, `lowest contrast: "${worst.text}"`).toBeGreaterThanOrEqual(4.5);
    await shot(page, SHOTS, '03-account');
  });

  it('gets a client id and shows its secret once; Refresh replaces it', async () => {
    await Promise.all([page.waitForNavigation(), page.click('button[value=get]')]);
    expect(await page.textContent('h2')).toBe('Your new client');
    const secret = await page.inputValue('#secret-value');
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const clientId = await page.textContent('dd code');
    await shot(page, SHOTS, '04-client-secret-once');
    await Promise.all([page.waitForNavigation(), page.click('text=Confirm saving')]);
    expect(await page.textContent('#client-id')).toBe(clientId);
    expect(await page.content()).not.toContain(secret);
    const client = await store.getClient(clientId!);
    expect(client).toMatchObject({ ownerUser: 'alice', scopes: ['view_group', 'view_room', 'send_notification', 'admin_room'] });
    // The secret works at the token endpoint; after Refresh it does not.
    const basic = (s: string) => `Basic ${Buffer.from(`${clientId}:${s}`).toString('base64')}`;
    const grant = (s: string) => fetch(`${gw.url}/v2/oauth/token`, { method: 'POST', headers: { authorization: basic(s), 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials' });
    expect((await grant(secret)).status).toBe(200);
    await Promise.all([page.waitForNavigation(), page.click('button[value=refresh]')]);
    expect(await page.textContent('h2')).toBe('Your new client secret');
    const fresh = await page.inputValue('#secret-value');
    expect(fresh).not.toBe(secret);
    await Promise.all([page.waitForNavigation(), page.click('text=Confirm saving')]);
    expect((await grant(secret)).status).toBe(401);
    expect((await grant(fresh)).status).toBe(200);
  });

  it('creates a personal token, shows it once with a Confirm saving step, and the gateway accepts it', async () => {
    await page.fill('#token-name', 'deploy bot');
    await page.check('input[name=scopes][value=view_group]');
    await page.check('input[name=scopes][value=view_room]');
    const [res] = await Promise.all([page.waitForNavigation(), page.click('section[aria-labelledby=personal-h] button[type=submit]:has-text("Create")')]);
    expect(res?.status()).toBe(201);
    expect(await page.textContent('h2')).toBe('Your new personal token');
    personalToken = await page.inputValue('#secret-value');
    personalId = jwtPayload(personalToken)['jti'] as string;
    expect(jwtPayload(personalToken)).toMatchObject({ sub: 'alice', scope: 'view_group view_room' });
    expect(page.url()).toBe(`${gw.url}/integration/tokens`); // the POST's own response: no token in any URL
    await shot(page, SHOTS, '05-token-once');
    await Promise.all([page.waitForNavigation(), page.click('text=Confirm saving')]);
    expect(page.url()).toBe(`${gw.url}/integration?done=saved`);
    const html = await page.content();
    expect(html).not.toContain(personalToken.split('.')[2]!);
    const row = page.locator('section[aria-labelledby=personal-h] tbody tr');
    expect(await row.count()).toBe(1);
    expect(await row.first().textContent()).toContain('deploy bot');
    expect(await row.first().textContent()).toContain('never'); // last used
    await shot(page, SHOTS, '06-token-listed');

    const n = up.requests.length;
    const api = await fetch(`${gw.url}/v2/room`, { headers: { authorization: `Bearer ${personalToken}` } });
    expect(api.status).toBe(200);
    expect(up.requests[n]?.headers['x-auth-subject']).toBe('alice');
    // No token or secret ever reached a log line.
    expect(gw.logs.some((l) => l.includes(personalToken.split('.')[2]!))).toBe(false);
  });

  it('does not create a second token when the create form is posted again (a reload)', async () => {
    // Re-post exactly what the browser sent before: same csrf, same one-time nonce.
    const form = await page.evaluate(`(() => { const f = document.querySelector('form[action="/integration/tokens"]'); return { csrf: f.csrf.value, nonce: f.nonce.value }; })()`) as { csrf: string; nonce: string };
    const cookie = (await ctx.cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
    const post = () => fetch(`${gw.url}/integration/tokens`, { method: 'POST', redirect: 'manual', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: `csrf=${form.csrf}&nonce=${form.nonce}&name=twice&scopes=view_group` });
    expect((await post()).status).toBe(201);
    const again = await post();
    expect(again.status).toBe(409);
    expect(await again.text()).not.toMatch(/eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/);
  });

  it('refuses a form without or with a wrong CSRF token (403) and creates nothing', async () => {
    const cookie = (await ctx.cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
    const before = (await store.listTokens({ ownerId: 'alice', kind: 'personal' }, Date.now())).length;
    const post = (body: string, c = cookie) => fetch(`${gw.url}/integration/tokens`, { method: 'POST', redirect: 'manual', headers: { cookie: c, 'content-type': 'application/x-www-form-urlencoded' }, body });
    const none = await post('name=x&scopes=view_group&nonce=abc');
    expect(none.status).toBe(403);
    expect(none.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect((await post(`csrf=${'A'.repeat(43)}&name=x&scopes=view_group&nonce=abd`)).status).toBe(403);
    // The right CSRF token but without the session cookie it is bound to.
    const csrf = await page.evaluate(`document.querySelector('input[name=csrf]').value`) as string;
    expect((await post(`csrf=${csrf}&name=x&scopes=view_group&nonce=abe`, '')).status).toBe(403);
    expect((await post(`csrf=${csrf}&nonce=abf`, '')).status).toBe(403);
    // Signing out is a form too.
    expect((await fetch(`${gw.url}/integration/logout`, { method: 'POST', redirect: 'manual', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: '' })).status).toBe(403);
    expect((await store.listTokens({ ownerId: 'alice', kind: 'personal' }, Date.now())).length).toBe(before);
  });

  it('deletes the token, and the gateway refuses it from then on', async () => {
    await page.goto(`${gw.url}/integration`);
    const row = page.locator('section[aria-labelledby=personal-h] tbody tr', { hasText: 'deploy bot' });
    await Promise.all([page.waitForNavigation(), row.locator('button:has-text("Delete")').click()]);
    expect(page.url()).toBe(`${gw.url}/integration?done=deleted`);
    expect(await page.textContent('[role=status]')).toContain('Deleted');
    expect(await page.locator('section[aria-labelledby=personal-h] tbody tr', { hasText: 'deploy bot' }).count()).toBe(0);
    await shot(page, SHOTS, '07-token-deleted');
    const session = await fetch(`${gw.url}/v2/oauth/token/${personalToken}`, { headers: { authorization: `Bearer ${personalToken}` } });
    expect(session.status).toBe(401);
    expect(((await session.json()) as { error: { message: string } }).error.message).toBe('Invalid OAuth session');
    expect((await store.getToken(personalId))?.revokedAt).toBeDefined();
    // The API route: refused although the token sits in the gateway's verified-token cache.
    const n = up.requests.length;
    const api = await fetch(`${gw.url}/v2/room`, { headers: { authorization: `Bearer ${personalToken}` } });
    expect(api.status).toBe(401);
    expect(((await api.json()) as { error: { reason: string } }).error.reason).toBe('token_revoked');
    expect(up.requests).toHaveLength(n);
  });

  it('creates a room notification token on the page', async () => {
    await page.fill('#room', '42');
    await page.fill('#room-token-name', 'build notifications');
    const [res] = await Promise.all([page.waitForNavigation(), page.click('section[aria-labelledby=rooms-h] button:has-text("Create")')]);
    expect(res?.status()).toBe(201);
    expect(await page.textContent('h2')).toBe('Your new room notification token');
    const token = await page.inputValue('#secret-value');
    expect(jwtPayload(token)).toMatchObject({ client_type: 'room', room_id: '42', scope: 'send_notification' });
    await shot(page, SHOTS, '08-room-token-once');
    await Promise.all([page.waitForNavigation(), page.click('text=Confirm saving')]);
    expect(await page.locator('section[aria-labelledby=rooms-h] tbody tr').count()).toBe(1);
    await shot(page, SHOTS, '09-room-token-listed');
  });

  it('signs out: the cookie is gone and the page asks to sign in again', async () => {
    await Promise.all([page.waitForNavigation(), page.click('text=Sign out')]);
    expect(await page.textContent('h2')).toBe('Sign in');
    // The signed-in cookie was deleted; the sign-in form set a fresh one that names nobody.
    const c = (await ctx.cookies()).find((x) => x.name === COOKIE_NAME)!;
    expect(decodePayload(Buffer.from(c.value.split('.')[0]!, 'base64url').toString('utf8'))?.user).toBeUndefined();
    expect((await page.goto(`${gw.url}/integration`))?.status()).toBe(200);
    expect(await page.textContent('h2')).toBe('Sign in');
    await shot(page, SHOTS, '10-signed-out');
  });
});

describe('the Integration page without a browser', () => {
  it('marks the cookie Secure when the request came over https', async () => {
    const dir = await tempDir();
    const store = await openEmbeddedStore(`${dir.path}/store`, { control: false });
    const loaded = loadConfigText(gatewayYaml({ upstream: 'http://127.0.0.1:9', store: `${dir.path}/store` }), { env: {} });
    const service = await createTokenService(loaded, { store, clock: Date.now, logger: createLogger({ level: 'silent' }), metrics: createMetrics({ processMetrics: false }), purgeIntervalMs: 0 });
    try {
      const res = await service.handle(new Request('https://gw.example/integration'), { clientIp: '127.0.0.1', proto: 'https', host: 'gw.example' });
      expect(res.status).toBe(200);
      expect(res.headers.get('set-cookie')).toMatch(/; HttpOnly; SameSite=Strict; Secure$/);
      const plain = await service.handle(new Request('http://gw.example/integration'), { clientIp: '127.0.0.1', proto: 'http', host: 'gw.example' });
      expect(plain.headers.get('set-cookie')).not.toContain('Secure');
      // Another method on the page: 405 with Allow, the same headers.
      const put = await service.handle(new Request('http://gw.example/integration', { method: 'PUT' }), { clientIp: '127.0.0.1', proto: 'http', host: 'gw.example' });
      expect(put.status).toBe(405);
    } finally {
      await service.close();
      await store.close();
      await dir.cleanup();
    }
  }, 90_000);

  it('session cookies: a valid one reads back; tampered, expired, foreign-keyed or garbage ones never do', async () => {
    const clock = testClock(Date.UTC(2031, 0, 1));
    const key = new TextEncoder().encode('k'.repeat(32));
    const codec = createPageSessions({ keys: async () => [key], clock, ttlMs: 60_000 });
    const other = createPageSessions({ keys: async () => [new TextEncoder().encode('x'.repeat(32))], clock });
    const { value, session } = await codec.issue({ user: 'alice', sgn: 'abc' });
    expect(await codec.read(`${COOKIE_NAME}=${value}`)).toEqual(session);
    expect(await other.read(`${COOKIE_NAME}=${value}`)).toBeUndefined();
    const [payload, sig] = value.split('.') as [string, string];
    const forged = Buffer.from(JSON.stringify({ ...session, user: 'root' })).toString('base64url');
    expect(await codec.read(`${COOKIE_NAME}=${forged}.${sig}`)).toBeUndefined();
    expect(await codec.read(`${COOKIE_NAME}=${payload}.${sig.slice(0, -2)}AA`)).toBeUndefined();
    expect(await codec.checkCsrf(session, await codec.csrfFor(session))).toBe(true);
    expect(await codec.checkCsrf({ ...session, sid: 'other' }, await codec.csrfFor(session))).toBe(false);
    clock.advance(60_001);
    expect(await codec.read(`${COOKIE_NAME}=${value}`)).toBeUndefined();
    // A rotated key list keeps verifying the old key.
    const rotated = createPageSessions({ keys: async () => [new TextEncoder().encode('n'.repeat(32)), key], clock });
    clock.set(Date.UTC(2031, 0, 1));
    expect(await rotated.read(`${COOKIE_NAME}=${value}`)).toEqual(session);

    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 300 }), fc.string({ maxLength: 60 }), async (header, csrf) => {
        expect(await codec.read(header)).toBeUndefined();
        expect(await codec.read(`${COOKIE_NAME}=${header}`)).toBeUndefined();
        expect(await codec.checkCsrf(session, csrf)).toBe(false);
      }),
      { numRuns: 500 },
    );
  });

  it('parseCookies and decodePayload never throw on arbitrary input', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 500 }), fc.anything(), (header, value) => {
        const m = parseCookies(header);
        for (const [k] of m) expect(k).toBe(k.trim());
        const s = decodePayload(typeof value === 'string' ? value : JSON.stringify(value) ?? '');
        if (s) {
          expect(typeof s.sid).toBe('string');
          expect(Number.isSafeInteger(s.exp)).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
    expect(parseCookies('a=1; b="2"; a=3')).toEqual(new Map([['a', '1'], ['b', '2']]));
    expect(() => setCookieHeader('n', 'v;x', { path: '/', secure: false, maxAgeS: 1 })).toThrow();
    expect(PAGE_CSS.length).toBeGreaterThan(100);
  });
});
