/**
 * The one reader of raw query strings (SPEC §1.3, §1.6, §5, §6). Every stage that looks at the
 * query — token extraction, the auth_test probe, what is forwarded upstream, what is logged — asks
 * this module, so they can never disagree about what a parameter is. Pure; no `node:` import (it
 * runs in every door: Node, Bun, a Hono app on any runtime).
 *
 * A query (the text after `?`) is split once on `&` into pieces; a piece is `rawName[=rawValue]`,
 * read as application/x-www-form-urlencoded (`+` is a space, then percent-decoding; a malformed
 * escape leaves the raw text as written). Against a parameter name P, each piece is one of:
 *
 * - **exact** — its form-decoded name is P. An encoded spelling (`auth%5Ftoken`) decodes to P and
 *   therefore IS the parameter: repeating it that way is a repetition, not a look-alike.
 * - **look-alike** — some other parser may fold it into P. After up to three rounds of lenient
 *   decoding (each valid `%XX` and IIS `%uXXXX` escape; invalid UTF-8 becomes U+FFFD, so one bad
 *   escape does not hide the others), with `&` and `;` (also decoded ones) read as separators and
 *   a decoded `=` ending the name, a name is a look-alike when, after cutting at a NUL, trimming,
 *   NFKC and case folding, reading `.`, `+`, space and `[` as `_`, and dropping a trailing `[...]`
 *   (PHP's `auth_token[]`, `auth_token[0]`), it equals P folded the same way. Examples for
 *   `auth_token`: `AUTH_TOKEN`, `auth.token`, `auth+token`, `auth%20token`, `auth_token[]`,
 *   `auth_token%5B%5D`, `auth_token[0]`, `auth_token%00x`, `auth%255Ftoken` (double-encoded),
 *   `x;auth_token`, and `x=1;auth_token=…` (the `;` segment of another parameter).
 *   Decision: a look-alike NAME is refused whatever its value, the empty one included — it is
 *   never forwarded and never read as a token. A piece that is exact by its `&`-name but carries
 *   a look-alike in a `;` segment (`auth_token=a;auth_token=b`) counts as a look-alike.
 * - **other** — everything else, forwarded byte for byte.
 *
 * Fast path: a query without `%`, without non-ASCII text and without the letters of P's longest
 * `_`-free run (`token` for `auth_token`, case-insensitively) can hold neither, and is not split.
 *
 * @example
 *   tokenParamValues('a=1&auth_token=abc', 'auth_token');  // { values: ['abc'], lookAlikeAt: 0 }
 *   tokenParamValues('auth.token=x', 'auth_token');       // { values: [], lookAlikeAt: 1 }
 *   authTestMode('auth_test=TRUE');                       // 'probe'
 *   authTestMode('auth_test=yes');                        // throws GatewayError('bad_request')
 *   stripParams('a=1&auth_token=t&AUTH_TEST=x&b', ['auth_token', 'auth_test']); // 'a=1&b'
 *   redactParams('x=1&auth_token=t', ['auth_token'], '[REDACTED]'); // 'x=1&auth_token=[REDACTED]'
 */
import { GatewayError } from '../errors.js';

/** One `&`-separated piece of a raw query, read as a form field. */
export interface QueryPair {
  /** The name as written (the text before the first `=`, or the whole piece). */
  rawName: string;
  /** The value as written; `undefined` when the piece has no `=`. */
  rawValue: string | undefined;
  /** Form-decoded name (`+` → space, then percent-decoding; a malformed escape leaves `rawName`). */
  name: string;
  /** Form-decoded value, likewise; `undefined` when the piece has no `=`. */
  value: string | undefined;
}

/**
 * Form-decodes one name or value: `+` is a space, then percent-decoding. Returns `undefined` when
 * the text is not valid percent-encoded UTF-8 (callers decide: the raw text, or a refusal).
 */
