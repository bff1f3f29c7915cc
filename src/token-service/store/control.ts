/**
 * How `scopegate clients|users|keys|tokens` reach an embedded store that a running `serve` holds
 * (SPEC §9: the commands work while serve runs on the same store). Only one process may open a
 * PGlite directory, so the process holding the lock also listens on a Unix socket — the
 * *control socket*, `<dir>/control.sock` (or a private 0700 temp directory when that path is too
 * long for a socket), file mode 0600 — and executes TokenStore calls sent to it. Who may open the
 * data directory may use the store anyway, so the filesystem's permissions are the authentication;
 * no network port, no extra secret. The socket's path is written into the lock file, so a CLI that
 * finds a live lock knows where to send its commands.
 *
 * Wire format: one JSON object per line. Request `{"id":1,"method":"listClients","args":[]}`;
 * answer `{"id":1,"ok":true,"value":…}` or `{"id":1,"ok":false,"error":{"code":"store_unavailable","why":"…"}}`.
 * Only the data methods of TokenStore are callable (not close or watchRevocations); a line over
 * 4 MiB closes the connection.
 *
 * Because the call runs inside the serving process, revocations made through it reach that
 * process's in-memory watchers at once.
 *
 * @example
 *   const server = await serveControl(socketPath, store);      // in the lock holder
 *   const remote = await connectControl(socketPath, { retryMs: 5000 });  // in the CLI
 *   await remote.listClients();
 *   await remote.close(); await server.close();
 */
import { chmod, mkdtemp, rm, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clip } from '../../clip.js';
import { ERROR_CODES, GatewayError, isGatewayError, type ErrorCode } from '../../errors.js';
import type { TokenStore } from '../store.js';

/** The TokenStore methods a control client may call. */
export const CONTROL_METHODS = [
  'createClient', 'getClient', 'listClients', 'setClientSecret', 'deleteClient',
  'putUser', 'getUser', 'listUsers', 'deleteUser',
  'listKeys', 'addKey',
  'recordToken', 'getToken', 'listTokens', 'touchToken',
  'createRefresh', 'getRefresh', 'rotateRefresh', 'revokeFamily',
  'revoke', 'revokedSince', 'revocationsAfter', 'purgeExpired', 'ping',
] as const;
type ControlMethod = (typeof CONTROL_METHODS)[number];

const MAX_LINE = 4 * 1024 * 1024;
/** Linux's sun_path holds 108 bytes with the NUL; stay well clear. */
const MAX_SOCKET_PATH = 100;

/** Where the control socket of store `dir` lives; `cleanup` removes a temp directory made for it. */
export async function controlSocketPath(dir: string): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const inDir = join(dir, 'control.sock');
  if (Buffer.byteLength(inDir) <= MAX_SOCKET_PATH) return { path: inDir, cleanup: async () => {} };
  const tmp = await mkdtemp(join(tmpdir(), 'scopegate-'));
  return { path: join(tmp, 'control.sock'), cleanup: () => rm(tmp, { recursive: true, force: true }) };
}

export interface ControlServer {
  readonly path: string;
  close(): Promise<void>;
}

/** Listens on `path` (replacing a stale socket file left by a crash: the caller holds the lock). */
export async function serveControl(path: string, store: TokenStore): Promise<ControlServer> {
  await unlink(path).catch(() => {});
  const sockets = new Set<Socket>();
  const server: Server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE) {
        sock.destroy();
        return;
      }
      let i: number;
      while ((i = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        void answer(store, line).then((out) => {
          if (!sock.destroyed) sock.write(`${out}\n`);
        });
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', () => {});
  await chmod(path, 0o600).catch(() => {});
  return {
    path,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      await unlink(path).catch(() => {});
    },
  };
}

async function answer(store: TokenStore, line: string): Promise<string> {
  let id: unknown = null;
  try {
    const req = JSON.parse(line) as { id?: unknown; method?: unknown; args?: unknown };
    id = req.id ?? null;
    if (typeof req.method !== 'string' || !(CONTROL_METHODS as readonly string[]).includes(req.method) || !Array.isArray(req.args)) {
      throw new GatewayError('bad_request', { why: `control socket: unknown method ${clip(String(req.method), 64)}` });
    }
    const fn = store[req.method as ControlMethod] as (...a: unknown[]) => Promise<unknown>;
    const value = await fn.apply(store, req.args);
    return JSON.stringify({ id, ok: true, value: value === undefined ? null : value, undef: value === undefined });
  } catch (e) {
    const code: ErrorCode = isGatewayError(e) ? e.code : 'store_unavailable';
    const why = isGatewayError(e) ? (e.detail.why ?? e.code) : clip(e instanceof Error ? e.message : String(e), 200);
    return JSON.stringify({ id, ok: false, error: { code, why } });
  }
}

/** A TokenStore (kind 'embedded') whose every call runs in the process serving `path`. */
export async function connectControl(path: string, opts: { retryMs?: number } = {}): Promise<TokenStore> {
  const deadline = Date.now() + (opts.retryMs ?? 5_000);
  let sock: Socket;
  for (;;) {
    try {
      sock = await new Promise<Socket>((resolve, reject) => {
        const s = createConnection(path);
        s.once('connect', () => {
          s.off('error', reject);
          resolve(s);
        });
        s.once('error', reject);
      });
      break;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // The server may still be opening the store (the lock is taken before the socket listens).
      if ((code === 'ENOENT' || code === 'ECONNREFUSED') && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      throw new GatewayError('store_unavailable', {
        store: 'token',
        why: `token store is held by a running scopegate, but its control socket ${clip(path)} does not answer (${code ?? String(e)})`,
      });
    }
  }
  let nextId = 1;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let buf = '';
  let closed: Error | undefined;
  sock.setEncoding('utf8');
  sock.on('data', (chunk: string) => {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        const msg = JSON.parse(line) as { id: number; ok: boolean; value?: unknown; undef?: boolean; error?: { code: string; why: string } };
        const p = pending.get(msg.id);
        if (!p) continue;
        pending.delete(msg.id);
        if (msg.ok) p.resolve(msg.undef ? undefined : msg.value);
        else {
          const code = (ERROR_CODES as readonly string[]).includes(msg.error?.code ?? '') ? (msg.error!.code as ErrorCode) : 'store_unavailable';
          p.reject(new GatewayError(code, { ...(code === 'store_unavailable' ? { store: 'token' as const } : {}), why: msg.error?.why ?? 'control call failed' }));
        }
      } catch {
        /* a broken line: its caller fails on close */
      }
    }
  });
  const fail = (why: string) => {
    closed ??= new GatewayError('store_unavailable', { store: 'token', why });
    for (const p of pending.values()) p.reject(closed);
    pending.clear();
  };
  sock.on('error', (e) => fail(`control socket error: ${e.message}`));
  sock.on('close', () => fail('control socket closed by the serving process'));

  const call = (method: ControlMethod, args: unknown[]): Promise<unknown> => {
    if (closed) return Promise.reject(closed);
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      sock.write(`${JSON.stringify({ id, method, args })}\n`);
    });
  };

  const methods = Object.fromEntries(CONTROL_METHODS.map((m) => [m, (...args: unknown[]) => call(m, args)])) as unknown as Pick<TokenStore, ControlMethod>;
  return {
    kind: 'embedded',
    ...methods,
    async close() {
      closed ??= new GatewayError('store_unavailable', { store: 'token', why: 'control connection closed' });
      await new Promise<void>((r) => {
        sock.end(() => r());
        setTimeout(r, 1000).unref();
      });
      sock.destroy();
    },
  };
}

