/**
 * The Integration page (SPEC §9; livedigital's account screen): a user signs in with the password
 * the password grant checks, gets (creates or shows) their own client id, refreshes its secret,
 * and creates, lists and deletes personal tokens — and, with `admin_room` or `admin_group`, room
 * notification tokens. Server-rendered HTML (`hono/html` tagged templates, which escape every
 * interpolation), no build step, no JavaScript at all: plain forms and POST-redirect-GET.
 *
 *   GET  {page}                     sign-in form, or the account screen
 *   POST {page}/login               username + password (attempts limited per username — shared with
 *                                   the password grant — and per client address)
 *   POST {page}/logout
 *   POST {page}/client              action=get (create the user's client, or show its id) | refresh (new secret)
 *   POST {page}/tokens              create a personal token          POST {page}/tokens/delete   id=…
 *   POST {page}/room-tokens         create a room notification token POST {page}/room-tokens/delete id=…
 *   POST {page}/confirm             "Confirm saving": back to the account screen
 *
 * A secret or token is shown exactly once, in the body of the POST that created it (never in a
 * URL, a redirect, a log line or a later page); a form re-posted by a reload is recognised by its
 * one-time nonce and creates nothing. Every form carries a CSRF token bound to the session
 * (integration-session.ts); a POST without the right one is 403. Every response has
 * `Content-Security-Policy: default-src 'none'; style-src '<hash of the one inline sheet>';
 * form-action 'self'; frame-ancestors 'none'; base-uri 'none'`, `X-Frame-Options: DENY`,
 * `Cache-Control: no-store`, `Referrer-Policy: no-referrer`.
 *
 * @example
 *   const page = createIntegrationPage({ page: '/integration', store, clock, logger, sessions, personal, checkUser, ... });
 *   page.matches('/integration/tokens');                                   // true
 *   const r = await page.handle(req, { path: url.pathname, form, facts }); // RenderedResponse (HTML)
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { html, raw } from 'hono/html';
import { isGatewayError } from '../errors.js';
import { clip } from '../clip.js';
import type { Logger } from '../observability/logger.js';
import type { Clock } from '../types.js';
import type { AttemptLimiter } from './attempts.js';
import type { RenderedResponse } from './dialects.js';
import { COOKIE_NAME, setCookieHeader, type PageSession, type PageSessions } from './integration-session.js';
import { parseOwnTokenRequest, ROOM_ADMIN_SCOPES, ROOM_TOKEN_SCOPES, validRoom, type PersonalTokens } from './personal-tokens.js';
import { hashSecret, newId, newSecret } from './secrets.js';
import type { ClientRecord, TokenRecord, TokenStore } from './store.js';

type Html = ReturnType<typeof html>;

/** The one style sheet, inline; its hash goes into the CSP (no 'unsafe-inline'). */
export const PAGE_CSS = `
:root{color-scheme:light}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;background:#fff}
header{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;justify-content:space-between;padding:1rem 1.5rem;border-bottom:1px solid #767676}
header h1{margin:0;font-size:1.5rem}
main{max-width:60rem;margin:0 auto;padding:1rem 1.5rem 3rem}
section{margin:2rem 0}
h2{font-size:1.25rem;margin:0 0 .75rem}
label{display:block;font-weight:600;margin:.75rem 0 .25rem}
input[type=text],input[type=password],select,textarea{font:inherit;width:100%;max-width:32rem;padding:.5rem;border:1px solid #595959;border-radius:4px;color:#1b1b1b;background:#fff}
textarea{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9rem;max-width:100%;word-break:break-all;resize:vertical}
fieldset{border:1px solid #767676;border-radius:4px;margin:.75rem 0;padding:.5rem 1rem;max-width:32rem}
legend{font-weight:600;padding:0 .25rem}
fieldset label{display:inline-flex;gap:.4rem;align-items:center;font-weight:400;margin:.25rem 1rem .25rem 0}
button{font:inherit;font-weight:600;cursor:pointer;padding:.5rem 1rem;margin-top:1rem;border-radius:4px;border:2px solid #0a58ca;background:#0a58ca;color:#fff}
form:not(.inline)>button{display:block}
header button{margin:0 0 0 .75rem}
::placeholder{color:#595959;opacity:1}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem;margin:1rem 0}
dt{font-weight:600}
dd{margin:0}
button.secondary{background:#fff;color:#0a58ca}
button.danger{background:#b02a37;border-color:#b02a37;color:#fff;margin:0;padding:.25rem .75rem}
button:focus-visible,input:focus-visible,select:focus-visible,textarea:focus-visible{outline:3px solid #1b1b1b;outline-offset:2px}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
caption{text-align:left;font-weight:600;padding:.25rem 0}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #767676;vertical-align:top}
time{white-space:nowrap}
code{font-family:ui-monospace,Menlo,Consolas,monospace;background:#f2f2f2;padding:.1rem .3rem;border-radius:3px;word-break:break-all}
.note{color:#4a4a4a}
.notice{border:2px solid #0a58ca;background:#eef4fc;padding:.75rem 1rem;border-radius:4px}
.alert{border:2px solid #b02a37;background:#fdf0f1;padding:.75rem 1rem;border-radius:4px}
.inline{display:inline;margin:0}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
`;