export function formDecodeStrict(raw: string): string | undefined {
  if (raw.indexOf('%') === -1) return raw.indexOf('+') === -1 ? raw : raw.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

/** {@link formDecodeStrict}, keeping the raw text when it is malformed (`%zz` stays `%zz`). */
export function formDecode(raw: string): string {
  return formDecodeStrict(raw) ?? raw;
}

/** Splits a raw query (without `?`) into its pairs, skipping empty pieces (`a=1&&b`). */
export function parseQuery(rawQuery: string): QueryPair[] {
  const out: QueryPair[] = [];
  if (rawQuery === '') return out;
  for (const piece of rawQuery.split('&')) {
    if (piece === '') continue;
    const eq = piece.indexOf('=');
    const rawName = eq === -1 ? piece : piece.slice(0, eq);
    const rawValue = eq === -1 ? undefined : piece.slice(eq + 1);
    out.push({ rawName, rawValue, name: formDecode(rawName), value: rawValue === undefined ? undefined : formDecode(rawValue) });
  }
  return out;
}

// ── names and their look-alikes ────────────────────────────────────────────────────────────

/** A parameter name compiled once: its folded form and the prefilter that lets most queries skip. */
interface Target {
  name: string;
  folded: string;
  /** Matches any query that could hold the name or a look-alike; null: always look. */
  maybe: RegExp | null;
}

const targets = new Map<string, Target>();
/** Names are config values (a handful); a caller passing arbitrary names must not grow the cache. */
const MAX_CACHED_TARGETS = 64;

function target(name: string): Target {
  let t = targets.get(name);
  if (t) return t;
  const folded = mapSeparators(name.toLowerCase());
  // The longest run the folding leaves alone except for case: any spelling without escapes or
  // non-ASCII text that folds to `folded` contains it.
  const core = folded.split('_').reduce((a, b) => (b.length > a.length ? b : a), '');
  const maybe = core === '' ? null : new RegExp(`[%\\u0080-\\uffff]|${core.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&')}`, 'i');
  t = { name, folded, maybe };
  if (targets.size < MAX_CACHED_TARGETS) targets.set(name, t);
  return t;
}

function mapSeparators(s: string): string {
  return s.replace(/[.+ []/g, '_');
}

/** True when one decoded name candidate folds to `folded`. */
function foldsTo(candidate: string, folded: string): boolean {
  let s = candidate;
  const nul = s.indexOf('\0');
  if (nul !== -1) s = s.slice(0, nul);
  s = s.trim();
  const forms: string[] = [];
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(s)) {
    const n = s.normalize('NFKC').trim();
    forms.push(n.toLowerCase(), n.toUpperCase().toLowerCase(), s.toLowerCase(), s.toUpperCase().toLowerCase());
  } else {
    forms.push(s.toLowerCase());
  }
  // Folding keeps lengths, so only a candidate of the folded name's length can equal it.
  const n = folded.length;
  for (const f of forms) {
    if (f.length === n && mapSeparators(f) === folded) return true;
    // PHP reads `name[...]` as the array `name`: the prefix before a `[` that a `]` follows.
    if (f.length > n && f[n] === '[' && f.indexOf(']', n + 1) !== -1 && mapSeparators(f.slice(0, n)) === folded) return true;
  }
  return false;
}

/** Decoding rounds tried when looking for a look-alike (PHP decodes once; we are conservative). */
const LOOKALIKE_DECODE_ROUNDS = 3;

/** True when `rawName` (as written) is a look-alike of — or decodes to — the target. */
function nameFolds(rawName: string, t: Target): boolean {
  let text = rawName;
  for (let round = 0; round <= LOOKALIKE_DECODE_ROUNDS; round++) {
    if (round > 0) {
      const next = looseDecode(text);
      if (next === text) break;
      text = next;
    }
    for (const part of text.split(/[&;]/)) {
      const eq = part.indexOf('=');
      if (foldsTo(eq === -1 ? part : part.slice(0, eq), t.folded)) return true;
    }
  }
  return false;
}

const utf8 = new TextDecoder('utf-8');

/** Value of a hex digit's char code, or -1. */
function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x61 + 10 : -1;
}

/**
 * Lenient form-decoding, as the most forgiving parsers do it: `+` is a space, every valid `%XX`
 * is a byte and every `%uXXXX` a UTF-16 unit (IIS), malformed escapes stay as written, and bytes
 * that are not UTF-8 become U+FFFD — so one bad escape never hides the good ones around it.
 * For comparing and for log redaction only: never forwarded, never a token. Linear, one pass.
 *
 * @example looseDecode('auth%5Ftoken%00%E0') // 'auth_token\u0000\uFFFD'
 */
