/**
 * A real JWKS endpoint for tests: an HTTP server on 127.0.0.1:<random port> serving
 * `{"keys": [...]}`, whose keys can be swapped and which can be told to fail.
 *
 * @example
 *   const rsa = await generateKeys('RS256');
 *   const jwks = await startJwksServer([rsa.publicJwk]);
 *   // issuer config: { jwks_url: jwks.url, jwks: { cooldown_ms: 0 } }
 *   jwks.setKeys([next.publicJwk]);   // key rotation
 *   jwks.failWith('500');             // or 'hang' | 'close' | 'invalid-json'; 'none' heals it
 *   expect(jwks.fetches).toBe(2);     // GET requests received (failed ones included)
 *   await jwks.close();
 */
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { JWK } from 'jose';

/**
 * How the server answers: `none` = 200 with the keys; `500` = HTTP 500; `hang` = never answers;
 * `close` = destroys the connection without a response; `invalid-json` = 200 with a broken body.
 */
export type JwksFailure = 'none' | '500' | 'hang' | 'close' | 'invalid-json';

export interface JwksServer {
  /** `http://127.0.0.1:<port>/.well-known/jwks.json` */
  readonly url: string;
  /** Requests received so far, whatever the answer was. */
  readonly fetches: number;
  /** Replaces the served keys (applies to the next request). */
  setKeys(keys: readonly JWK[]): void;
  /** Changes how the next requests are answered. */
  failWith(mode: JwksFailure): void;
  /** Closes the server and every connection, hanging ones included. */
  close(): Promise<void>;
}

/** Starts a JWKS server serving `keys` (public JWKs). */
export async function startJwksServer(keys: readonly JWK[] = []): Promise<JwksServer> {
  let current: readonly JWK[] = keys;
  let mode: JwksFailure = 'none';
  let fetches = 0;
  const sockets = new Set<Socket>();
  const hanging = new Set<ServerResponse>();

  const server = createServer((req, res) => {
    fetches++;
    switch (mode) {
      case 'hang':
        hanging.add(res);
        return;
      case 'close':
        req.socket.destroy();
        return;
      case '500':
        res.writeHead(500, { 'content-type': 'text/plain' }).end('internal error');
        return;
      case 'invalid-json':
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"keys": [');
        return;
      case 'none':
        res.writeHead(200, { 'content-type': 'application/jwk-set+json' }).end(JSON.stringify({ keys: current }));
        return;
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    get fetches() {
      return fetches;
    },
    setKeys(next) {
      current = next;
    },
    failWith(next) {
      mode = next;
    },
    async close() {
      hanging.clear();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
