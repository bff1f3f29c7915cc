/**
 * One raw HTTP/1.1 exchange with node:http: the path and headers reach the server exactly as
 * written (fetch would normalise `..`, `%2F` or repeated headers), no connection reuse.
 *
 * @example
 *   const r = await rawRequest(gw.url, 'GET', '/v2/room/42?auth_token=' + t);
 *   expect(r.status).toBe(200); JSON.parse(r.body);
 */
import { request, type IncomingHttpHeaders } from 'node:http';

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