export function looseDecode(raw: string): string {
  if (raw.indexOf('%') === -1) return raw.indexOf('+') === -1 ? raw : raw.replace(/\+/g, ' ');
  // Every UTF-16 unit becomes at most 3 UTF-8 bytes; an escape (3 or 6 units) at most 3.
  const bytes = new Uint8Array(raw.length * 3);
  let n = 0;
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    let c = raw.charCodeAt(i);
    if (c === 0x25 /* % */) {
      const h = i + 2 < raw.length ? hexValue(raw.charCodeAt(i + 1)) : -1;
      const l = h === -1 ? -1 : hexValue(raw.charCodeAt(i + 2));
      if (l !== -1) {
        bytes[n++] = (h << 4) | l;
        i += 2;
        continue;
      }
      if (i + 5 < raw.length && (raw.charCodeAt(i + 1) | 0x20) === 0x75 /* u */) {
        const a = hexValue(raw.charCodeAt(i + 2));
        const b = hexValue(raw.charCodeAt(i + 3));
        const d = hexValue(raw.charCodeAt(i + 4));
        const e = hexValue(raw.charCodeAt(i + 5));
        if ((a | b | d | e) >= 0) {
          const unit = (a << 12) | (b << 8) | (d << 4) | e;
          i += 5;
          if (unit < 0x80) bytes[n++] = unit;
          else {
            // Rare: let the string join surrogate halves that arrive as two escapes.
            out += utf8.decode(bytes.subarray(0, n)) + String.fromCharCode(unit);
            n = 0;
          }
          continue;
        }
      }
    }
    if (c === 0x2b /* + */) c = 0x20;
    if (c < 0x80) bytes[n++] = c;
    else if (c < 0x800) {
      bytes[n++] = 0xc0 | (c >> 6);
      bytes[n++] = 0x80 | (c & 0x3f);
    } else if (c >= 0xd800 && c <= 0xdbff && i + 1 < raw.length && (raw.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      const cp = 0x10000 + ((c - 0xd800) << 10) + (raw.charCodeAt(i + 1) - 0xdc00);
      bytes[n++] = 0xf0 | (cp >> 18);
      bytes[n++] = 0x80 | ((cp >> 12) & 0x3f);
      bytes[n++] = 0x80 | ((cp >> 6) & 0x3f);
      bytes[n++] = 0x80 | (cp & 0x3f);
      i++;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      // A lone surrogate: U+FFFD, as TextEncoder writes it.
      bytes[n++] = 0xef;
      bytes[n++] = 0xbf;
      bytes[n++] = 0xbd;
    } else {
      bytes[n++] = 0xe0 | (c >> 12);
      bytes[n++] = 0x80 | ((c >> 6) & 0x3f);
      bytes[n++] = 0x80 | (c & 0x3f);
    }
  }
  return out + utf8.decode(bytes.subarray(0, n));
}

/**
 * How a piece relates to a name: `exact` (its `&`-name is the name), `name` (its `&`-name is a
 * look-alike), `segment` (a `;` segment of its value names it: `x=1;auth_token=…`).
 */
interface Verdict {
  exact: boolean;
  name: boolean;
  segment: boolean;
}

function classify(piece: string, t: Target): Verdict {
  const eq = piece.indexOf('=');
  const rawName = eq === -1 ? piece : piece.slice(0, eq);
  const exact = isExact(rawName, t);
  const name = !exact && nameFolds(rawName, t);
  const segment = !name && eq !== -1 && piece.indexOf(';', eq) !== -1 && segmentHit(piece.slice(eq + 1), t);
  return { exact, name, segment };
}

/** True when a `;` segment after the first one in `rawValue` names the target (exactly or not). */
function segmentHit(rawValue: string, t: Target): boolean {
  const segs = rawValue.split(';');
  for (let i = 1; i < segs.length; i++) if (segmentNames(segs[i]!, t)) return true;
  return false;
}

