/**
 * The Integration page's session cookie and CSRF tokens (SPEC §9 "The Integration page").
 *
 * Stateless and HMAC-signed, so any replica sharing the token store serves any request: the
 * cookie is `base64url(JSON payload) "." base64url(HMAC-SHA-256(key, "v1." payload))`, the key
 * derived with HKDF-SHA-256 from the token service's own signing material (the issuer's HMAC
 * secrets, its private key file, or the store's ES256 keys — what every replica already shares),
 * with its own label, so a page cookie is never a valid signature of anything else. Verification
 * tries every current key (a rotated signing key keeps open sessions valid until they expire).
 * The payload holds a random session id, the username (absent before sign-in: the login form
 * needs a CSRF token too), issue and expiry times and, for store users, `sgn` — a MAC of the
 * user's password hash, so changing the password ends every session. Nothing secret is inside:
 * the cookie is signed, not encrypted. A stateless cookie cannot be revoked before its expiry
 * (default 30 minutes); signing out deletes it in that browser.
 *
 * CSRF: each form carries `HMAC(key, "csrf." sid)` — a double submit bound to the session (the
 * cookie carries the sid, the form the token derived from it), compared in constant time. The
 * cookie is HttpOnly, SameSite=Strict, Path = the page, and Secure when the request came over
 * https.
 *
 * @example
 *   const codec = createPageSessions({ keys: async () => [secretBytes], clock: Date.now, ttlMs: 1_800_000 });
 *   const value = await codec.issue({ user: 'alice' });          // cookie value
 *   const s = await codec.read(req.headers.get('cookie'));       // PageSession | undefined
 *   const csrf = await codec.csrfFor(s!);                         // hidden form field
 *   await codec.checkCsrf(s!, form.get('csrf'));                  // true / false (constant time)
 *   setCookieHeader('scopegate_integration', value, { path: '/integration', secure: true, maxAgeS: 1800 });
 */
import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../types.js';

export const COOKIE_NAME = 'scopegate_integration';
/** The longest Cookie header and cookie value looked at. */
const MAX_COOKIE_HEADER = 8192;
const MAX_VALUE = 4096;
const HKDF_INFO = 'scopegate integration-page session v1';
const B64URL = /^[A-Za-z0-9_-]+$/;

export interface PageSession {
  /** Random session id (base64url, 128 bits): what CSRF tokens are bound to. */
  sid: string;
  /** The signed-in username; undefined before sign-in. */
  user?: string | undefined;
  /** Epoch ms. */
  iat: number;
  exp: number;
  /** MAC of the user's password hash (store users), checked against the store on every request. */
  sgn?: string | undefined;
  /** Scopes a users-URL user was granted at sign-in (store users are re-read from the store). */
  scopes?: string[] | undefined;
}

export interface PageSessionOptions {
  /** The key material, newest (signing) first; every entry verifies. Called per request, so cache inside. */
  keys: () => Promise<readonly Uint8Array[]>;
  clock: Clock;
  /** Lifetime of a signed-in session, ms (default 1 800 000). */
  ttlMs?: number | undefined;
  /** Lifetime of a signed-out (login-form) session, ms (default 3 600 000). */
  anonTtlMs?: number | undefined;
}

export interface PageSessions {
  issue(data: { user?: string | undefined; sgn?: string | undefined; scopes?: string[] | undefined }): Promise<{ value: string; session: PageSession }>;
  /** The valid, unexpired session in a Cookie header, else undefined. Never throws. */
  read(cookieHeader: string | null | undefined): Promise<PageSession | undefined>;
  csrfFor(s: PageSession): Promise<string>;
  checkCsrf(s: PageSession, presented: string | null | undefined): Promise<boolean>;
  /** MAC of a password hash, for `sgn`. */
  fingerprint(passwordHash: string): Promise<string>;
  readonly ttlMs: number;
}

/**
 * The cookies of a Cookie header (RFC 6265 §5.4 style): `name=value` pairs split on `;`, first
 * occurrence of a name wins, quotes around a value dropped, nothing decoded. Pure, never throws.
 */
export function parseCookies(header: string | null | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (typeof header !== 'string' || header.length > MAX_COOKIE_HEADER) return out;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    let value = part.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (name !== '' && !out.has(name)) out.set(name, value);
  }
  return out;
}

/** A Set-Cookie value: HttpOnly, SameSite=Strict, Path, Secure when asked, Max-Age (0 deletes). */
export function setCookieHeader(name: string, value: string, o: { path: string; secure: boolean; maxAgeS: number }): string {
  if (!/^[A-Za-z0-9_-]+$/.test(name) || !/^[A-Za-z0-9_.-]*$/.test(value)) throw new TypeError('setCookieHeader: name or value has characters a cookie cannot carry unquoted');
  if (!/^\/[A-Za-z0-9_.~/-]*$/.test(o.path)) throw new TypeError('setCookieHeader: bad path');
  return `${name}=${value}; Path=${o.path}; Max-Age=${Math.max(0, Math.floor(o.maxAgeS))}; HttpOnly; SameSite=Strict${o.secure ? '; Secure' : ''}`;
}

