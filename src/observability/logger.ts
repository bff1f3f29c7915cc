/**
 * scopegate's logger: pino, JSON lines, with secrets redacted before a line is written
 * (SPEC.md §6: no token ever appears in a log). Four layers:
 * - `createLogger` censors known secret-bearing keys (authorization, cookie, token, secret,
 *   password, ...) at any depth up to four levels, as `[REDACTED]`;
 * - `redactUrl` censors a logged URL: the token query parameter and its look-alikes (as
 *   src/http/raw-query.ts reads them), and every path segment, query name or value and fragment
 *   that holds a JWS-shaped run once percent-decoded (`%2E` is a dot; up to three rounds, so
 *   double-encoding does not hide one) — without relying on the usual `eyJ` prefix;
 * - `accessFields` makes the access line's fields safe: JWS-shaped runs redacted, every string
 *   clipped to 256 bytes (src/clip.ts);
 * - `tokenFingerprint` gives a stable, non-reversible id for a token when one must be correlated.
 *
 * What counts as JWS-shaped: three base64url parts joined by `.` (padding `=` tolerated) where
 * the first holds, from any offset (`prefix-eyJ…`), the base64url of the start of a JSON object
 * with a member (`{"`, also after whitespace or with whitespace inside: `eyJ`, `eyAi`, `IHsi`,
 * ...), whatever the other two hold (an `alg: none` token has an empty signature); or, for a first
 * part that is not JSON, parts of at least 16, 16 and 22 characters (a 128-bit signature).
 * Dotted words (`items.user.name`, `a.b.c`, `example.tar.gz`) stay readable.
 *
 * @example
 *   const log = createLogger({ base: { service: 'scopegate' } });
 *   access.info(accessFields({ request_id, path: redactUrl(url, ['auth_token']), subject }), 'request');
 *   log.warn({ token_fp: tokenFingerprint(t) }, 'token revoked'); // not `token`: that key is censored
 */
import { createHash } from 'node:crypto';
import pino from 'pino';
import { clip } from '../clip.js';
import { looseDecode, redactParams } from '../http/raw-query.js';

export type Logger = pino.Logger;

export interface CreateLoggerOptions {
  /** pino level (trace|debug|info|warn|error|fatal|silent). Default: $LOG_LEVEL, else `info`. */
  level?: string;
  /** Where JSON lines go. Default: stdout. */
  destination?: pino.DestinationStream | NodeJS.WritableStream;
  /** Fields on every line. Default: pino's (`pid`, `hostname`). */
  base?: object;
}

/** Keys whose values are secrets wherever they appear. Lower-case, as Node delivers header names. */
const SECRET_KEYS = [
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'token',
  'auth_token',
  'access_token',
  'refresh_token',
  'id_token',
  'secret',
  'secrets',
  'password',
] as const;

/** How deep under the root a secret key is still found; pino redaction has no "any depth" form. */
const REDACT_DEPTH = 4;

function redactPaths(): string[] {
  const paths: string[] = [];
  for (const key of SECRET_KEYS) {
    // Keys with a dash need bracket notation: `*.*["set-cookie"]`.
    const plain = /^[A-Za-z_$][\w$]*$/.test(key);
    for (let depth = 0; depth < REDACT_DEPTH; depth++) {
      const wild = Array<string>(depth).fill('*').join('.');
      if (plain) paths.push(wild ? `${wild}.${key}` : key);
      else paths.push(`${wild}["${key}"]`);
    }
  }
  return paths;
}

/** Computed once: pino compiles the redaction paths per logger, the list itself is constant. */
const REDACT_PATHS: readonly string[] = redactPaths();

/** The censor written in place of every redacted value. */
export const REDACTED = '[REDACTED]';

/**
 * Creates the process logger (or a test logger writing to a captured stream).
 *
 * @example
 *   const lines: string[] = [];
 *   const log = createLogger({ level: 'debug', destination: new Writable({ write(c, _e, cb) { lines.push(String(c)); cb(); } }) });
 */