function segmentNames(seg: string, t: Target): boolean {
  const eq = seg.indexOf('=');
  const name = eq === -1 ? seg : seg.slice(0, eq);
  return isExact(name, t) || nameFolds(name, t);
}

/**
 * True when `rawName` form-decodes to exactly the target's name. Decoding never lengthens text and
 * a UTF-16 unit takes at most 9 raw characters (`%E2%82%AC` is one), so other lengths skip the
 * decoding (and the exception a long malformed name would cost).
 */
function isExact(rawName: string, t: Target): boolean {
  if (rawName.length < t.name.length || rawName.length > t.name.length * 9) return false;
  return formDecode(rawName) === t.name;
}

function couldHold(rawQuery: string, t: Target): boolean {
  return rawQuery !== '' && (t.maybe === null || t.maybe.test(rawQuery));
}

/**
 * True when `rawName`, as written in a query, is a look-alike of `param` (and not `param` itself).
 *
 * @example isLookAlike('AUTH_TOKEN', 'auth_token') // true;  isLookAlike('auth%5Ftoken', 'auth_token') // false (it is the parameter)
 */
export function isLookAlike(rawName: string, param: string): boolean {
  const t = target(param);
  return !isExact(rawName, t) && nameFolds(rawName, t);
}

// ── the token parameter ────────────────────────────────────────────────────────────────────

export interface TokenParamScan {
  /**
   * The form-decoded value of every exact occurrence, in order: `''` for `auth_token=` and for a
   * bare `auth_token`, `null` for a value that is not valid percent-encoding.
   */
  values: (string | null)[];
  /** 1-based position (among the `&` pieces) of the first look-alike, or 0 when there is none. */
  lookAlikeAt: number;
}

/**
 * Every value of the token parameter `param` in `rawQuery`, and where its first look-alike is.
 * Extraction refuses any look-alike (token_conflict) before it looks at the values.
 *
 * @example tokenParamValues('auth_token=a&x=1;AUTH_TOKEN=b', 'auth_token') // { values: ['a'], lookAlikeAt: 2 }
 */
export function tokenParamValues(rawQuery: string, param: string): TokenParamScan {
  const scan: TokenParamScan = { values: [], lookAlikeAt: 0 };
  const t = target(param);
  if (!couldHold(rawQuery, t)) return scan;
  const pieces = rawQuery.split('&');
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i]!;
    if (piece === '') continue;
    const v = classify(piece, t);
    if (v.name || v.segment) {
      if (scan.lookAlikeAt === 0) scan.lookAlikeAt = i + 1;
    } else if (v.exact) {
      const eq = piece.indexOf('=');
      scan.values.push(eq === -1 ? '' : (formDecodeStrict(piece.slice(eq + 1)) ?? null));
    }
  }
  return scan;
}

// ── auth_test ──────────────────────────────────────────────────────────────────────────────

/** The probe parameter's name (SPEC §1.6); not configurable. */
export const AUTH_TEST_PARAM = 'auth_test';

/**
 * What the query asks of step 6 (SPEC §1.6): `'probe'` for exactly one `auth_test=true` (value
 * case-insensitive; the name exact, also percent-encoded), `'normal'` for none or one
 * `auth_test=false`. Anything else — no value, `1`, `yes`, `true ` with a space, the parameter
 * repeated, a look-alike name (`AUTH_TEST`, `auth.test`, `auth_test[]`, `x;auth_test`) — throws
 * GatewayError('bad_request'), so a misspelt probe is never a real, side-effecting call.
 * auth_test is never forwarded either way (see {@link stripParams}).
 *
 * @example authTestMode('a=1&auth_test=True') // 'probe'
 */
