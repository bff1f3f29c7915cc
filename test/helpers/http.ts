/**
 * One raw HTTP/1.1 exchange with node:http: the path and headers reach the server exactly as
 * written (fetch would normalise `..`, `%2F` or repeated headers), no connection reuse.
 *
 * @example
 *   const r = await rawRequest(gw.url, 'GET', '/v2/room/42?auth_token=' + t);
 *   expect(r.status).toBe(200); JSON.parse(r.body);
 */
import { request, type IncomingHttpHeaders } from 'node:http';
import { connect } from 'node:net';

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export function rawRequest(
  base: string,
  method: string,
  path: string,
  headers: Record<string, string | string[]> = {},
  body?: string | Buffer,
): Promise<RawResponse> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * Writes `bytes` (latin1, exactly as given: bad framing, bare LFs, missing Host) on a fresh
 * connection and resolves with everything read until the peer closes, or after `waitMs`.
 *
 * @example
 *   const out = await rawExchange(gw.url, 'GET /v2/room/42 HTTP/1.0\r\n\r\n');
 *   expect(out.startsWith('HTTP/1.1 401 ')).toBe(true);
 */
export function rawExchange(base: string, bytes: string, waitMs = 2_000): Promise<string> {
  const u = new URL(base);
  return new Promise((resolve) => {
    let out = '';
    const sock = connect(Number(u.port), u.hostname, () => sock.write(bytes, 'latin1'));
    const timer = setTimeout(() => sock.destroy(), waitMs);
    sock.on('data', (c: Buffer) => (out += c.toString('latin1')));
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

/** Interim 1xx responses (one or more; 101 is final) before the final one: a status line, its header lines, a blank line. */
const INTERIM = /^(?:HTTP\/1\.[01] 1(?!01)\d\d[^\r\n]*\r\n(?:(?!HTTP\/)[^\r\n]+\r\n)*\r\n)+/;

/** What one exchange came back with: the final status line's code (0: none), everything read. */
export interface RawExchange {
  status: number;
  raw: string;
}

/**
 * Writes `bytes` (latin1) on a fresh connection and reads until one response is complete (by its
 * Content-Length, its chunked end, or no body for HEAD / 101 / 204 / 304), the peer closes, or
 * `waitMs` passes — so a keep-alive answer does not cost the wait. Interim 1xx responses are
 * skipped.
 *
 * @example
 *   const a = await exchangeOne(gw.url, 'GET /v2/room/42 HTTP/1.1\r\nHost: x\r\n\r\n');
 *   expect(a.status).toBe(401);
 */
export function exchangeOne(base: string, bytes: string, opts: { head?: boolean; waitMs?: number } = {}): Promise<RawExchange> {
  const u = new URL(base);
  return new Promise((resolve) => {
    let raw = '';
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(raw.replace(INTERIM, ''));
      resolve({ status: m ? Number(m[1]) : 0, raw });
    };
    const complete = (): boolean => {
      const rest = raw.replace(INTERIM, '');
      const end = rest.indexOf('\r\n\r\n');
      if (end < 0) return false;
      const head = rest.slice(0, end).toLowerCase();
      const body = rest.slice(end + 4);
      const status = Number(/^http\/1\.[01] (\d{3})/.exec(head)?.[1] ?? 0);
      if (opts.head || status === 101 || status === 204 || status === 304) return true;
      const cl = /\r\ncontent-length: *(\d+)/.exec(head);
      if (cl) return Buffer.byteLength(body, 'latin1') >= Number(cl[1]);
      if (/\r\ntransfer-encoding: *chunked/.test(head)) return body.endsWith('0\r\n\r\n');
      return false; // close-delimited: wait for the close
    };
    const sock = connect(Number(u.port), u.hostname, () => sock.write(bytes, 'latin1'));
    const timer = setTimeout(finish, opts.waitMs ?? 2_500);
    sock.on('data', (c: Buffer) => {
      raw += c.toString('latin1');
      if (complete()) finish();
    });
    sock.on('error', () => undefined);
    sock.on('close', finish);
  });
}

/** The final response of an exchange (interim 1xx skipped): one header's first value, and the body. */
export function finalHeaderOf(raw: string, name: string): string | undefined {
  const final = raw.replace(INTERIM, '');
  const head = final.slice(0, final.indexOf('\r\n\r\n'));
  return new RegExp(`\\r\\n${name}: *([^\\r]*)`, 'i').exec(head)?.[1];
}

/** The body of an exchange's final response, as read. */
export function finalBodyOf(raw: string): string {
  const final = raw.replace(INTERIM, '');
  const end = final.indexOf('\r\n\r\n');
  return end < 0 ? '' : final.slice(end + 4);
}