export function createLogger(opts: CreateLoggerOptions = {}): Logger {
  const level = opts.level ?? process.env['LOG_LEVEL'] ?? 'info';
  if (!(level in pino.levels.values) && level !== 'silent') {
    throw new TypeError(
      `unknown log level "${level}"; allowed: ${[...Object.keys(pino.levels.values), 'silent'].join(', ')}`,
    );
  }
  const options: pino.LoggerOptions = {
    level,
    redact: { paths: [...REDACT_PATHS], censor: REDACTED },
  };
  if (opts.base !== undefined) options.base = opts.base as Record<string, unknown>;
  // A plain Writable satisfies pino's DestinationStream (it only calls write()).
  if (opts.destination) return pino(options, opts.destination as pino.DestinationStream);
  // stdout, asynchronously and in batches: one access line per request must not cost a write
  // syscall each (measured: a third of the gateway's CPU at 8k req/s). Lines are written once 4 KiB
  // are buffered, or after at most 250 ms; pino flushes the rest synchronously at process exit.
  //
  // sonic-boom runs in buffer mode, each line handed over as its own Buffer: in its default utf8
  // mode every write() measures the UTF-8 length of the whole pending batch, flattening an ever
  // longer string, which cost more per access line than the rest of the proxied request
  // (measured: +16 % requests/s on the rig's load with this change alone). pino's exit hook and
  // EPIPE guard stay on the sonic-boom instance; `write` is looked up on every call so the guard's
  // replacement takes effect here too.
  const boom = pino.destination({ dest: 1, sync: false, minLength: 4096, periodicFlush: 250, contentMode: 'buffer' } as Parameters<
    typeof pino.destination
  >[0]);
  const bufferMode = boom as unknown as { write(chunk: Buffer): boolean };
  const destination: pino.DestinationStream = { write: (line: string) => void bufferMode.write(Buffer.from(line)) };
  return pino(options, destination);
}

/**
 * Replaces the value of every query parameter named in `params` — and of every look-alike of
 * one (`AUTH_TOKEN`, `auth.token`, `auth_token[]`, `x=1;auth_token=…`, `auth%255Ftoken`; see
 * src/http/raw-query.ts) — with `[REDACTED]`, leaving the rest of `pathAndQuery` byte for byte.
 * An encoded spelling of the exact name (`auth%5Ftoken`) is the parameter itself. A look-alike
 * whose name is written with escapes or `;` is replaced whole, since the token may sit in its
 * name (`auth_token%3D<token>`). Empty values stay empty (there is nothing to hide).
 *
 * @example
 *   redactQuery('/v2/room/1?auth_token=eyJ...&x=1', ['auth_token']) // '/v2/room/1?auth_token=[REDACTED]&x=1'
 */
export function redactQuery(pathAndQuery: string, params: readonly string[]): string {
  const q = pathAndQuery.indexOf('?');
  if (q === -1 || params.length === 0) return pathAndQuery;
  const hash = pathAndQuery.indexOf('#', q + 1);
  const end = hash === -1 ? pathAndQuery.length : hash;
  const query = pathAndQuery.slice(q + 1, end);
  const redacted = redactParams(query, params, REDACTED);
  if (redacted === query) return pathAndQuery;
  return `${pathAndQuery.slice(0, q + 1)}${redacted}${pathAndQuery.slice(end)}`;
}

// ── JWS-shaped text ────────────────────────────────────────────────────────────────────────

/**
 * Maximal runs of base64url characters, padding and dots: where a JWS can hide. A plain `+` run
 * (no lookahead for the dot) so that matching stays linear on attacker-sized text.
 */
