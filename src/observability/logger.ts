/**
 * scopegate's logger: pino, JSON lines, with secrets redacted before a line is written
 * (SPEC.md §6: no token ever appears in a log). Three layers:
 * - `createLogger` censors known secret-bearing keys (authorization, cookie, token, secret,
 *   password, ...) at any depth up to four levels, as `[REDACTED]`;
 * - `redactQuery` censors the token query parameter in a logged path;
 * - `tokenFingerprint` gives a stable, non-reversible id for a token when one must be correlated.
 *
 * @example
 *   const log = createLogger({ base: { service: 'scopegate' } });
 *   log.info({ req: { headers }, path: redactQuery(url, ['auth_token']) }, 'request');
 *   log.warn({ token_fp: tokenFingerprint(t) }, 'token revoked'); // not `token`: that key is censored
 */
import { createHash } from 'node:crypto';
import pino from 'pino';
import { formDecode } from '../form-decode.js';

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
 * Replaces the value of every query parameter named in `params` with `[REDACTED]`, leaving the
 * rest of `pathAndQuery` byte for byte. Names are compared after percent-decoding (`auth%5Ftoken`
 * is `auth_token`, as URLSearchParams would read it) and case-insensitively, since a mis-cased
 * name can still carry a real token. Empty values stay empty (there is nothing to hide).
 *
 * @example
 *   redactQuery('/v2/room/1?auth_token=eyJ...&x=1', ['auth_token']) // '/v2/room/1?auth_token=[REDACTED]&x=1'
 */
export function redactQuery(pathAndQuery: string, params: readonly string[]): string {
  const q = pathAndQuery.indexOf('?');
  if (q === -1 || params.length === 0) return pathAndQuery;
  const hash = pathAndQuery.indexOf('#', q + 1);
  const end = hash === -1 ? pathAndQuery.length : hash;
  const wanted = new Set(params.map((p) => p.toLowerCase()));

  const parts = pathAndQuery.slice(q + 1, end).split('&');
  let changed = false;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] as string;
    const eq = part.indexOf('=');
    if (eq === -1 || eq === part.length - 1) continue;
    if (!wanted.has(formDecode(part.slice(0, eq)).toLowerCase())) continue;
    parts[i] = `${part.slice(0, eq + 1)}${REDACTED}`;
    changed = true;
  }
  if (!changed) return pathAndQuery;
  return `${pathAndQuery.slice(0, q + 1)}${parts.join('&')}${pathAndQuery.slice(end)}`;
}

// A compact JWS anywhere in a URL (e.g. GET /v2/oauth/token/{access_token}): the header always
// starts with base64url('{"') = "eyJ".
const JWT_IN_TEXT = /eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*/g;

/**
 * A child of `logger` for the one access line per request, without path redaction. pino's
 * wildcard redaction costs ~100 µs a line, more than the whole proxied request; the access line is
 * built only from fields that cannot hold a secret (the URL goes through `redactUrl`, the token is
 * represented by its jti or a hash prefix), so it does not need it. Anything else keeps `logger`.
 *
 * @example const access = accessLogger(logger); access.info({ request_id, path: redactUrl(url, ['auth_token']) }, 'request');
 */
export function accessLogger(logger: Logger): Logger {
  return logger.child({}, { redact: { paths: [] } });
}

/**
 * The URL as it may be logged: the named query parameters' values and every JWT-shaped
 * substring (in the path or any other parameter) replaced by [REDACTED].
 *
 * @example redactUrl('/v2/oauth/token/eyJ..x.y?auth_token=t', ['auth_token']) // '/v2/oauth/token/[REDACTED]?auth_token=[REDACTED]'
 */
export function redactUrl(pathAndQuery: string, params: readonly string[]): string {
  return redactQuery(pathAndQuery, params).replace(JWT_IN_TEXT, REDACTED);
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