function derive(material: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', material, 'scopegate', HKDF_INFO, 32));
}

function mac(key: Buffer, label: string, data: string): Buffer {
  return createHmac('sha256', key).update(`${label}.`).update(data).digest();
}

function posInt(name: string, v: number | undefined, def: number): number {
  const n = v ?? def;
  if (!Number.isSafeInteger(n) || n < 1) throw new TypeError(`createPageSessions: ${name} must be a positive integer, got ${String(v)}`);
  return n;
}

/** Decodes a payload's JSON into a PageSession, or undefined for anything else. Pure. */
export function decodePayload(text: string): PageSession | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  const sid = o['sid'];
  const iat = o['iat'];
  const exp = o['exp'];
  if (typeof sid !== 'string' || !B64URL.test(sid) || sid.length > 64) return undefined;
  if (typeof iat !== 'number' || typeof exp !== 'number' || !Number.isSafeInteger(iat) || !Number.isSafeInteger(exp)) return undefined;
  const s: PageSession = { sid, iat, exp };
  const user = o['user'];
  if (user !== undefined) {
    if (typeof user !== 'string' || user === '' || Buffer.byteLength(user) > 1024) return undefined;
    s.user = user;
  }
  const sgn = o['sgn'];
  if (sgn !== undefined) {
    if (typeof sgn !== 'string' || !B64URL.test(sgn)) return undefined;
    s.sgn = sgn;
  }
  const scopes = o['scopes'];
  if (scopes !== undefined) {
    if (!Array.isArray(scopes) || scopes.length > 256 || !scopes.every((x) => typeof x === 'string')) return undefined;
    s.scopes = scopes as string[];
  }
  return s;
}

export function createPageSessions(opts: PageSessionOptions): PageSessions {
  if (typeof opts.keys !== 'function') throw new TypeError('createPageSessions: keys must be a function');
  if (typeof opts.clock !== 'function') throw new TypeError('createPageSessions: clock must be a function');
  const ttlMs = posInt('ttlMs', opts.ttlMs, 1_800_000);
  const anonTtlMs = posInt('anonTtlMs', opts.anonTtlMs, 3_600_000);
  const { clock } = opts;
  const derived = new WeakMap<Uint8Array, Buffer>();

  async function keys(): Promise<Buffer[]> {
    const list = await opts.keys();
    if (list.length === 0) throw new TypeError('createPageSessions: no key material');
    return list.map((m) => {
      let k = derived.get(m);
      if (!k) derived.set(m, (k = derive(m)));
      return k;
    });
  }

  return {
    ttlMs,
    async issue(data) {
      const now = clock();
      const session: PageSession = {
        sid: randomBytes(16).toString('base64url'),
        ...(data.user !== undefined ? { user: data.user } : {}),
        iat: now,
        exp: now + (data.user !== undefined ? ttlMs : anonTtlMs),
        ...(data.sgn !== undefined ? { sgn: data.sgn } : {}),
        ...(data.scopes !== undefined ? { scopes: data.scopes } : {}),
      };
      const payload = Buffer.from(JSON.stringify(session), 'utf8').toString('base64url');
      const [k] = await keys();
      return { value: `${payload}.${mac(k!, 'v1', payload).toString('base64url')}`, session };
    },
    async read(header) {
      const value = parseCookies(header).get(COOKIE_NAME);
      if (value === undefined || value.length > MAX_VALUE) return undefined;
      const dot = value.indexOf('.');
      if (dot <= 0 || dot !== value.lastIndexOf('.')) return undefined;
      const payload = value.slice(0, dot);
      const sig = value.slice(dot + 1);
      if (!B64URL.test(payload) || !B64URL.test(sig)) return undefined;
      const presented = Buffer.from(sig, 'base64url');
      if (presented.length !== 32) return undefined;
      let ok = false;
      for (const k of await keys()) if (timingSafeEqual(mac(k, 'v1', payload), presented)) ok = true;
      if (!ok) return undefined;
      const s = decodePayload(Buffer.from(payload, 'base64url').toString('utf8'));
      if (!s || s.exp <= clock()) return undefined;
      return s;
    },
    async csrfFor(s) {
      const [k] = await keys();
      return mac(k!, 'csrf', s.sid).toString('base64url');
    },
    async checkCsrf(s, presented) {
      if (typeof presented !== 'string' || presented.length !== 43 || !B64URL.test(presented)) return false;
      const got = Buffer.from(presented, 'base64url');
      let ok = false;
      for (const k of await keys()) {
        const want = mac(k, 'csrf', s.sid);
        if (want.length === got.length && timingSafeEqual(want, got)) ok = true;
      }
      return ok;
    },
    async fingerprint(passwordHash) {
      const [k] = await keys();
      return mac(k!, 'sgn', passwordHash).subarray(0, 16).toString('base64url');
    },
  };
}
