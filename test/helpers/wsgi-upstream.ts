/**
 * A real WSGI upstream for end-to-end tests: `python3 test/helpers/wsgi_echo.py` (the standard
 * library's wsgiref server, no packages) on 127.0.0.1:0, answering every request with its WSGI
 * environ as JSON. It is what a Flask/Django/CGI-style app sees: header names folded into
 * `HTTP_*` with `-` and `_` alike, repeated ones joined with `,`.
 *
 * @example
 *   const wsgi = await startWsgiUpstream();
 *   const env = await wsgiEnviron(`${wsgi.url}/x`, { X_Auth_Subject: 'admin' });
 *   env.HTTP_X_AUTH_SUBJECT; // 'admin'
 *   await wsgi.close();
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('./wsgi_echo.py', import.meta.url));

export interface WsgiUpstream {
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** Stops the Python process (the one this helper started) and waits for it to exit. */
  close(): Promise<void>;
}

/** Starts the wsgiref echo server and resolves once it prints its port (rejects after 10 s). */
export function startWsgiUpstream(python = 'python3'): Promise<WsgiUpstream> {
  const child: ChildProcess = spawn(python, ['-u', SCRIPT], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error('wsgi_echo.py did not report its port within 10 s')), 10_000);
    const fail = (e: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`${e.message}${stderr ? `: ${stderr.slice(0, 500)}` : ''}`));
    };
    const early = (code: number | null) => fail(new Error(`wsgi_echo.py exited with ${code}`));
    child.once('error', fail);
    child.once('exit', early);
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      const m = /^PORT (\d+)$/m.exec(out);
      if (!m) return;
      clearTimeout(timer);
      child.off('exit', early);
      const port = Number(m[1]);
      resolve({
        url: `http://127.0.0.1:${port}`,
        port,
        async close() {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          await exited;
        },
      });
    });
  });
}

/** GETs `url` with exactly these headers (names as written) and returns the JSON body (the environ). */
export function wsgiEnviron(url: string, headers: Record<string, string> = {}): Promise<{ status: number; environ: Record<string, string> }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, method: 'GET', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          resolve({ status: res.statusCode ?? 0, environ: res.statusCode === 200 ? (JSON.parse(text) as Record<string, string>) : {} });
        } catch (e) {
          reject(e instanceof Error ? e : new Error(String(e)));
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}
