/**
 * SHA-256 of a string, one call. Used on every request (token-cache key, rate-limit key), so it
 * takes Node's one-shot `crypto.hash` (Node ≥ 20.12), about twice as fast as createHash().
 *
 * @example sha256('abc', 'hex') // 'ba7816bf…'
 */
import * as crypto from 'node:crypto';

type Encoding = 'hex' | 'base64url';

const oneShot = (crypto as { hash?: (alg: string, data: string, enc: Encoding) => string }).hash;

export const sha256: (s: string, encoding: Encoding) => string = oneShot
  ? (s, encoding) => oneShot('sha256', s, encoding)
  : (s, encoding) => crypto.createHash('sha256').update(s).digest(encoding);