export function authTestMode(rawQuery: string): 'probe' | 'normal' {
  const t = target(AUTH_TEST_PARAM);
  if (!couldHold(rawQuery, t)) return 'normal';
  let value: string | null | undefined;
  let seen = 0;
  const pieces = rawQuery.split('&');
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i]!;
    if (piece === '') continue;
    const v = classify(piece, t);
    if (v.name || v.segment) throw badAuthTest(`query parameter ${i + 1} is a look-alike of auth_test; write exactly auth_test=true or auth_test=false`);
    if (!v.exact) continue;
    seen++;
    const eq = piece.indexOf('=');
    value = eq === -1 ? null : (formDecodeStrict(piece.slice(eq + 1)) ?? '');
  }
  if (seen === 0) return 'normal';
  if (seen > 1) throw badAuthTest('auth_test is repeated; send it once, as auth_test=true or auth_test=false');
  if (value === null) throw badAuthTest('auth_test has no value; write auth_test=true or auth_test=false');
  if (/^true$/i.test(value!)) return 'probe';
  if (/^false$/i.test(value!)) return 'normal';
  throw badAuthTest('auth_test must be exactly true or false (any case)');
}

function badAuthTest(why: string): GatewayError {
  return new GatewayError('bad_request', { why });
}

// ── rewriting: what is forwarded, what is logged ───────────────────────────────────────────

/**
 * The query to forward: every piece named exactly `names` (or a look-alike of one) removed, and a
 * look-alike found in a `;` segment of another parameter's value removed with its `;`; every other
 * piece kept byte for byte, in order (empty pieces included). Look-alikes of the token parameter
 * and of auth_test are refused earlier on authenticated routes; this is the defence for public
 * routes and for a stage that forgot.
 *
 * @example stripParams('a=1&auth%5Ftoken=t&a=2;AUTH_TEST=1', ['auth_token', 'auth_test']) // 'a=1&a=2'
 */
export function stripParams(rawQuery: string, names: Iterable<string>): string {
  const ts = relevant(rawQuery, names);
  if (ts.length === 0) return rawQuery;
  const kept: string[] = [];
  for (const piece of rawQuery.split('&')) {
    let p: string | null = piece;
    for (const t of ts) {
      if (p === null || p === '') break;
      const v = classify(p, t);
      if (v.exact || v.name) p = null;
      else if (v.segment) p = dropSegments(p, t);
    }
    if (p !== null) kept.push(p);
  }
  return kept.join('&');
}

/** `x=1;auth_token=t;y=2` → `x=1;y=2`: removes the `;` segments after the first that name `t`. */
function dropSegments(piece: string, t: Target): string {
  const eq = piece.indexOf('=');
  const segs = piece.slice(eq + 1).split(';');
  const keep = [segs[0]!];
  for (let i = 1; i < segs.length; i++) if (!segmentNames(segs[i]!, t)) keep.push(segs[i]!);
  return `${piece.slice(0, eq + 1)}${keep.join(';')}`;
}

function relevant(rawQuery: string, names: Iterable<string>): Target[] {
  const out: Target[] = [];
  for (const n of names) {
    const t = target(n);
    if (couldHold(rawQuery, t)) out.push(t);
  }
  return out;
}

/**
 * The query as it may be logged: the value of every piece named `names` or a look-alike of one
 * replaced by `censor`. A look-alike whose name is written without escapes keeps its name
 * (`AUTH_TOKEN=[REDACTED]`); one whose name has escapes or `;` — where the token may sit inside
 * the name, e.g. `auth_token%3D<token>` — is replaced whole. A look-alike in a `;` segment censors
 * the whole value it sits in. Empty values stay empty. Everything else is kept byte for byte.
 *
 * @example redactParams('x=1&AUTH_TOKEN=t&auth_token=', ['auth_token'], '*') // 'x=1&AUTH_TOKEN=*&auth_token='
 */
export function redactParams(rawQuery: string, names: Iterable<string>, censor: string): string {
  const ts = relevant(rawQuery, names);
  if (ts.length === 0) return rawQuery;
  const pieces = rawQuery.split('&');
  let changed = false;
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i]!;
    if (piece === '') continue;
    for (const t of ts) {
      const v = classify(piece, t);
      if (!v.exact && !v.name && !v.segment) continue;
      const eq = piece.indexOf('=');
      const rawName = eq === -1 ? piece : piece.slice(0, eq);
      let next = piece;
      if (v.name && /[%;]/.test(rawName)) next = censor;
      else if (eq !== -1 && eq < piece.length - 1) next = `${rawName}=${censor}`;
      if (next !== piece) {
        pieces[i] = next;
        changed = true;
      }
      break;
    }
  }
  return changed ? pieces.join('&') : rawQuery;
}
