/**
 * A client that stops sending its body half-way to a token-service path (the token endpoint in
 * each dialect, RFC 7009 revocation, the JSON routes) is answered 408 request_timeout once
 * `listen.body_idle_timeout_ms` has passed, on both doors, as on the proxy path — before, the Node
 * door held such a request for as long as the client kept the connection, and the Bun door closed
 * it without an answer at its idle timeout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exchangeOne } from '../helpers/http.js';
import type { Runtime } from '../helpers/process.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { storeGateways, type StoreGateways } from '../token-service/processes.js';

const RUNTIMES: Runtime[] = ['node', 'bun'];
const IDLE_MS = 300;

let up: Upstream;
let gws: StoreGateways<undefined>;

beforeAll(async () => {
  up = await startUpstream();
  gws = await storeGateways(RUNTIMES, {
    upstream: up.url,
    edit: (text) => text.replace('listen: { host: 127.0.0.1, port: 0 }', `listen: { host: 127.0.0.1, port: 0, body_idle_timeout_ms: ${IDLE_MS}, idle_timeout_ms: 20000 }`),
  });
}, 90_000);

afterAll(async () => {
  await gws?.close();
  await up?.close();
});

/** Sends a head that announces 100 bytes and 10 of them, then nothing; resolves with what came back and when. */
async function stall(url: string, path: string, type: string): Promise<{ raw: string; ms: number }> {
  const t0 = performance.now();
  const { raw } = await exchangeOne(url, `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: ${type}\r\nContent-Length: 100\r\n\r\ngrant_type`, { waitMs: 10_000 });
  return { raw, ms: performance.now() - t0 };
}

describe('a token-service request whose body stalls (SPEC §1.8, §9)', () => {
  it.each([
    ['/oauth/token', 'application/x-www-form-urlencoded', /"error":"invalid_request"/],
    ['/v2/oauth/token', 'application/x-www-form-urlencoded', /"reason":"request_timeout"/],
    ['/v1/auth/token', 'application/json', /"error":"invalid_request"/],
    ['/oauth/revoke', 'application/x-www-form-urlencoded', /"error":"invalid_request"/],
  ])('%s is answered 408 after body_idle_timeout_ms on both doors, and logged as request_timeout', async (path, type, body) => {
    for (const r of RUNTIMES) {
      const d = gws.doors.get(r)!;
      const got = await stall(d.url, path, type);
      expect(got.raw, r).toMatch(/^HTTP\/1\.1 408 /);
      expect(got.raw, r).toMatch(body);
      // Answered at the idle bound, far before the connection's own idle timeout (20 s).
      expect(got.ms, r).toBeLessThan(5_000);
      const line = await d.waitForLine(new RegExp(`"path":"${path.replace(/\//g, '\\/')}".*"reason":"request_timeout"`));
      expect(JSON.parse(line)).toMatchObject({ status: 408 });
    }
  });
});
