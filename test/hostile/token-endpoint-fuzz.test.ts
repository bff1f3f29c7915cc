/**
 * Generated token requests on the wire (fast-check), sent to the Node door and the Bun door at
 * once, each on its own embedded store with one client made by `scopegate clients create`. The
 * three dialects' paths (SPEC §9), every way to present — or botch — client credentials (Basic,
 * the body, both, malformed Basic, a Bearer header), grant parameters repeated, missing or unknown,
 * JSON that is not an object or holds `__proto__`, wrong and doubled media types, a query string,
 * chunked framing.
 *
 * What must hold for every one: no 500; a token (200 with an access_token) only for a
 * client_credentials request that carries the client's real secret once; the two doors answer
 * with the same status. Wrong secrets are rare in the generator: each costs a full scrypt (about
 * 170 ms of one core).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fuzzRuns } from '../helpers/fuzz.js';
import { exchangeOne, finalBodyOf } from '../helpers/http.js';
import type { Runtime } from '../helpers/process.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { createClient, storeGateways, type StoreGateways } from '../token-service/processes.js';

const RUNTIMES: Runtime[] = ['node', 'bun'];
/** Generated requests; SCOPEGATE_FUZZ_RUNS raises it for a longer hunt. */
const RUNS = fuzzRuns(150);

let up: Upstream;
let gws: StoreGateways<{ id: string; secret: string }>;

beforeAll(async () => {
  up = await startUpstream();
  gws = await storeGateways(RUNTIMES, { upstream: up.url, prepare: (file) => createClient(file, 'fuzz', ['--group', '7', '--group-name', 'Ops']) });
}, 120_000);

afterAll(async () => {
  await gws?.close();
  await up?.close();
});

type Cred = 'basic' | 'basic-wrong' | 'basic-no-colon' | 'basic-not-base64' | 'basic-empty' | 'bearer' | 'none';
type BodyCred = 'none' | 'id-secret' | 'id-only' | 'id-wrong' | 'id-twice';

interface Req {
  path: '/oauth/token' | '/v2/oauth/token' | '/v1/auth/token';
  method: string;
  type: string | undefined;
  cred: Cred;
  bodyCred: BodyCred;
  grant: readonly string[];
  extra: readonly string[];
  query: string;
  chunked: boolean;
  json: 'object' | 'array' | 'broken' | 'proto' | 'number-secret';
}

const req: fc.Arbitrary<Req> = fc.record({
  path: fc.constantFrom('/oauth/token', '/v2/oauth/token', '/v1/auth/token'),
  method: fc.oneof({ arbitrary: fc.constant('POST'), weight: 8 }, fc.constantFrom('GET', 'PUT', 'HEAD', 'OPTIONS')),
  type: fc.oneof(
    { arbitrary: fc.constant(undefined), weight: 1 },
    { arbitrary: fc.constant('auto'), weight: 8 },
    fc.constantFrom('text/plain', 'application/json; charset=utf-8', 'application/x-www-form-urlencoded; charset=UTF-8', 'APPLICATION/JSON', 'application/x-www-form-urlencoded, application/json', 'multipart/form-data; boundary=x'),
  ),
  cred: fc.oneof({ arbitrary: fc.constant<Cred>('basic'), weight: 6 }, fc.constantFrom<Cred>('basic-no-colon', 'basic-not-base64', 'basic-empty', 'bearer', 'none', 'none'), { arbitrary: fc.constant<Cred>('basic-wrong'), weight: 1 }),
  bodyCred: fc.oneof({ arbitrary: fc.constant<BodyCred>('none'), weight: 4 }, fc.constantFrom<BodyCred>('id-secret', 'id-secret', 'id-only', 'id-twice'), { arbitrary: fc.constant<BodyCred>('id-wrong'), weight: 1 }),
  grant: fc.oneof({ arbitrary: fc.constant(['client_credentials']), weight: 6 }, fc.array(fc.constantFrom('client_credentials', 'refresh_token', 'password', 'authorization_code', '', 'CLIENT_CREDENTIALS'), { maxLength: 2 })),
  extra: fc.array(fc.constantFrom('scope=view_group', 'scope=admin_group', 'scope=', 'refresh_token=a.b', 'username=u', 'password=p', 'client_id=', '%zz=1', 'a=%ff'), { maxLength: 2 }),
  query: fc.oneof({ arbitrary: fc.constant(''), weight: 8 }, fc.constantFrom('?grant_type=client_credentials', '?x=1')),
  chunked: fc.boolean(),
  json: fc.oneof({ arbitrary: fc.constant<Req['json']>('object'), weight: 6 }, fc.constantFrom<Req['json']>('array', 'broken', 'proto', 'number-secret')),
});

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

