/**
 * A PRIVATE nginx for tests: started as the current user with a generated config in its own temp
 * directory (`nginx -p <dir> -c <dir>/nginx.conf -g 'daemon off; pid …; error_log …;'`), every
 * temp path inside that directory, listening on a free 127.0.0.1 port, killed on `stop()`.
 * `forwardAuthSnippet` turns the shipped deploy/forward-auth/nginx.conf into the `http {}` body
 * for a test by replacing its three marked addresses — the test runs the very file users copy.
 *
 * When nginx is missing, `describeNginx` skips its suite with a visible warning locally and fails
 * under CI (`CI` set), so a missing binary never turns CI silently green. Install it with
 * `apt-get install -y nginx-light` (Debian; has auth_request) or point NGINX_BIN at one.
 *
 * @example
 *   describeNginx('forward auth through nginx', () => {
 *     it('works', async () => {
 *       const ngx = await startNginx((port) => forwardAuthSnippet({ listenPort: port, scopegate: '127.0.0.1:8080', app: '127.0.0.1:3000' }));
 *       await fetch(`${ngx.url}/v2/room/42`);   // ngx.url = http://127.0.0.1:<port>
 *       await ngx.stop();
 *     });
 *   });
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'vitest';

/** The nginx binary: $NGINX_BIN, else Debian's /usr/sbin/nginx, else `nginx` on the PATH. */
export const NGINX_BIN: string = process.env.NGINX_BIN || (existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx');

/** `nginx -V` output (version and modules), or null when nginx does not run. Decided once per file. */
export const nginxBuild: string | null = (() => {
  try {
    const r = spawnSync(NGINX_BIN, ['-V'], { encoding: 'utf8', timeout: 5_000 });
    return r.status === 0 ? `${r.stdout}${r.stderr}` : null;
  } catch {
    return null;
  }
})();

/** true when nginx runs and has the auth_request module. */
export const nginxInstalled: boolean = nginxBuild !== null && nginxBuild.includes('http_auth_request_module');

/**
 * `describe` when nginx (with auth_request) exists. Otherwise: under CI a suite with one failing
 * test; locally `describe.skip` plus a console warning.
 */
export function describeNginx(name: string, fn: () => void): void {
  if (nginxInstalled) {
    describe(name, fn);
    return;
  }
  const why = nginxBuild === null ? `"${NGINX_BIN}" was not found` : `"${NGINX_BIN}" has no auth_request module`;
  if (process.env.CI) {
    describe(name, () => {
      it('needs nginx with auth_request (CI is set, so this fails instead of skipping)', () => {
        throw new Error(`${why}; install nginx-light (apt-get install -y nginx-light) or set NGINX_BIN`);
      });
    });
    return;
  }
  console.warn(`\n[describeNginx] SKIPPED "${name}": ${why} (apt-get install -y nginx-light, or set NGINX_BIN)\n`);
  describe.skip(name, fn);
}

export interface NginxServer {
  /** http://127.0.0.1:<port> */
  url: string;
  port: number;
  /** The temp directory holding nginx.conf, the logs and the temp paths. */
  dir: string;
  /** The error log so far. */
  errorLog(): Promise<string>;
  /** The access log so far. */
  accessLog(): Promise<string>;
  /** Kills nginx (master and workers) and removes the directory. */
  stop(): Promise<void>;
}

/** A port that was free a moment ago (bound on 127.0.0.1:0, then released). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/** The whole nginx.conf around an `http {}` body: one worker, every path inside `dir`. */
function mainConfig(dir: string, http: string): string {
  return `worker_processes 1;
events { worker_connections 1024; }
http {
    client_body_temp_path ${join(dir, 'client_body')};
    proxy_temp_path ${join(dir, 'proxy')};
    fastcgi_temp_path ${join(dir, 'fastcgi')};
    uwsgi_temp_path ${join(dir, 'uwsgi')};
    scgi_temp_path ${join(dir, 'scgi')};
    access_log ${join(dir, 'access.log')};
${http}
}
`;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Spawns nginx on `port`; resolves once the port accepts connections, rejects with the error log if it exits. */
async function spawnNginx(dir: string, port: number): Promise<ChildProcess> {
  const conf = join(dir, 'nginx.conf');
  const child = spawn(NGINX_BIN, ['-p', dir, '-c', conf, '-g', `daemon off; pid ${join(dir, 'nginx.pid')}; error_log ${join(dir, 'error.log')} info;`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const log = await readFile(join(dir, 'error.log'), 'utf8').catch(() => '');
      throw new Error(`nginx exited (${child.exitCode ?? child.signalCode}) before listening on ${port}:\n${out}\n${log}`);
    }
    if (await canConnect(port)) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`nginx did not listen on ${port} within 10 s:\n${out}`);
}

/**
 * Starts nginx with `http(port)` as the body of its `http {}` block (retrying on another port if
 * the one picked was taken meanwhile).
 */
export async function startNginx(http: (port: number) => string): Promise<NginxServer> {
  if (!nginxInstalled) throw new Error(`nginx with auth_request is not installed (${NGINX_BIN})`);
  const dir = await mkdtemp(join(tmpdir(), 'scopegate-nginx-'));
  // Run as root, nginx's workers become `nobody`: they must reach the temp paths inside.
  await chmod(dir, 0o755);
  let child: ChildProcess | undefined;
  let port = 0;
  let lastError: unknown;
  for (let attempt = 0; attempt < 5 && !child; attempt++) {
    port = await freePort();
    await writeFile(join(dir, 'nginx.conf'), mainConfig(dir, http(port)));
    try {
      child = await spawnNginx(dir, port);
    } catch (e) {
      lastError = e;
      if (!String(e).includes('Address already in use')) break;
    }
  }
  if (!child) {
    await rm(dir, { recursive: true, force: true });
    throw lastError instanceof Error ? lastError : new Error(String(lastError));
  }
  const running = child;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    dir,
    errorLog: () => readFile(join(dir, 'error.log'), 'utf8').catch(() => ''),
    accessLog: () => readFile(join(dir, 'access.log'), 'utf8').catch(() => ''),
    async stop() {
      // SIGTERM is nginx's fast shutdown: the master stops its workers and exits.
      if (running.exitCode === null && running.signalCode === null) running.kill('SIGTERM');
      const t = setTimeout(() => running.kill('SIGKILL'), 5_000);
      await waitExit(running);
      clearTimeout(t);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** deploy/forward-auth/nginx.conf, the snippet the repository ships. */
export const SHIPPED_NGINX_SNIPPET = fileURLToPath(new URL('../../deploy/forward-auth/nginx.conf', import.meta.url));

/**
 * The shipped snippet with its three marked addresses replaced (each must occur exactly once, so
 * a changed snippet fails loudly here instead of testing something else). `keepalive: false`
 * removes the `keepalive` lines (for the benchmark without them).
 */
export function forwardAuthSnippet(o: { listenPort: number; scopegate: string; app: string; keepalive?: boolean; file?: string }): string {
  let text = readFileSync(o.file ?? SHIPPED_NGINX_SNIPPET, 'utf8');
  const replace = (re: RegExp, by: string) => {
    const n = text.match(new RegExp(re.source, 'gm'))?.length ?? 0;
    if (n !== 1) throw new Error(`nginx snippet: expected exactly one ${re}, found ${n}`);
    text = text.replace(re, by);
  };
  replace(/^(\s*)server 127\.0\.0\.1:8080;(\s*# scopegate address)$/m, `$1server ${o.scopegate};$2`);
  replace(/^(\s*)server 127\.0\.0\.1:3000;(\s*# app address)$/m, `$1server ${o.app};$2`);
  replace(/^(\s*)listen 80;(\s*# listen address)$/m, `$1listen 127.0.0.1:${o.listenPort};$2`);
  if (o.keepalive === false) text = text.replace(/^\s*keepalive \d+;\n/gm, '');
  return text;
}
