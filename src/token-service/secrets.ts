/**
 * Secrets of the token service (SPEC §9): generating client secrets and ids, and storing secrets
 * (client secrets, user passwords, refresh-token secrets) only as slow salted hashes.
 *
 * - `newSecret()`: 32 random bytes, base64url (43 characters) — what `clients create` prints once.
 * - `newId(prefix?)`: 128 random bits, base64url, optionally `prefix_`-prefixed; URL-safe.
 * - `hashSecret(secret)`: scrypt (node:crypto) with a fresh 16-byte salt, N=2^15 r=8 p=1, 32-byte
 *   key, encoded `scrypt$N$r$p$salt$hash` (salt and hash base64url) so the parameters can be raised
 *   later without breaking stored hashes. Costs ~170 ms of one core here (docs/token-store.md).
 * - `verifySecret(secret, encoded)`: recomputes with the encoded parameters and compares with
 *   `timingSafeEqual`. A malformed or out-of-bounds encoding yields false, never a throw, so a
 *   corrupted row can never turn into an accepted secret or a crash.
 *
 * Nothing here logs, and no error message carries the secret.
 *
 * @example
 *   const secret = newSecret();                 // 'q0Zr…' (43 chars), shown to the operator once
 *   const stored = await hashSecret(secret);    // 'scrypt$32768$8$1$<salt>$<hash>'
 *   await verifySecret(secret, stored);         // true
 *   await verifySecret('wrong', stored);        // false
 *   await verifySecret(secret, 'garbage');      // false
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/** Default scrypt cost parameters (RFC 7914's interactive-login figure; see docs/token-store.md). */
export const SCRYPT_PARAMS = { N: 2 ** 15, r: 8, p: 1 } as const;
const KEY_BYTES = 32;
const SALT_BYTES = 16;

/**
 * Bounds on parameters accepted from a stored encoding: a tampered row must not make one
 * verification allocate gigabytes or run for minutes.
 */
const MAX_N = 2 ** 20;
const MAX_R = 32;
const MAX_P = 16;
const MAX_MEM_BYTES = 1024 * 1024 * 1024; // 128 * N * r for N=2^20, r=8 is 1 GiB

const B64URL = /^[A-Za-z0-9_-]+$/;

/** 32 random bytes, base64url without padding (SPEC §9). */
export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** A random URL-safe id of 128 bits (22 base64url characters), optionally `prefix_…`. */
export function newId(prefix?: string): string {
  if (prefix !== undefined && !/^[A-Za-z0-9]+$/.test(prefix)) {
    throw new TypeError(`newId: prefix must be ASCII letters and digits, got ${JSON.stringify(prefix)}`);
  }
  const id = randomBytes(16).toString('base64url');
  return prefix ? `${prefix}_${id}` : id;
}

function scryptAsync(secret: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(secret, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

function maxmem(N: number, r: number, p: number): number {
  // scrypt needs about 128 * N * r bytes (+ 128 * r * p); Node's default maxmem (32 MiB) is exactly
  // 128 * 2^15 * 8, which OpenSSL refuses, so the limit is raised with headroom.
  return 2 * 128 * N * r + 128 * r * p;
}

/** scrypt with a fresh salt, encoded `scrypt$N$r$p$salt$hash`. */
export async function hashSecret(secret: string, params: { N: number; r: number; p: number } = SCRYPT_PARAMS): Promise<string> {
  if (typeof secret !== 'string') throw new TypeError('hashSecret: secret must be a string');
  const { N, r, p } = params;
  const salt = randomBytes(SALT_BYTES);
  const key = await scryptAsync(secret, salt, KEY_BYTES, { N, r, p, maxmem: maxmem(N, r, p) });
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

interface Decoded {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

function decInt(s: string | undefined): number | undefined {
  if (s === undefined || !/^[1-9][0-9]{0,9}$/.test(s)) return undefined;
  return Number(s);
}

/** Parses an encoding; undefined for anything malformed or outside the accepted bounds. */
export function decodeHash(encoded: unknown): Decoded | undefined {
  if (typeof encoded !== 'string' || encoded.length > 512) return undefined;
  const parts = encoded.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return undefined;
  const N = decInt(parts[1]);
  const r = decInt(parts[2]);
  const p = decInt(parts[3]);
  if (N === undefined || r === undefined || p === undefined) return undefined;
  // N must be a power of two > 1 (scrypt's own requirement), everything bounded.
  if (N < 2 || N > MAX_N || (N & (N - 1)) !== 0 || r > MAX_R || p > MAX_P) return undefined;
  if (128 * N * r > MAX_MEM_BYTES) return undefined;
  const [saltText, hashText] = [parts[4]!, parts[5]!];
  if (!B64URL.test(saltText) || !B64URL.test(hashText)) return undefined;
  const salt = Buffer.from(saltText, 'base64url');
  const hash = Buffer.from(hashText, 'base64url');
  // Canonical base64url only: one stored value, one spelling.
  if (salt.toString('base64url') !== saltText || hash.toString('base64url') !== hashText) return undefined;
  if (salt.length < 8 || hash.length < 16 || hash.length > 64) return undefined;
  return { N, r, p, salt, hash };
}

/** true when `secret` hashes to `encoded`; compares in constant time; never throws. */
export async function verifySecret(secret: string, encoded: string): Promise<boolean> {
  if (typeof secret !== 'string') return false;
  const d = decodeHash(encoded);
  if (!d) return false;
  try {
    const key = await scryptAsync(secret, d.salt, d.hash.length, { N: d.N, r: d.r, p: d.p, maxmem: maxmem(d.N, d.r, d.p) });
    return timingSafeEqual(key, d.hash);
  } catch {
    return false;
  }
}

/** true when an encoding uses weaker parameters than `SCRYPT_PARAMS` (the caller may re-hash on the next success). */
export function needsRehash(encoded: string): boolean {
  const d = decodeHash(encoded);
  if (!d) return true;
  return d.N < SCRYPT_PARAMS.N || d.r < SCRYPT_PARAMS.r || d.p < SCRYPT_PARAMS.p;
}
