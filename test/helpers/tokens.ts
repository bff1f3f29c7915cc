/**
 * Token helpers for tests: real keys and real tokens, minted with jose (or by hand when a test
 * needs a token jose refuses to produce: `alg: none`, algorithm confusion, garbage).
 *
 * @example
 *   const secret = randomSecret();
 *   const cfg = tokensConfig({ issuers: [{ name: 'local', algorithms: ['HS256'], secrets: [secret] }] });
 *   const token = await hsToken(secret, { sub: 'u1', exp: nowS() + 3600 });
 *
 *   const rsa = await generateKeys('RS256', { kid: 'k1' });
 *   const t2 = await signToken(rsa, { iss: 'idp', exp: nowS() + 60 });      // header { alg, kid }
 *   const evil = algConfusionToken(rsa.publicPem, { iss: 'idp' });           // HS256 keyed with the PEM
 *   const none = unsecuredToken({ sub: 'root' });                            // alg "none"
 *
 *   const clock = testClock(Date.UTC(2030, 0, 1)); clock.advance(61_000);   // a Clock you move
 *   const dir = await tempDir(); const file = await dir.write('pub.pem', rsa.publicPem);
 */
import { createHmac, createPrivateKey, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  base64url,
  exportJWK,
  exportPKCS8,
  exportSPKI,
  generateKeyPair,
  SignJWT,
  type CryptoKey,
  type JWK,
  type JWTPayload,
} from 'jose';
import { GatewayConfigSchema, type IssuerConfig, type TokensConfig } from '../../src/config/schema.js';
import type { Clock } from '../../src/types.js';

// ---------------------------------------------------------------------------------------------
// Config

/**
 * Parses a `tokens:` section through the real schema (defaults filled in, errors thrown), with a
 * dummy upstream around it.
 */
export function tokensConfig(tokens: Record<string, unknown>): TokensConfig {
  return GatewayConfigSchema.parse({ upstreams: { default: { url: 'http://127.0.0.1:9' } }, tokens }).tokens;
}

/** One issuer, parsed through the real schema. */
export function issuerConfig(issuer: Record<string, unknown>): IssuerConfig {
  return tokensConfig({ issuers: [issuer] }).issuers[0]!;
}

// ---------------------------------------------------------------------------------------------
// Time

/** Whole epoch seconds of `ms` (default: now). */
export function nowS(ms: number = Date.now()): number {
  return Math.floor(ms / 1000);
}

export interface TestClock extends Clock {
  /** Sets the time (epoch ms). */
  set(ms: number): void;
  /** Moves the time by `ms` (may be negative). */
  advance(ms: number): void;
}

/** A `Clock` that stands still until moved. */
export function testClock(startMs: number = Date.UTC(2030, 0, 1)): TestClock {
  let t = startMs;
  const clock = (() => t) as TestClock;
  clock.set = (ms) => {
    t = ms;
  };
  clock.advance = (ms) => {
    t += ms;
  };
  return clock;
}

// ---------------------------------------------------------------------------------------------
// Keys

/** A random HMAC secret (43 base64url characters, 256 bits). */
export function randomSecret(): string {
  return randomBytes(32).toString('base64url');
}

export type TestKeyAlg = 'RS256' | 'RS384' | 'RS512' | 'PS256' | 'ES256' | 'ES384' | 'ES512' | 'EdDSA' | 'Ed25519';

export interface TestKeyPair {
  /** The JWS algorithm these keys sign with by default. */
  alg: TestKeyAlg;
  kid: string;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  /** Public JWK with `kid`, `alg` and `use: "sig"`: what a JWKS serves. */
  publicJwk: JWK;
  /** Private JWK with `kid` and `alg` (a `private_key_file` in JWK form). */
  privateJwk: JWK;
  /** SPKI PEM (a `public_key_file`). */
  publicPem: string;
  /** PKCS#8 PEM (a `private_key_file`). */
  privatePem: string;
}

let kidCounter = 0;

/** Generates an extractable key pair with every export a test may need. */
export async function generateKeys(alg: TestKeyAlg, opts: { kid?: string } = {}): Promise<TestKeyPair> {
  const { privateKey, publicKey } = await generateKeyPair(alg === 'EdDSA' ? 'Ed25519' : alg, { extractable: true });
  const kid = opts.kid ?? `test-key-${++kidCounter}-${randomBytes(3).toString('hex')}`;
  return {
    alg,
    kid,
    privateKey,
    publicKey,
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' },
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg },
    publicPem: await exportSPKI(publicKey),
    privatePem: await exportPKCS8(privateKey),
  };
}

