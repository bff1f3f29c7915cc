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
