/**
 * SHA-256 of a string (UTF-8), one synchronous call. Used on every request (token-cache key,
 * rate-limit key) and synchronously — the cache hit answers without a promise — so Web Crypto's
 * `crypto.subtle.digest` (async) does not fit.
 *
 * Where the runtime has Node's crypto (Node, Bun; via `process.getBuiltinModule`, so the Hono
 * middleware's bundle imports no `node:` module) it is the one-shot `crypto.hash` (Node ≥ 20.12),
 * about twice as fast as createHash(), looked up once at load. Elsewhere (a browser, a Worker
 * without nodejs_compat) it is `sha256js`, a plain-JS FIPS 180-4 SHA-256 giving the same digests
 * (src/hash.test.ts compares the two).
 *
 * @example sha256('abc', 'hex') // 'ba7816bf…'
 */
import type * as NodeCrypto from 'node:crypto';
import { nodeBuiltin } from './builtin.js';

type Encoding = 'hex' | 'base64url';

const crypto = nodeBuiltin<typeof NodeCrypto>('node:crypto');
const oneShot = (crypto as { hash?: (alg: string, data: string, enc: Encoding) => string } | undefined)?.hash;

export const sha256: (s: string, encoding: Encoding) => string = oneShot
  ? (s, encoding) => oneShot('sha256', s, encoding)
  : crypto
    ? (s, encoding) => crypto.createHash('sha256').update(s).digest(encoding)
    : (s, encoding) => sha256js(s, encoding);

// ---------------------------------------------------------------------------------------------
// The fallback: FIPS 180-4 SHA-256 over the string's UTF-8 bytes (TextEncoder, which — like
// Node's string hashing — encodes a lone surrogate as U+FFFD).

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
  0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const H0 = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const utf8 = new TextEncoder();
// Scratch state, reused: the function is synchronous, so no call can interleave with another.
const W = new Int32Array(64);
const H = new Int32Array(8);

/** SHA-256 without Node's crypto; exported for its test against `node:crypto`. */
export function sha256js(s: string, encoding: Encoding): string {
  const data = utf8.encode(s);
  const len = data.length;
  // Message, 0x80, zeros, 64-bit big-endian bit length: a whole number of 64-byte blocks.
  const end = Math.ceil((len + 9) / 64) * 64;
  const msg = new Uint8Array(end);
  msg.set(data);
  msg[len] = 0x80;
  const hi = Math.floor(len / 0x20000000);
  const lo = (len * 8) >>> 0;
  for (let i = 0; i < 4; i++) {
    msg[end - 8 + i] = hi >>> (24 - 8 * i);
    msg[end - 4 + i] = lo >>> (24 - 8 * i);
  }

  H.set(H0);
  const w = W;
  for (let off = 0; off < end; off += 64) {
    for (let t = 0; t < 16; t++) {
      const j = off + t * 4;
      w[t] = (msg[j]! << 24) | (msg[j + 1]! << 16) | (msg[j + 2]! << 8) | msg[j + 3]!;
    }
    for (let t = 16; t < 64; t++) {
      const x = w[t - 15]!;
      const y = w[t - 2]!;
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[t] = w[t - 16]! + s0 + w[t - 7]! + s1;
    }
    let a = H[0]!, b = H[1]!, c = H[2]!, d = H[3]!, e = H[4]!, f = H[5]!, g = H[6]!, h = H[7]!;
    for (let t = 0; t < 64; t++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[t]! + w[t]!) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    // Int32Array stores wrap modulo 2^32, as SHA-256's additions do.
    H[0] = H[0]! + a;
    H[1] = H[1]! + b;
    H[2] = H[2]! + c;
    H[3] = H[3]! + d;
    H[4] = H[4]! + e;
    H[5] = H[5]! + f;
    H[6] = H[6]! + g;
    H[7] = H[7]! + h;
  }

  if (encoding === 'hex') {
    let hex = '';
    for (let i = 0; i < 8; i++) hex += (H[i]! >>> 0).toString(16).padStart(8, '0');
    return hex;
  }
  const bytes = new Uint8Array(32);
  for (let i = 0; i < 32; i++) bytes[i] = H[i >> 2]! >>> (24 - 8 * (i & 3));
  let b64 = '';
  for (let i = 0; i < 32; i += 3) {
    const n = (bytes[i]! << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    b64 += B64URL[(n >>> 18) & 63]! + B64URL[(n >>> 12) & 63]!;
    if (i + 1 < 32) b64 += B64URL[(n >>> 6) & 63]!;
    if (i + 2 < 32) b64 += B64URL[n & 63]!;
  }
  return b64;
}
