/**
 * `listen.tls` (SPEC §6): the main listener's certificate and key, read from their files and
 * checked before anything serves them — at start-up (a bad file is a config error, exit 1) and on
 * every reload (a bad file fails the reload: the running certificate and config are kept).
 * Both doors use this; what they do with the result differs (docs/doors.md).
 *
 * Messages name the file and what is wrong with it, never its content.
 *
 * @example
 *   const tls = await loadTlsFiles(cfg.listen.tls, loaded.baseDir, loaded.file);
 *   https.createServer({ cert: tls.cert, key: tls.key, minVersion: MIN_TLS_VERSION }, listener);
 *   tls.serial; tls.fingerprint256; tls.notAfter;   // for the log line
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import type { LoadedConfig } from '../config/load.js';
import type { GatewayConfig } from '../config/schema.js';
import { ConfigError, type ConfigIssue } from '../errors.js';
import type { Logger } from '../observability/logger.js';

/** The oldest protocol the main listener speaks (SPEC §6). */
export const MIN_TLS_VERSION = 'TLSv1.2';

export type ListenTls = NonNullable<GatewayConfig['listen']['tls']>;

export interface TlsFiles {
  /** PEM text: the certificate (chain) and the private key, as read. */
  cert: string;
  key: string;
  certFile: string;
  keyFile: string;
  /** Of the first (leaf) certificate: what the log line and the tests compare. */
  serial: string;
  fingerprint256: string;
  notAfter: string;
}

/** Reads both files; every one that cannot be read is named in the one error. */
async function readBoth(certFile: string, keyFile: string, file: string | undefined): Promise<[string, string]> {
  const read = await Promise.allSettled([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
  const issues: ConfigIssue[] = [];
  const named = [
    ['listen.tls.cert_file', 'certificate file', certFile],
    ['listen.tls.key_file', 'key file', keyFile],
  ] as const;
  read.forEach((r, i) => {
    if (r.status === 'fulfilled') return;
    const [path, what, abs] = named[i]!;
    issues.push({ path, message: `cannot read ${what} ${abs}: ${(r.reason as NodeJS.ErrnoException).code ?? String(r.reason)}` });
  });
  if (issues.length > 0) throw new ConfigError(issues, file);
  return [(read[0] as PromiseFulfilledResult<string>).value, (read[1] as PromiseFulfilledResult<string>).value];
}

/**
 * Reads and checks `listen.tls`'s files (relative paths against the config file's directory):
 * the certificate parses, the key parses, the key is the certificate's, and the runtime's TLS
 * stack accepts the pair. Throws ConfigError naming the file otherwise.
 */
export async function loadTlsFiles(tls: ListenTls, baseDir: string, file?: string): Promise<TlsFiles> {
  const certFile = resolve(baseDir, tls.cert_file);
  const keyFile = resolve(baseDir, tls.key_file);
  const fail = (path: string, message: string): ConfigError => new ConfigError([{ path, message }], file);
  const [cert, key] = await readBoth(certFile, keyFile, file);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch {
    throw fail('listen.tls.cert_file', `${certFile} holds no PEM certificate`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (e) {
    const encrypted = /passphrase/i.test((e as Error).message) || key.includes('ENCRYPTED');
    throw fail('listen.tls.key_file', encrypted ? `${keyFile} is an encrypted key; scopegate takes an unencrypted PEM key` : `${keyFile} holds no PEM private key`);
  }
  if (!x509.checkPrivateKey(privateKey)) throw fail('listen.tls.key_file', `the key in ${keyFile} does not belong to the certificate in ${certFile}`);
  try {
    // What the server itself will build: catches what the parsers above let through (a chain
    // the TLS stack refuses, a key type it cannot serve).
    createSecureContext({ cert, key, minVersion: MIN_TLS_VERSION });
  } catch (e) {
    throw fail('listen.tls', `the TLS stack refuses ${certFile} with ${keyFile}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  return { cert, key, certFile, keyFile, serial: x509.serialNumber, fingerprint256: x509.fingerprint256, notAfter: x509.validTo };
}

/**
 * The certificate a (re)built generation serves: `listen.tls`'s files read and checked, or
 * undefined for plain HTTP. The protocol is the listener's: turning TLS on or off takes a
 * restart, so a reload that adds or removes `listen.tls` keeps the running one (with a warning).
 */
export async function tlsForGeneration(loaded: LoadedConfig, previous: TlsFiles | undefined, isReload: boolean, logger: Logger): Promise<TlsFiles | undefined> {
  const want = loaded.config.listen.tls;
  if (isReload && (want === undefined) !== (previous === undefined)) {
    logger.warn({ tls: want !== undefined }, 'listen.tls added or removed: the listener keeps its protocol until a restart');
    return previous;
  }
  return want ? loadTlsFiles(want, loaded.baseDir, loaded.file) : undefined;
}

/** true when the two hold the same certificate and key (a reload then changes nothing). */
export function sameTls(a: TlsFiles | undefined, b: TlsFiles | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && a.cert === b.cert && a.key === b.key);
}

/** What the log lines say about a certificate (no key material). */
export function describeTls(t: TlsFiles): Record<string, string> {
  return { cert_file: t.certFile, key_file: t.keyFile, serial: t.serial, fingerprint256: t.fingerprint256, not_after: t.notAfter };
}