/** The request's bytes for one door's client, and whether it carries that client's real secret where its dialect takes it. */
function render(q: Req, c: { id: string; secret: string }): { bytes: string; realSecret: boolean; clientCredentials: boolean } {
  const json = q.path === '/v1/auth/token';
  const headers = ['Host: 127.0.0.1'];
  const cred = { basic: `Basic ${b64(`${c.id}:${c.secret}`)}`, 'basic-wrong': `Basic ${b64(`${c.id}:${c.secret}x`)}`, 'basic-no-colon': `Basic ${b64(c.id)}`, 'basic-not-base64': 'Basic !!!', 'basic-empty': 'Basic ', bearer: `Bearer ${c.secret}`, none: undefined }[q.cred];
  if (cred !== undefined) headers.push(`Authorization: ${cred}`);
  const params: [string, string][] = q.grant.map((g) => ['grant_type', g]);
  if (q.bodyCred === 'id-secret') params.push(['client_id', c.id], ['client_secret', c.secret]);
  if (q.bodyCred === 'id-only') params.push(['client_id', c.id]);
  if (q.bodyCred === 'id-wrong') params.push(['client_id', c.id], ['client_secret', `${c.secret}x`]);
  if (q.bodyCred === 'id-twice') params.push(['client_id', c.id], ['client_id', c.id], ['client_secret', c.secret]);
  let body: string;
  if (json) {
    const o: Record<string, unknown> = {};
    for (const [k, v] of params) o[k] = v;
    body =
      q.json === 'array'
        ? JSON.stringify([o])
        : q.json === 'broken'
          ? JSON.stringify(o).slice(0, -1)
          : q.json === 'proto'
            ? JSON.stringify(o).replace(/^\{/, '{"__proto__":{"client_secret":"x"},')
            : q.json === 'number-secret'
              ? JSON.stringify({ ...o, client_secret: 12345 })
              : JSON.stringify(o);
  } else body = [...params.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`), ...q.extra].join('&');
  const type = q.type === 'auto' ? (json ? 'application/json' : 'application/x-www-form-urlencoded') : q.type;
  if (type !== undefined) headers.push(`Content-Type: ${type}`);
  const framed = !q.chunked ? body : body === '' ? '0\r\n\r\n' : `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`;
  headers.push(q.chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${Buffer.byteLength(body)}`);
  const basicReal = q.cred === 'basic';
  // A JSON object keeps one of two equal keys, so `id-twice` is a plain id + secret there.
  const bodyReal = (q.bodyCred === 'id-secret' || (json && q.bodyCred === 'id-twice')) && (!json || q.json === 'object' || q.json === 'proto');
  const bodySecret = q.bodyCred === 'id-secret' || q.bodyCred === 'id-wrong' || q.bodyCred === 'id-twice';
  // Where each dialect takes the secret (docs/token-service.md): HipChat Basic only, livedigital
  // the body only, the standard one either but not both (RFC 6749 §2.3).
  const realSecret = q.path === '/v2/oauth/token' ? basicReal : q.path === '/v1/auth/token' ? bodyReal : (basicReal || bodyReal) && !(cred?.startsWith('Basic') && bodySecret);
  return {
    bytes: `${q.method} ${q.path}${q.query} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n${framed}`,
    realSecret,
    clientCredentials: q.grant.length === 1 && q.grant[0] === 'client_credentials',
  };
}

describe('generated token requests on the wire, both doors (SPEC §9)', () => {
  it('issue a token only to the client with its secret, never answer 500, and get the same status from both doors', async () => {
    let issued = 0;
    await fc.assert(
      fc.asyncProperty(req, async (q) => {
        const sent = RUNTIMES.map((r) => render(q, gws.prepared.get(r)!));
        const answers = await Promise.all(RUNTIMES.map((r, i) => exchangeOne(gws.doors.get(r)!.url, sent[i]!.bytes, { waitMs: 5_000 })));
        RUNTIMES.forEach((r, i) => {
          const a = answers[i]!;
          const s = sent[i]!;
          const what = `${r} door, ${JSON.stringify(s.bytes.slice(0, 500))}:\n${JSON.stringify(a.raw.slice(0, 500))}`;
          if (a.status === 500 || a.status === 0) throw new Error(`answered ${a.status}: ${what}`);
          if (a.status === 200) {
            issued++;
            if (!finalBodyOf(a.raw).includes('"access_token"')) throw new Error(`a 200 without a token: ${what}`);
            if (!s.realSecret || !s.clientCredentials || q.query !== '' || q.method !== 'POST') throw new Error(`issued a token it should not have: ${what}`);
          }
        });
        if (answers[0]!.status !== answers[1]!.status) {
          throw new Error(`node ${answers[0]!.status}, bun ${answers[1]!.status} for ${JSON.stringify(sent[0]!.bytes.slice(0, 500))}:\nnode: ${JSON.stringify(answers[0]!.raw.slice(0, 400))}\nbun: ${JSON.stringify(answers[1]!.raw.slice(0, 400))}`);
        }
      }),
      { numRuns: RUNS },
    );
    // The generator reached the grant and got tokens, on both doors together.
    expect(issued).toBeGreaterThan(RUNS / 20);
  }, 300_000);
});