const RUN = /[A-Za-z0-9_=.-]+/g;
const B64URL = /^[A-Za-z0-9_-]*$/;
/** base64url alphabet: char code → 6-bit value, -1 for anything else. */
const B64_VALUE: Int8Array = (() => {
  const t = new Int8Array(128).fill(-1);
  [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'].forEach((c, i) => (t[c.charCodeAt(0)] = i));
  return t;
})();
/** Rounds of percent-decoding a logged text goes through before it is called clean. */
const DECODE_ROUNDS = 3;
/** How many base64url characters of a candidate header are read: whitespace, `{`, whitespace, `"`. */
const HEADER_WINDOW = 48;

const isJsonSpace = (b: number): boolean => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;

/**
 * True when base64url `part`, read from `from`, decodes to `ws* { ws* "`: how every JOSE header
 * starts. Decodes byte by byte and stops at the first byte that decides, so scanning every offset
 * of a long part stays cheap.
 */
function joseHeaderAt(part: string, from: number): boolean {
  let acc = 0;
  let bits = 0;
  let state = 0; // 0: before `{`, 1: after `{`
  const end = Math.min(part.length, from + HEADER_WINDOW);
  for (let i = from; i < end; i++) {
    const c = part.charCodeAt(i);
    const v = c < 128 ? B64_VALUE[c]! : -1;
    if (v < 0) return false;
    acc = ((acc << 6) | v) & 0xfff;
    bits += 6;
    if (bits < 8) continue;
    bits -= 8;
    const b = (acc >> bits) & 0xff;
    if (isJsonSpace(b)) continue;
    if (state === 0) {
      if (b !== 0x7b) return false;
      state = 1;
      continue;
    }
    return b === 0x22;
  }
  // The part ended right after `{` (and whitespace): as far as it goes, a JOSE header.
  return state === 1 && end === part.length;
}

/**
 * True when a JOSE header starts anywhere in `part` (a token glued to other base64url text:
 * `prefix-eyJ…`). Its first character encodes `{` or JSON whitespace: one of `e I C D`.
 */
function joseHeaderIn(part: string): boolean {
  for (let i = 0; i + 4 <= part.length; i++) {
    const c = part.charCodeAt(i);
    if ((c === 0x65 || c === 0x49 || c === 0x43 || c === 0x44) && joseHeaderAt(part, i)) return true;
  }
  return false;
}

/**
 * The three parts as base64url, or null. `=` is not base64url: it is padding at the end of a
 * part, or the edge of the run (`x=<header>`, `<signature>=junk`), never inside a payload.
 */
function jwsAt(h: string, p: string, s: string): boolean {
  const stripped = trimPadding(h, h.length);
  const header = stripped.slice(stripped.lastIndexOf('=') + 1);
  const payload = trimPadding(p, 2);
  const eq = s.indexOf('=');
  const signature = eq === -1 ? s : s.slice(0, eq);
  if (!B64URL.test(payload)) return false;
  if (joseHeaderIn(header)) return true;
  return header.length >= 16 && payload.length >= 16 && signature.length >= 22;
}

/** `part` without up to `max` trailing `=` (a loop: a regex like /=+$/ is quadratic on `===…x`). */
function trimPadding(part: string, max: number): string {
  let end = part.length;
  while (end > 0 && part.length - end < max && part.charCodeAt(end - 1) === 0x3d) end--;
  return end === part.length ? part : part.slice(0, end);
}

/** True when a run holds three consecutive dot-separated parts that make a JWS. */
function jwsRun(run: string): boolean {
  if (run.indexOf('.') === -1) return false;
  const parts = run.split('.');
  for (let i = 0; i + 2 < parts.length; i++) if (jwsAt(parts[i]!, parts[i + 1]!, parts[i + 2]!)) return true;
  return false;
}

function jwsRunIn(text: string): boolean {
  if (text.indexOf('.') === -1) return false;
  for (const run of text.match(RUN) ?? []) if (jwsRun(run)) return true;
  return false;
}

/**
 * True when `text` holds a JWS-shaped run as written or after up to three rounds of lenient
 * percent-decoding (`%2E` and `%252E` are dots too).
 *
 * @example holdsJws('a%2Eb') // false;  holdsJws('eyJhbGciOiJub25lIn0%2Ee30%2E') // true
 */
export function holdsJws(text: string): boolean {
  let t = text;
  for (let round = 0; round <= DECODE_ROUNDS; round++) {
    if (round > 0) {
      const next = looseDecode(t);
      if (next === t) break;
      t = next;
    }
    if (jwsRunIn(t)) return true;
  }
  return false;
}

/**
 * `text` with every JWS-shaped run replaced by `[REDACTED]`; when one is visible only after
 * percent-decoding, the whole text is replaced. For free-text fields (an error message, a
 * subject); URLs go through `redactUrl`, which keeps more of them readable.
 *
 * @example redactText('bad token eyJhbGciOiJIUzI1NiJ9.e30.c2ln') // 'bad token [REDACTED]'
 */
export function redactText(text: string): string {
  if (!mayHoldJws(text) || !holdsJws(text)) return text;
  const replaced = text.replace(RUN, (run) => (jwsRun(run) ? REDACTED : run));
  return holdsJws(replaced) ? REDACTED : replaced;
}

function mayHoldJws(text: string): boolean {
  return text.indexOf('.') !== -1 || text.indexOf('%') !== -1;
}

/**
 * A child of `logger` for the one access line per request, without path redaction. pino's
 * wildcard redaction costs ~100 µs a line, more than the whole proxied request; the access line is
 * built only from fields that cannot hold a secret (the URL goes through `redactUrl`, the token is
 * represented by its jti or a hash prefix, and `accessFields` redacts and clips the rest), so it
 * does not need it. Anything else keeps `logger`.
 *
 * @example const access = accessLogger(logger); access.info(accessFields({ request_id, path: redactUrl(url, ['auth_token']) }), 'request');
 */
export function accessLogger(logger: Logger): Logger {
  return logger.child({}, { redact: { paths: [] } });
}

/**
 * The URL as it may be logged: the named query parameters and their look-alikes redacted (see
 * `redactQuery`), and every path segment, query value (or whole piece, when the name holds it)
 * and fragment that holds a JWS-shaped run — as written or percent-decoded — replaced by
 * `[REDACTED]`. Everything else stays byte for byte, so the path remains readable.
 *
 * @example redactUrl('/v2/oauth/token/eyJ..x.y?auth_token=t', ['auth_token']) // '/v2/oauth/token/[REDACTED]?auth_token=[REDACTED]'
 */
export function redactUrl(pathAndQuery: string, params: readonly string[]): string {
  const q = pathAndQuery.indexOf('?');
  const path = q === -1 ? pathAndQuery : pathAndQuery.slice(0, q);
  const out = redactSegments(path);
  if (q === -1) return out;
  const rest = pathAndQuery.slice(q + 1);
  const hash = rest.indexOf('#');
  const query = redactPieces(redactParams(hash === -1 ? rest : rest.slice(0, hash), params, REDACTED));
  if (hash === -1) return `${out}?${query}`;
  const fragment = redactParams(rest.slice(hash + 1), params, REDACTED);
  return `${out}?${query}#${holdsJws(fragment) ? REDACTED : fragment}`;
}

function redactSegments(path: string): string {
  if (!mayHoldJws(path)) return path;
  const segs = path.split('/');
  let changed = false;
  for (let i = 0; i < segs.length; i++) {
    if (mayHoldJws(segs[i]!) && holdsJws(segs[i]!)) {
      segs[i] = REDACTED;
      changed = true;
    }
  }
  return changed ? segs.join('/') : path;
}

function redactPieces(query: string): string {
  if (!mayHoldJws(query)) return query;
  const pieces = query.split('&');
  let changed = false;
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i]!;
    if (!mayHoldJws(piece)) continue;
    const eq = piece.indexOf('=');
    const name = eq === -1 ? piece : piece.slice(0, eq);
    let next = piece;
    if (holdsJws(name)) next = REDACTED;
    else if (eq !== -1 && holdsJws(piece.slice(eq + 1))) next = `${name}=${REDACTED}`;
    if (next !== piece) {
      pieces[i] = next;
      changed = true;
    }
  }
  return changed ? pieces.join('&') : query;
}