/**
 * A self-signed X.509 certificate (PEM) for the key pair, made with the `openssl` CLI
 * (a `public_key_file` in certificate form). Throws when openssl is not installed.
 */
export async function selfSignedCertPem(keys: TestKeyPair): Promise<string> {
  const dir = await tempDir();
  try {
    const keyFile = await dir.write('key.pem', keys.privatePem);
    const certFile = join(dir.path, 'cert.pem');
    await promisify(execFile)('openssl', ['req', '-new', '-x509', '-key', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=scopegate-test']);
    return await readFile(certFile, 'utf8');
  } finally {
    await dir.cleanup();
  }
}

// ---------------------------------------------------------------------------------------------
// Tokens

export interface SignOptions {
  /** Overrides the algorithm (default: the key pair's `alg`, or HS256 for a secret). */
  alg?: string;
  /** Extra or overriding protected-header fields; `kid: undefined` removes the default kid. */
  header?: Record<string, unknown>;
}

/**
 * Signs `claims` exactly as given (nothing is added: set `iat`/`exp` yourself) with a key pair
 * (header gets its `kid`) or an HMAC secret string.
 */
export async function signToken(key: TestKeyPair | string | Uint8Array, claims: JWTPayload, opts: SignOptions = {}): Promise<string> {
  const isPair = typeof key === 'object' && !(key instanceof Uint8Array);
  const alg = opts.alg ?? (isPair ? key.alg : 'HS256');
  const header: Record<string, unknown> = { alg, typ: 'JWT', ...(isPair ? { kid: key.kid } : {}), ...opts.header };
  for (const k of Object.keys(header)) if (header[k] === undefined) delete header[k];
  // A WebCrypto key is bound to one algorithm (RS256 ≠ PS256); a KeyObject signs with any that fits.
  const signingKey = isPair
    ? alg === key.alg
      ? key.privateKey
      : createPrivateKey(key.privatePem)
    : typeof key === 'string'
      ? new TextEncoder().encode(key)
      : key;
  return new SignJWT(claims).setProtectedHeader(header as { alg: string }).sign(signingKey);
}

/** `signToken` with an HMAC secret. */
export function hsToken(secret: string, claims: JWTPayload, opts: SignOptions = {}): Promise<string> {
  return signToken(secret, claims, opts);
}

/** Assembles `base64url(header).base64url(payload).signature` by hand; no validation at all. */
export function craftToken(header: unknown, payload: unknown, signature = ''): string {
  const enc = (v: unknown) => base64url.encode(typeof v === 'string' ? v : JSON.stringify(v));
  return `${enc(header)}.${enc(payload)}.${signature}`;
}

/** An unsecured JWT (`alg: "none"`, empty signature), as an attacker would send it. */
export function unsecuredToken(claims: JWTPayload, header: Record<string, unknown> = {}): string {
  return craftToken({ alg: 'none', typ: 'JWT', ...header }, claims);
}

/**
 * The classic algorithm-confusion token: HS256 with the issuer's *public* key PEM text used as the
 * HMAC secret. A verifier that lets the token pick HMAC with an RSA/EC public key accepts it.
 */
export function algConfusionToken(publicPem: string, claims: JWTPayload, header: Record<string, unknown> = {}): string {
  const signingInput = craftToken({ alg: 'HS256', typ: 'JWT', ...header }, claims).slice(0, -1);
  const sig = createHmac('sha256', publicPem).update(signingInput).digest('base64url');
  return `${signingInput}.${sig}`;
}

// ---------------------------------------------------------------------------------------------
// Files

export interface TempDir {
  path: string;
  /** Writes `content` to `name` inside the directory and returns the absolute path. */
  write(name: string, content: string): Promise<string>;
  cleanup(): Promise<void>;
}

/** A fresh temporary directory (for key files and configs). */
export async function tempDir(): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), 'scopegate-test-'));
  return {
    path,
    async write(name, content) {
      const file = join(path, name);
      await writeFile(file, content);
      return file;
    },
    cleanup: () => rm(path, { recursive: true, force: true }),
  };
}