export const PAGE_CSS_HASH = `sha256-${createHash('sha256').update(PAGE_CSS).digest('base64')}`;

export const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': `default-src 'none'; style-src '${PAGE_CSS_HASH}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
  pragma: 'no-cache',
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
};

/** A user as the page knows them after sign-in. */
export interface PageUser {
  username: string;
  displayName?: string | undefined;
  scopes: readonly string[];
  groupId?: string | undefined;
}

export interface AccountView {
  page: string;
  csrf: string;
  user: PageUser;
  client: ClientRecord | undefined;
  personal: readonly TokenRecord[];
  /** undefined when the user may not manage room notification tokens. */
  rooms: readonly TokenRecord[] | undefined;
  /** The scopes a new personal token may carry and the longest lifetime, days. */
  maxDays: number;
  nonce: string;
  notice?: string | undefined;
  error?: string | undefined;
}

function when(ms: number | undefined): Html {
  if (ms === undefined) return html`<span class="note">never</span>`;
  const iso = new Date(ms).toISOString();
  return html`<time datetime="${iso}">${iso.slice(0, 16).replace('T', ' ')} UTC</time>`;
}

function layout(title: string, body: Html, o: { user?: string; page: string; csrf?: string }): string {
  return String(html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${title} · Integration</title>
<style>${raw(PAGE_CSS)}</style>
</head>
<body>
<header>
<h1>Integration</h1>
${
  o.user !== undefined && o.csrf !== undefined
    ? html`<form method="post" action="${o.page}/logout" class="inline"><span>Signed in as <strong>${o.user}</strong></span>
<input type="hidden" name="csrf" value="${o.csrf}">
<button type="submit" class="secondary">Sign out</button></form>`
    : ''
}
</header>
<main>
${body}
</main>
</body>
</html>`);
}

export function renderLogin(v: { page: string; csrf: string; username?: string | undefined; error?: string | undefined }): string {
  return layout(
    'Sign in',
    html`<section aria-labelledby="signin-h">
<h2 id="signin-h">Sign in</h2>
${v.error !== undefined ? html`<p class="alert" role="alert">${v.error}</p>` : ''}
<form method="post" action="${v.page}/login">
<input type="hidden" name="csrf" value="${v.csrf}">
<label for="username">Username</label>
<input type="text" id="username" name="username" autocomplete="username" required autofocus value="${v.username ?? ''}">
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
</section>`,
    { page: v.page },
  );
}

function tokenTable(kind: 'personal' | 'room', rows: readonly TokenRecord[], v: AccountView): Html {
  const action = `${v.page}/${kind === 'personal' ? 'tokens' : 'room-tokens'}/delete`;
  if (rows.length === 0) return html`<p class="note">${kind === 'personal' ? 'No personal tokens yet.' : 'No room notification tokens yet.'}</p>`;
  return html`<table>
<caption>${kind === 'personal' ? 'Your personal tokens' : 'Your room notification tokens'}</caption>
<thead><tr><th scope="col">Name</th>${kind === 'room' ? html`<th scope="col">Room</th>` : ''}<th scope="col">Scopes</th><th scope="col">Created</th><th scope="col">Last used</th><th scope="col">Expires</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
<tbody>
${rows.map(
  (r) => html`<tr>
<td>${r.name ?? ''}</td>${kind === 'room' ? html`<td>${r.roomId ?? ''}</td>` : ''}
<td>${r.scopes.join(' ')}</td>
<td>${when(r.createdAt)}</td>
<td>${when(r.lastUsedAt)}</td>
<td>${when(r.expiresAt)}</td>
<td><form method="post" action="${action}" class="inline">
<input type="hidden" name="csrf" value="${v.csrf}">
<input type="hidden" name="id" value="${r.jti}">
<button type="submit" class="danger">Delete<span class="visually-hidden"> ${r.name ?? r.jti}</span></button>
</form></td>
</tr>`,
)}
</tbody>
</table>`;
}

function lifetimeSelect(id: string, maxDays: number): Html {
  const options = [30, 90, 365].filter((d) => d < maxDays);
  return html`<label for="${id}">Expires after</label>
<select id="${id}" name="expires_days">
${options.map((d) => html`<option value="${d}">${d} days</option>`)}
<option value="${maxDays}" selected>${maxDays} days (longest)</option>
</select>`;
}

export function renderAccount(v: AccountView): string {
  const scopesField = v.user.scopes.length
    ? html`<fieldset><legend>Scopes</legend>
${v.user.scopes.map((s, i) => html`<label for="scope-${i}"><input type="checkbox" id="scope-${i}" name="scopes" value="${s}">${s}</label>`)}
</fieldset>`
    : html`<p class="note">Your account has no scopes to give a token.</p>`;
  return layout(
    'Account',
    html`${v.notice !== undefined ? html`<p class="notice" role="status">${v.notice}</p>` : ''}
${v.error !== undefined ? html`<p class="alert" role="alert">${v.error}</p>` : ''}
<section aria-labelledby="client-h">
<h2 id="client-h">Client</h2>
${
  v.client
    ? html`<p>Client ID: <code id="client-id">${v.client.id}</code></p>
<p class="note">The client secret is shown only when it is made. <em>Refresh</em> makes a new one; the old one stops working at once.</p>
<form method="post" action="${v.page}/client">
<input type="hidden" name="csrf" value="${v.csrf}">
<button type="submit" name="action" value="refresh">Refresh secret</button>
</form>`
    : html`<p class="note">You have no client yet. <em>Get</em> creates one with your scopes and shows its secret once.</p>
<form method="post" action="${v.page}/client">
<input type="hidden" name="csrf" value="${v.csrf}">
<button type="submit" name="action" value="get">Get client ID</button>
</form>`
}
</section>
<section aria-labelledby="personal-h">
<h2 id="personal-h">Personal tokens</h2>
${tokenTable('personal', v.personal, v)}
<h3>Create a personal token</h3>
<form method="post" action="${v.page}/tokens">
<input type="hidden" name="csrf" value="${v.csrf}">
<input type="hidden" name="nonce" value="${v.nonce}">
<label for="token-name">Name</label>
<input type="text" id="token-name" name="name" required maxlength="100" placeholder="e.g. deploy bot">
${scopesField}
${lifetimeSelect('token-days', v.maxDays)}
<button type="submit">Create</button>
</form>
</section>
${
  v.rooms !== undefined
    ? html`<section aria-labelledby="rooms-h">
<h2 id="rooms-h">Room notification tokens</h2>
${tokenTable('room', v.rooms, v)}
<h3>Create a room notification token</h3>
<form method="post" action="${v.page}/room-tokens">
<input type="hidden" name="csrf" value="${v.csrf}">
<input type="hidden" name="nonce" value="${v.nonce}">
<label for="room">Room (id or name)</label>
<input type="text" id="room" name="room" required maxlength="100">
<label for="room-token-name">Name</label>
<input type="text" id="room-token-name" name="name" required maxlength="100" placeholder="e.g. build notifications">
${lifetimeSelect('room-token-days', v.maxDays)}
<p class="note">Scope: ${ROOM_TOKEN_SCOPES.join(' ')}</p>
<button type="submit">Create</button>
</form>
</section>`
    : ''
}`,
    { user: v.user.displayName ?? v.user.username, page: v.page, csrf: v.csrf },
  );
}

/** The one-time screen: a new token or secret, with the *Confirm saving* step. */
export function renderOnce(v: { page: string; csrf: string; user: string; title: string; label: string; value: string; details: Array<[string, string]> }): string {
  return layout(
    v.title,
    html`<section aria-labelledby="once-h">
<h2 id="once-h">${v.title}</h2>
<p class="notice" role="status">Copy it now and keep it somewhere safe. It is shown only this once and cannot be shown again.</p>
<dl>
${v.details.map(([k, val]) => html`<dt>${k}</dt><dd><code>${val}</code></dd>`)}
</dl>
<label for="secret-value">${v.label}</label>
<textarea id="secret-value" readonly rows="${v.value.length > 200 ? 7 : 2}" autofocus spellcheck="false" autocomplete="off">${v.value}</textarea>
<form method="post" action="${v.page}/confirm">
<input type="hidden" name="csrf" value="${v.csrf}">
<button type="submit">Confirm saving</button>
</form>
</section>`,
    { user: v.user, page: v.page, csrf: v.csrf },
  );
}

export function renderProblem(v: { page: string; title: string; message: string }): string {
  return layout(
    v.title,
    html`<section aria-labelledby="problem-h">
<h2 id="problem-h">${v.title}</h2>
<p class="alert" role="alert">${v.message}</p>
<p><a href="${v.page}">Back to the Integration page</a></p>
</section>`,
    { page: v.page },
  );
}

// ── the handler ─────────────────────────────────────────────────────────────────────────────────

export type CheckUser = (username: string, password: string) => Promise<{ ok: true; user: { subject: string; scopes?: string[] | undefined; groupId?: string | undefined } } | { ok: false; why: string }>;

export interface IntegrationPageDeps {
  /** token_service.integration_page, e.g. /integration (no trailing slash). */
  page: string;
  store: TokenStore;
  clock: Clock;
  logger: Logger;
  sessions: PageSessions;
  personal: PersonalTokens;
  /** The password grant's check (store users or the users URL). */
  checkUser: CheckUser;
  /** Failed sign-ins per username: the password grant's own limiter (one budget for both). */
  userAttempts: AttemptLimiter;
  /** Failed sign-ins per client address. */
  ipAttempts: AttemptLimiter;
  /** lifetimes.personal_s. */
  personalS: number;
  /** Scopes a users-URL user without a "scopes" answer may give tokens (the route table's). */
  defaultScopes: readonly string[];
  /** token_service.users is `store`: users (and their password hashes) are read from the store. */
  storeUsers: boolean;
}

export interface PageRequest {
  path: string;
  /** The parsed form of a POST (application/x-www-form-urlencoded), else undefined. */
  form?: URLSearchParams | undefined;
  /** Why the body could not be read (too large, not UTF-8, wrong media type). */
  formError?: string | undefined;
  proto: 'http' | 'https';
  clientIp: string;
}

export interface IntegrationPage {
  matches(path: string): boolean;
  /** The page's sub-routes (for the service's route list and Allow headers). */
  readonly paths: readonly string[];
  handle(req: Request, r: PageRequest): Promise<RenderedResponse & { reason?: string | undefined }>;
}

const POST_PATHS = ['/login', '/logout', '/client', '/tokens', '/tokens/delete', '/room-tokens', '/room-tokens/delete', '/confirm'] as const;

export function createIntegrationPage(deps: IntegrationPageDeps): IntegrationPage {
  const { page, store, clock, logger, sessions, personal } = deps;
  if (!/^\/[A-Za-z0-9_.~/-]*$/.test(page) || page.endsWith('/')) throw new TypeError(`createIntegrationPage: page must be a path without a trailing slash, got ${JSON.stringify(page)}`);
  const maxDays = Math.max(1, Math.floor(deps.personalS / 86_400));
  /** sid + nonce of create forms already used (a reload re-posts them): never create twice. */
  const usedNonces = new LRUCache<string, true>({ max: 10_000, ttl: 3_600_000 });
  const paths = [page, ...POST_PATHS.map((p) => page + p)];

  const respond = (status: number, body: string, extra: Record<string, string> = {}, reason?: string): RenderedResponse & { reason?: string } => ({
    status,
    headers: { ...PAGE_HEADERS, ...extra },
    body,
    reason,
  });
  const redirect = (to: string, extra: Record<string, string> = {}) => ({ status: 303, headers: { ...PAGE_HEADERS, location: to, ...extra }, body: '' });
  const cookie = (value: string, r: PageRequest, maxAgeS: number) => setCookieHeader(COOKIE_NAME, value, { path: page, secure: r.proto === 'https', maxAgeS });

  /** The signed-in user behind a session, or undefined (deleted user, changed password). */
  async function userOf(s: PageSession): Promise<PageUser | undefined> {
    if (s.user === undefined) return undefined;
    if (!deps.storeUsers) return { username: s.user, scopes: s.scopes ?? deps.defaultScopes };
    const u = await store.getUser(s.user);
    if (!u || s.sgn === undefined || (await sessions.fingerprint(u.passwordHash)) !== s.sgn) return undefined;
    return { username: u.username, displayName: u.displayName, scopes: u.scopes, groupId: u.groupId };
  }

  const mayRoom = (u: PageUser) => u.scopes.some((s) => ROOM_ADMIN_SCOPES.includes(s));
  const owner = (u: PageUser) => ({ type: 'user' as const, id: u.username });

  async function ownClient(u: PageUser): Promise<ClientRecord | undefined> {
    return (await store.listClients()).find((c) => c.ownerUser === u.username);
  }

  async function account(s: PageSession, u: PageUser, o: { notice?: string; error?: string; status?: number } = {}) {
    const [client, mine, rooms] = await Promise.all([
      ownClient(u),
      personal.list(owner(u), 'personal'),
      mayRoom(u) ? personal.list(owner(u), 'room_notification') : Promise.resolve(undefined),
    ]);
    const view: AccountView = {
      page,
      csrf: await sessions.csrfFor(s),
      user: u,
      client,
      personal: mine,
      rooms,
      maxDays,
      nonce: newId(),
      notice: o.notice,
      error: o.error,
    };
    return respond(o.status ?? 200, renderAccount(view));
  }

  async function loginPage(s: PageSession | undefined, r: PageRequest, o: { status?: number; error?: string; username?: string } = {}) {
    const extra: Record<string, string> = {};
    let session = s;
    if (!session || session.user !== undefined) {
      const issued = await sessions.issue({});
      session = issued.session;
      extra['set-cookie'] = cookie(issued.value, r, Math.floor((issued.session.exp - issued.session.iat) / 1000));
    }
    return respond(o.status ?? 200, renderLogin({ page, csrf: await sessions.csrfFor(session), error: o.error, username: o.username }), extra, o.status && o.status >= 400 ? 'login_failed' : undefined);
  }

  const NOTICES: Record<string, string> = {
    saved: 'Saved. The token is in your list; its value is not shown again.',
    deleted: 'Deleted. The token no longer works anywhere.',
    client: 'Your client is ready.',
  };

  async function handle(req: Request, r: PageRequest) {
    const sub = r.path === page ? '' : r.path.slice(page.length);
    const s = await sessions.read(req.headers.get('cookie'));

    if (sub === '') {
      if (req.method !== 'GET' && req.method !== 'HEAD') return respond(405, renderProblem({ page, title: 'Not allowed', message: 'Use the forms on this page.' }), { allow: 'GET, HEAD' }, 'method_not_allowed');
      const u = s ? await userOf(s) : undefined;
      if (!s || !u) return loginPage(s && s.user === undefined ? s : undefined, r);
      const done = new URL(req.url).searchParams.get('done');
      return account(s, u, { notice: done !== null ? NOTICES[done] : undefined });
    }
    if (!(POST_PATHS as readonly string[]).includes(sub)) return respond(404, renderProblem({ page, title: 'Not found', message: 'There is no such page.' }), {}, 'route_not_found');
    if (req.method !== 'POST') return respond(405, renderProblem({ page, title: 'Not allowed', message: 'Use the forms on this page.' }), { allow: 'POST' }, 'method_not_allowed');
    if (!r.form) return respond(400, renderProblem({ page, title: 'Bad request', message: `The form could not be read${r.formError ? `: ${r.formError}` : ''}.` }), {}, 'bad_request');
    const form = r.form;

    // CSRF first: nothing below runs for a forged or stale form.
    if (!s || !(await sessions.checkCsrf(s, form.get('csrf')))) {
      logger.info({ event: 'integration_csrf_refused', path: clip(sub, 64), has_session: s !== undefined }, 'integration page: form without a valid CSRF token');
      return respond(403, renderProblem({ page, title: 'Form expired', message: 'This form is no longer valid (your session expired or the page was opened elsewhere). Reload the page and try again.' }), {}, 'csrf');
    }

    if (sub === '/login') return login(s, form, r);
    if (sub === '/logout') return redirect(page, { 'set-cookie': cookie('', r, 0) });
    const u = await userOf(s);
    if (!u) return loginPage(undefined, r, { status: 401, error: 'Your session has ended. Sign in again.' });
    if (sub === '/confirm') return redirect(`${page}?done=saved`);

    if (sub === '/client') {
      const action = form.get('action');
      const existing = await ownClient(u);
      if (action === 'get' && existing) return redirect(`${page}?done=client`);
      if (action !== 'get' && action !== 'refresh') return account(s, u, { status: 400, error: 'Unknown client action.' });
      if (action === 'refresh' && !existing) return account(s, u, { status: 400, error: 'You have no client yet: use Get client ID first.' });
      const secret = newSecret();
      const secretHash = await hashSecret(secret);
      let client: ClientRecord;
      if (existing) {
        await store.setClientSecret(existing.id, secretHash);
        client = existing;
        logger.info({ event: 'integration_client_secret_refreshed', client_id: clip(existing.id, 64), user: clip(u.username, 64) }, 'integration page: client secret refreshed');
      } else {
        client = {
          id: newId('cl'),
          name: `${clip(u.username, 64)} (Integration page)`,
          secretHash,
          clientType: 'group',
          scopes: [...u.scopes],
          groupId: u.groupId,
          ownerUser: u.username,
          createdAt: clock(),
        };
        await store.createClient(client);
        logger.info({ event: 'integration_client_created', client_id: client.id, user: clip(u.username, 64) }, 'integration page: client created');
      }
      return respond(
        200,
        renderOnce({ page, csrf: await sessions.csrfFor(s), user: u.displayName ?? u.username, title: existing ? 'Your new client secret' : 'Your new client', label: 'Client secret', value: secret, details: [['Client ID', client.id]] }),
      );
    }

    if (sub === '/tokens' || sub === '/room-tokens') {
      const kind = sub === '/tokens' ? 'personal' : 'room_notification';
      if (kind === 'room_notification' && !mayRoom(u)) return account(s, u, { status: 403, error: 'Room notification tokens need the admin_room or admin_group scope.' });
      const nonce = form.get('nonce') ?? '';
      const nonceKey = `${s.sid}:${nonce}`;
      if (nonce === '' || usedNonces.has(nonceKey)) {
        return account(s, u, { status: 409, error: 'This form was sent already (a reload?). The token it created is in the list below; it cannot be shown again.' });
      }
      const room = kind === 'room_notification' ? (form.get('room') ?? '').trim() : undefined;
      if (room !== undefined && !validRoom(room)) return account(s, u, { status: 400, error: 'Give the room id or name.' });
      const days = form.get('expires_days');
      const parsed = parseOwnTokenRequest(
        {
          name: form.get('name') ?? '',
          ...(kind === 'personal' ? { scopes: form.getAll('scopes') } : {}),
          ...(days !== null && /^[0-9]{1,5}$/.test(days) ? { expires_in_s: Math.min(Number(days) * 86_400, deps.personalS) } : {}),
        },
        kind === 'personal' ? { allowed: u.scopes, maxLifetimeS: deps.personalS } : { allowed: ROOM_TOKEN_SCOPES, maxLifetimeS: deps.personalS, fixedScopes: ROOM_TOKEN_SCOPES },
      );
      if (!parsed.ok) return account(s, u, { status: 400, error: parsed.why.startsWith('scopes') ? 'Choose at least one scope.' : parsed.code === 'invalid_scope' ? 'That scope is not yours to give.' : 'Give the token a name (at most 128 bytes).' });
      usedNonces.set(nonceKey, true);
      const made = await personal.create(owner(u), { kind, ...parsed.value, room, group: u.groupId });
      const details: Array<[string, string]> = [
        ['Name', made.record.name ?? ''],
        ...(room !== undefined ? ([['Room', room]] as Array<[string, string]>) : []),
        ['Scopes', made.record.scopes.join(' ')],
        ['Expires', new Date(made.record.expiresAt).toISOString()],
      ];
      return respond(
        201,
        renderOnce({ page, csrf: await sessions.csrfFor(s), user: u.displayName ?? u.username, title: kind === 'personal' ? 'Your new personal token' : 'Your new room notification token', label: 'Token', value: made.token, details }),
      );
    }

    // /tokens/delete, /room-tokens/delete
    const kind = sub === '/tokens/delete' ? 'personal' : 'room_notification';
    const id = form.get('id') ?? '';
    const removed = await personal.remove(owner(u), kind, id);
    if (!removed) return account(s, u, { status: 404, error: 'No such token of yours (deleted already?).' });
    return redirect(`${page}?done=deleted`);
  }

  async function login(s: PageSession, form: URLSearchParams, r: PageRequest) {
    const username = form.get('username') ?? '';
    const password = form.get('password') ?? '';
    const userKey = `user:${username}`;
    const ipKey = `ip:${r.clientIp}`;
    if (username === '' || password === '' || Buffer.byteLength(username) > 1024) return loginPage(s, r, { status: 400, error: 'Give your username and password.', username: clip(username, 100) });
    if (deps.userAttempts.blocked(userKey) || deps.ipAttempts.blocked(ipKey)) {
      logger.info({ event: 'integration_login_blocked' }, 'integration page: too many failed sign-ins; password not checked');
      return loginPage(s, r, { status: 429, error: 'Too many failed attempts. Wait a few minutes and try again.', username: clip(username, 100) });
    }
    let checked: Awaited<ReturnType<CheckUser>>;
    try {
      checked = await deps.checkUser(username, password);
    } catch (e) {
      if (isGatewayError(e)) return loginPage(s, r, { status: 503, error: 'Sign-in is unavailable right now; try again later.', username: clip(username, 100) });
      throw e;
    }
    if (!checked.ok) {
      deps.userAttempts.fail(userKey);
      deps.ipAttempts.fail(ipKey);
      logger.info({ event: 'integration_login_failed', why: checked.why }, 'integration page: sign-in failed');
      return loginPage(s, r, { status: 401, error: 'Wrong username or password.', username: clip(username, 100) });
    }
    deps.userAttempts.succeed(userKey);
    let sgn: string | undefined;
    if (deps.storeUsers) {
      const u = await store.getUser(checked.user.subject);
      if (u) sgn = await sessions.fingerprint(u.passwordHash);
    }
    const issued = await sessions.issue({ user: checked.user.subject, sgn, ...(deps.storeUsers ? {} : { scopes: checked.user.scopes ? [...checked.user.scopes] : undefined }) });
    logger.info({ event: 'integration_login', user: clip(checked.user.subject, 64) }, 'integration page: signed in');
    return redirect(page, { 'set-cookie': cookie(issued.value, r, Math.floor(sessions.ttlMs / 1000)) });
  }

  return {
    paths,
    matches(path) {
      return path === page || (path.startsWith(`${page}/`) && path.length <= page.length + 32);
    },
    handle,
  };
}