/**
 * The access line's fields made safe to write (SPEC §6): every string value (and every string in
 * an array value) has its JWS-shaped runs redacted (`redactText`) and is then clipped to 256 bytes
 * (`clip`), since request- and token-derived fields (path, subject, room, ...) are attacker-sized.
 * Other values pass through. Returns a new object with the same key order. Apply it after
 * `redactUrl`: clipping first could cut a token below the shape that redaction looks for.
 *
 * @example access.info(accessFields({ request_id, path: redactUrl(url, ['auth_token']), status, subject }), 'request');
 */
export function accessFields<T extends Record<string, unknown>>(fields: T): T {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(fields)) {
    const v = fields[key];
    if (typeof v === 'string') out[key] = logField(v);
    else if (Array.isArray(v)) out[key] = v.map((x: unknown) => (typeof x === 'string' ? logField(x) : x));
    else out[key] = v;
  }
  return out as T;
}

/** One request- or token-derived string as a log line may carry it: redacted, then clipped (accessFields' rule). */
export function logField(v: string): string {
  return clip(redactText(v));
}

/**
 * A short, stable, non-reversible id for a token: the first 12 hex characters of its SHA-256.
 * Safe to log where the token itself never may be.
 *
 * @example
 *   log.info({ token_fp: tokenFingerprint(token) }, 'verified') // token_fp: "3f2a9c0b1d4e"
 */
export function tokenFingerprint(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex').slice(0, 12);
}
