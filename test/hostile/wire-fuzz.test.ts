/**
 * Hostile bytes on the wire, generated (fast-check), against both proxy doors as real processes in
 * front of one recording upstream. Each generated request — method, target, version, headers and
 * body built from the spellings attackers use (dot segments, encoded separators, absolute form,
 * doubled and mis-cased Authorization, smuggling-shaped framing, spoofed identity headers, bare
 * CR / LF, obs-fold, NUL) or plain random bytes — goes to the Node door and the Bun door at once.
 *
 * What must hold for every one of them, whatever the door answers:
 * - nothing reaches the upstream that the route table does not allow: a protected path only with
 *   the identity of a token that may call it (the room token only for its own room), never the
 *   client's own identity headers, never the token itself (forward_token is off here);
 * - where both doors reached the decision (a 200, 202, 401, 403, 404, 405 or 429 from each), they
 *   gave the same answer;
 * - the door never answers 500 (a bug path); the Node door answers every request, parser
 *   refusals included (Bun.serve closes on some spellings without a byte: docs/doors.md); both
 *   are still up and serving at the end, with no "unexpected error" in their logs.
 *
 * Validly signed tokens with hostile claims (every JSON type, control bytes, CRLF, lone
 * surrogates, 5,000-character strings, odd `exp`) must get the same decision from both doors, and
 * an allowed one must reach the upstream with the same identity-header bytes from each.
 *
 * The Hono middleware gets the same requests on @hono/node-server (in this process) and on
 * Bun.serve (a Bun process): what its application's handler receives must pass the same check,
 * and it must decide as the proxy door on the same runtime.
 *
 * A second pair of doors answers forward-auth sub-requests (nginx, Traefik and Envoy styles, mixed
 * and repeated descriptions): a 2xx there means "forward", so every 200 must name a token that may
 * make the described call, and the two doors must give the same decision.
 *
 * What it found, each with a test of its own: on the Node door, an `Upgrade: h2c` request with a
 * Content-Length body got no answer at all on Node 20, and neither did a CONNECT with a body on any
 * Node (http-framing.test.ts); a version-less `PRI <target>` line was dropped with no access line
 * (same file); a forward-auth sub-request carrying the client's WebSocket handshake went to the
 * tunnel path and was answered 404 (forward-auth.test.ts). In the decision, `Bearer t` followed by
 * an empty Authorization field was the token t on the Node door and a malformed token on Bun
 * (extract-token.test.ts).
 */
import { serve, type ServerType } from '@hono/node-server';
import fc from 'fast-check';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import { Hono } from 'hono';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { scopegate, type ScopegatePrincipal } from '../../src/doors/hono/index.js';
import { baseConfig, TEST_SECRET } from '../helpers/gateway.js';
import { fuzzRuns } from '../helpers/fuzz.js';
import { exchangeOne, finalHeaderOf, type RawExchange } from '../helpers/http.js';
import { BUN, ROOT, spawnGateway, type GatewayProcess, type Runtime } from '../helpers/process.js';
import { hsToken, nowS, tempDir, unsecuredToken, type TempDir } from '../helpers/tokens.js';
import { startUpstream, type RecordedRequest, type Upstream } from '../helpers/upstream.js';

const RUNTIMES: Runtime[] = ['node', 'bun'];
/** Generated requests per property; SCOPEGATE_FUZZ_RUNS=20000 for a longer hunt. */
const RUNS = fuzzRuns(1000);

/** The route table of every door here (the proxy doors' YAML is written from it). */
const ROUTES = [
  { path: '/v2/capabilities', public: true },
  { id: 'notify', path: '/v2/room/{room}/notification', methods: ['POST' as const], scopes: ['send_notification'], room_param: 'room' },
  { id: 'get-room', path: '/v2/room/{room}', methods: ['GET' as const], scopes: ['view_room'], room_param: 'room' },
];

let up: Upstream;
let dir: TempDir;
const doors = new Map<Runtime, GatewayProcess>();
/** A second pair with forward auth on (its peers, loopback, are trusted proxies there). */
const faDoors = new Map<Runtime, GatewayProcess>();
const FA_PATH = '/_scopegate/auth';
/** The tokens the generator picks from, by what they may do. */
const tok: Record<'alice' | 'room42' | 'noscope' | 'expired' | 'forged' | 'none', string> = {} as never;

beforeAll(async () => {
  up = await startUpstream();
  dir = await tempDir();
  const base = { iss: 'scopegate-test', aud: 'api', iat: nowS(), exp: nowS() + 3600 };
  tok.alice = await hsToken(TEST_SECRET, { ...base, sub: 'alice', client_type: 'user', scope: 'view_room send_notification' });
  tok.room42 = await hsToken(TEST_SECRET, { ...base, sub: 'room42', client_type: 'room', room_id: 42, scope: 'view_room send_notification' });
  tok.noscope = await hsToken(TEST_SECRET, { ...base, sub: 'noscope', client_type: 'user', scope: 'view_group' });
  tok.expired = await hsToken(TEST_SECRET, { ...base, sub: 'expired', client_type: 'user', scope: 'view_room', iat: nowS() - 7200, exp: nowS() - 3600 });
  tok.forged = await hsToken('another-secret-0123456789abcdef-012345', { ...base, sub: 'forged', client_type: 'user', scope: 'view_room' });
  tok.none = unsecuredToken({ ...base, sub: 'forged-none', client_type: 'user', scope: 'view_room' });
  const text = baseConfig({
    upstream: up.url,
    extra: 'listen: { host: 127.0.0.1, port: 0, header_timeout_ms: 1000, body_idle_timeout_ms: 500 }\nadmin: { enabled: false }\n# The test client (127.0.0.1) is not a trusted proxy: its forwarding headers must not pass.\ntrusted_proxies: [10.255.255.255/32]\n',
    tokens: '  forward_token: false\n',
    rateLimit: 'rate_limit:\n  store: memory\n  default: { limit: 1000000, window_s: 60 }\n',
    routes: stringify(ROUTES).trimEnd().replace(/^/gm, '  '),
  });
  const file = await dir.write('gateway.yaml', text);
  const faFile = await dir.write(
    'forward-auth.yaml',
    text.replace(/# The test client.*\ntrusted_proxies: .*\n/, `forward_auth: { path: ${FA_PATH} }\n`),
  );
  await Promise.all(RUNTIMES.flatMap((r) => [(async () => doors.set(r, await spawnGateway(file, { runtime: r })))(), (async () => faDoors.set(r, await spawnGateway(faFile, { runtime: r })))()]));
}, 30_000);

afterAll(async () => {
  await Promise.all([...doors.values(), ...faDoors.values()].map((d) => d.kill()));
  await up?.close();
  await dir?.cleanup();
});

// --- the generator -------------------------------------------------------------------------------

const METHODS = ['GET', 'GET', 'GET', 'POST', 'POST', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE', 'CONNECT', 'get', 'G\u0000T', 'GET /x', 'PRI'];
const SEGMENTS = ['v2', 'room', '42', '43', 'notification', 'capabilities', '..', '.', '', '%2e%2e', '%2E', '%2f', '%2F', '%5c', '\\', '%00', '%0d%0a', '%34%32', ';x', '~', 'room;a=b', 'ROOM', '%', '%zz', 'é', '\u00ff', '42%20', '42?', '42#', '*'];
const PREFIXES = ['', '', '', 'http://127.0.0.1', 'http://evil.example', '//', '/./', '/../', '*'];
const QUERIES = ['', '', '', '?auth_test=true', '?auth_token=ALICE', '?auth_token=ROOM42', '?auth_token=ALICE&auth_token=FORGED', '?AUTH_TOKEN=ALICE', '?auth%5Ftoken=ALICE', '?x=1&auth_token=NOSCOPE', '?auth_token=', '?%00', '??', '?auth_token=ALICE;x', '?auth_token=ALICE%00'];
const VERSIONS = ['HTTP/1.1', 'HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1 ', 'HTTP/1.10', 'http/1.1', '', 'HTTP/0.9'];
const TOKENS = ['ALICE', 'ROOM42', 'NOSCOPE', 'EXPIRED', 'FORGED', 'NONE', 'ALICE ', ' ALICE', 'ALICE.x', 'xALICE', ''];
const AUTH = [
  (t: string) => `Authorization: Bearer ${t}`,
  (t: string) => `authorization: bearer ${t}`,
  (t: string) => `Authorization: Bearer  ${t}`,
  (t: string) => `Authorization: Bearer\t${t}`,
  (t: string) => `Authorization: Basic ${t}`,
  (t: string) => `Authorization: ${t}`,
  (t: string) => `Authorization: Bearer ${t}, Bearer ALICE`,
  (t: string) => `Authorization : Bearer ${t}`,
  (t: string) => `Authorization: Bearer ${t}\r\n continued`,
  (t: string) => `Authorization: Bearer ${t}\u0000`,
];
const OTHER_HEADERS = [
  'Host: 127.0.0.1',
  'Host: evil.example',
  'Host: a\r\nHost: b',
  'Host:',
  'X-Auth-Subject: mallory',
  'x-auth-subject: mallory',
  'X_Auth_Subject: mallory',
  'X-Auth-Client-Type: mallory',
  'X-Auth-Scopes: mallory',
  'X-Forwarded-For: mallory',
  'Forwarded: for=mallory',
  'X-Real-IP: mallory',
  'X-Request-Id: mallory\u0000',
  'Transfer-Encoding: chunked',
  'Transfer-Encoding: chunked, identity',
  'Transfer-Encoding:  chunked',
  'Transfer-Encoding: xchunked',
  'Transfer-Encoding: chunked\r\nTransfer-Encoding: identity',
  'Content-Length: 5',
  'Content-Length: 0',
  'Content-Length: -1',
  'Content-Length: 5, 5',
  'Content-Length: 0x5',
  'Content-Length: 99999999999999999999',
  'Content-Length: 5\r\nTransfer-Encoding: chunked',
  'Connection: close',
  'Connection: keep-alive, X-Auth-Subject',
  'Connection: upgrade\r\nUpgrade: websocket',
  'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
  'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat, x-auth-subject',
  'Connection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA',
  'Expect: 100-continue',
  'Proxy-Authorization: Bearer ALICE',
  'Cookie: auth_token=ALICE',
  'X-HTTP-Method-Override: POST',
  ' Leading: space',
  'No-Colon',
  'Bad\u0000Name: x',
  'Value: bare\rcr',
  'Value: bare\nlf',
  `Long: ${'x'.repeat(9000)}`,
];
const BODIES = ['', '', 'hello', '5\r\nhello\r\n0\r\n\r\n', '0\r\n\r\nGET /v2/room/43 HTTP/1.1\r\nHost: x\r\n\r\n', 'GET /v2/room/43 HTTP/1.1\r\nX-Auth-Subject: mallory\r\n\r\n', '{"a":1}'];

const realToken = (t: string): string =>
  t.replace(/ALICE|ROOM42|NOSCOPE|EXPIRED|FORGED|NONE/g, (name) => tok[({ ALICE: 'alice', ROOM42: 'room42', NOSCOPE: 'noscope', EXPIRED: 'expired', FORGED: 'forged', NONE: 'none' } as const)[name as 'ALICE']]);

interface Generated {
  bytes: string;
  method: string;
}

interface Parts {
  method: string;
  prefix: string;
  segments: string[];
  shape: 'room' | 'notify' | 'capabilities' | 'free';
  query: string;
  version: string;
  auth: { how: number; token: string }[];
  headers: string[];
  host: boolean;
  lineEnd: string;
  body: string;
}

function render(g: Parts): Generated {
  // Paths near the routes, so the decision is reached, or (`free`) any path.
  const seg = g.segments[0] ?? '42';
  const segs = g.shape === 'room' ? ['v2', 'room', seg] : g.shape === 'notify' ? ['v2', 'room', seg, 'notification'] : g.shape === 'capabilities' ? ['v2', 'capabilities'] : g.segments;
  const target = `${g.prefix}/${segs.join('/')}${g.query}`;
  const lines = [`${g.method} ${realToken(target)} ${g.version}`.trimEnd()];
  if (g.host) lines.push('Host: 127.0.0.1');
  for (const a of g.auth) lines.push(realToken(AUTH[a.how]!(a.token)));
  lines.push(...g.headers);
  return { bytes: `${lines.join(g.lineEnd)}${g.lineEnd}${g.lineEnd}${g.body}`, method: g.method };
}

const shapes = fc.constantFrom<Parts['shape']>('room', 'room', 'notify', 'capabilities', 'free');
const someToken = fc.constantFrom('ALICE', 'ALICE', 'ROOM42', 'ROOM42', 'NOSCOPE', 'EXPIRED', 'FORGED', 'NONE');
const anyAuth = fc.array(fc.record({ how: fc.nat(AUTH.length - 1), token: fc.constantFrom(...TOKENS) }), { maxLength: 2 });

/**
 * A well-formed request to a route, with a real token of any kind, and at most one hostile part:
 * these reach the decision (and past it), so what the doors forward is put to the test.
 */
const nearValid: fc.Arbitrary<Generated> = fc
  .record({
    shape: shapes,
    method: fc.constantFrom('GET', 'GET', 'POST', 'HEAD'),
    segment: fc.constantFrom('42', '42', '43', 'lobby'),
    token: someToken,
    hostile: fc.oneof(
      { arbitrary: fc.constant({}), weight: 3 },
      fc.constantFrom(...METHODS).map((method) => ({ method })),
      fc.constantFrom(...PREFIXES).map((prefix) => ({ prefix })),
      fc.constantFrom(...SEGMENTS).map((s) => ({ segments: [s] })),
      fc.array(fc.constantFrom(...SEGMENTS), { minLength: 2, maxLength: 6 }).map((segments) => ({ segments, shape: 'free' as const })),
      fc.constantFrom(...QUERIES).map((query) => ({ query })),
      fc.constantFrom(...VERSIONS).map((version) => ({ version })),
      anyAuth.map((auth) => ({ auth })),
      fc.constantFrom(...OTHER_HEADERS).map((h) => ({ headers: [h] })),
      fc.constant({ host: false }),
      fc.constant({ lineEnd: '\n' }),
      fc.constantFrom(...BODIES).map((body) => ({ body })),
    ),
  })
  .map(({ shape, method, segment, token, hostile }) =>
    render({ method, prefix: '', segments: [segment], shape, query: '', version: 'HTTP/1.1', auth: [{ how: 0, token }], headers: [], host: true, lineEnd: '\r\n', body: '', ...hostile }),
  );

/** Anything the parts make, several hostile parts at once. */
const anything: fc.Arbitrary<Generated> = fc
  .record({
    method: fc.constantFrom(...METHODS),
    prefix: fc.constantFrom(...PREFIXES),
    segments: fc.array(fc.constantFrom(...SEGMENTS), { minLength: 1, maxLength: 6 }),
    shape: shapes,
    query: fc.constantFrom(...QUERIES),
    version: fc.constantFrom(...VERSIONS),
    auth: anyAuth,
    headers: fc.array(fc.constantFrom(...OTHER_HEADERS), { maxLength: 4 }),
    host: fc.boolean(),
    lineEnd: fc.constantFrom('\r\n', '\n'),
    body: fc.constantFrom(...BODIES),
  })
  .map(render);

const randomBytes: fc.Arbitrary<Generated> = fc
  .array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 200 })
  .map((b) => ({ bytes: `GET /v2/room/42 HTTP/1.1\r\nAuthorization: Bearer ${tok.alice}\r\n${String.fromCharCode(...b)}\r\n\r\n`, method: 'GET' }));

/** A forward-auth sub-request and what it describes. */
interface FaGenerated extends Generated {
  subMethod: string;
  /** The described method and target (before the token placeholders are filled in). */
  described: { method: string; target: string };
}

const faRequest: fc.Arbitrary<FaGenerated> = fc
  .record({
    style: fc.constantFrom('nginx', 'nginx', 'traefik', 'traefik', 'envoy', 'envoy', 'nginx+traefik', 'nginx-twice', 'envoy+nginx', 'none'),
    subMethod: fc.constantFrom('GET', 'HEAD', 'POST'),
    method: fc.oneof({ arbitrary: fc.constantFrom('GET', 'GET', 'POST', 'HEAD'), weight: 6 }, fc.constantFrom(...METHODS)),
    shape: shapes,
    segment: fc.oneof({ arbitrary: fc.constantFrom('42', '42', '43'), weight: 4 }, fc.constantFrom(...SEGMENTS)),
    query: fc.oneof({ arbitrary: fc.constant(''), weight: 4 }, fc.constantFrom(...QUERIES)),
    auth: fc.oneof({ arbitrary: someToken.map((token) => [{ how: 0, token }]), weight: 4 }, anyAuth),
    headers: fc.oneof({ arbitrary: fc.constant<string[]>([]), weight: 3 }, fc.array(fc.constantFrom(...OTHER_HEADERS), { maxLength: 2 })),
  })
  .map((g) => {
    const segs = g.shape === 'room' ? ['v2', 'room', g.segment] : g.shape === 'notify' ? ['v2', 'room', g.segment, 'notification'] : g.shape === 'capabilities' ? ['v2', 'capabilities'] : [g.segment, g.segment];
    const target = realToken(`/${segs.join('/')}${g.query}`);
    const envoy = g.style.startsWith('envoy');
    const lines = [`${envoy ? g.method : g.subMethod} ${FA_PATH}${envoy ? target : ''} HTTP/1.1`, 'Host: 127.0.0.1'];
    if (g.style.includes('nginx')) lines.push(`X-Original-Method: ${g.method}`, `X-Original-URI: ${target}`);
    if (g.style === 'nginx-twice') lines.push('X-Original-URI: /v2/capabilities');
    if (g.style.includes('traefik')) lines.push(`X-Forwarded-Method: ${g.method}`, `X-Forwarded-Uri: ${target}`);
    for (const a of g.auth) lines.push(realToken(AUTH[a.how]!(a.token)));
    lines.push(...g.headers);
    return { bytes: `${lines.join('\r\n')}\r\n\r\n`, method: envoy ? g.method : g.subMethod, subMethod: envoy ? g.method : g.subMethod, described: { method: g.method, target } };
  });


/** Why a forward-auth answer lets through what the route table refuses, or undefined. */
function faBreach(f: FaGenerated, a: RawExchange): string | undefined {
  if (a.status === 500) return 'answered 500';
  if (a.status >= 200 && a.status < 300 && a.status !== 200) {
    // Envoy style answers auth_test with its 202 (any other 2xx would be "forward").
    return a.status === 202 && f.described.target.includes('auth_test=true') ? undefined : `a ${a.status}: every 2xx is "forward" to a front proxy`;
  }
  if (a.status !== 200) return undefined;
  const uri = finalHeaderOf(a.raw, 'x-scopegate-uri');
  const subject = finalHeaderOf(a.raw, 'x-auth-subject');
  if (uri === undefined) return 'a 200 without X-Scopegate-Uri';
  const [path = '', query = ''] = uri.split('?', 2) as [string, string?];
  if (/(^|&)auth_token=/i.test(query)) return 'auth_token left in X-Scopegate-Uri';
  if (subject?.includes('mallory')) return 'a client-sent identity in the answer';
  if (path === '/v2/capabilities') return subject === undefined ? undefined : 'identity headers on a public route';
  const room = /^\/v2\/room\/([^/]+)(\/notification)?$/.exec(path);
  if (!room) return `allowed an unrouted path: ${uri}`;
  if (subject !== 'alice' && subject !== 'room42') return `allowed a protected route with subject ${JSON.stringify(subject)}`;
  const method = f.described.method;
  if (room[2] ? method !== 'POST' : method !== 'GET' && method !== 'HEAD') return `allowed ${method} on ${room[2] ? 'a POST' : 'a GET'}-only route`;
  let param: string;
  try {
    param = decodeURIComponent(room[1]!);
  } catch {
    return `allowed an undecodable room parameter: ${room[1]}`;
  }
  if (subject === 'room42' && param !== '42') return `allowed the room-42 token on room ${JSON.stringify(param)}`;
  return undefined;
}

// --- the invariants ------------------------------------------------------------------------------

/** Why a request the upstream received should never have reached it, or undefined. */
function breach(r: Pick<RecordedRequest, 'method' | 'url' | 'headers'>): string | undefined {
  const h = r.headers;
  const [path = '', query = ''] = r.url.split('?', 2) as [string, string?];
  const subject = h['x-auth-subject'];
  for (const [k, v] of Object.entries(h)) if (String(v).includes('mallory') && k !== 'x-request-id') return `a client-sent "${k}: ${String(v)}" reached the upstream`;
  if (h['proxy-authorization'] !== undefined) return 'Proxy-Authorization (hop-by-hop) reached the upstream';
  if (path === '/v2/capabilities') return undefined; // public: forwarded as sent
  const room = /^\/v2\/room\/([^/]+)(\/notification)?$/.exec(path);
  if (!room) return `an unrouted path reached the upstream: ${r.method} ${r.url}`;
  if (subject !== 'alice' && subject !== 'room42') return `a protected route reached the upstream with subject ${JSON.stringify(subject)}`;
  const method = room[2] ? 'POST' : 'GET';
  if (r.method !== method && !(method === 'GET' && r.method === 'HEAD')) return `${r.method} reached a ${method}-only route`;
  let param: string;
  try {
    param = decodeURIComponent(room[1]!);
  } catch {
    return `an undecodable room parameter reached the upstream: ${room[1]}`;
  }
  if (subject === 'room42' && param !== '42') return `the room-42 token reached room ${JSON.stringify(param)}`;
  if (h['authorization'] !== undefined) return 'the token reached the upstream (forward_token is off)';
  if (/(^|&)auth_token=/i.test(query)) return 'auth_token reached the upstream in the query';
  return undefined;
}

/** Statuses only the decision gives (a parser never does). */
const DECIDED = new Set([200, 202, 401, 403, 404, 405, 429]);

/** Statuses seen per door, by which generator sent them. */
const seen = new Map<string, number>();

/** Sends one generated request to both doors at once and checks what came of it. */
async function probe(g: Generated, tag: string): Promise<void> {
  const before = up.requests.length;
  const answers = await Promise.all(RUNTIMES.map(async (r) => [r, await exchangeOne(doors.get(r)!.url, g.bytes, { head: g.method === 'HEAD' })] as const));
  // A forwarded request is recorded when its head arrives, before any answer goes back.
  for (const rec of up.requests.slice(before)) {
    const why = breach(rec);
    if (why) throw new Error(`${why}\nrequest sent:\n${JSON.stringify(g.bytes.slice(0, 600))}\nupstream got: ${rec.method} ${rec.url} ${JSON.stringify(rec.headers)}`);
  }
  // Where both doors reached the decision, they answer alike (SPEC §8). Their documented
  // differences (docs/doors.md: URL normalisation, parser refusals, GET bodies) are all a 400 or a
  // bare parser status on one side, never one decided status against another.
  const [node, bun] = answers.map(([, a]) => a.status) as [number, number];
  if (node !== bun && DECIDED.has(node) && DECIDED.has(bun)) {
    throw new Error(`the doors decided differently: node ${node}, bun ${bun}, for ${JSON.stringify(g.bytes.slice(0, 600))}`);
  }
  for (const [r, a] of answers) {
    const key = `${tag} ${r} ${a.status}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
    if (a.status === 500) throw new Error(`the ${r} door answered 500 to ${JSON.stringify(g.bytes.slice(0, 600))}:\n${a.raw.slice(0, 600)}`);
    // The Node door answers everything, parser refusals included (Bun.serve closes on some
    // spellings without a byte: docs/doors.md).
    if (r === 'node' && a.status === 0) throw new Error(`the node door sent no answer to ${JSON.stringify(g.bytes.slice(0, 600))}:\n${JSON.stringify(a.raw.slice(0, 300))}`);
  }
}

const count = (tag: string, r: Runtime, ...statuses: number[]): number => statuses.reduce((n, s) => n + (seen.get(`${tag} ${r} ${s}`) ?? 0), 0);

describe('hostile bytes on the wire, both doors (SPEC §1, §3, §5, §8)', () => {
  it('near-valid requests with one hostile part: nothing forwarded that the route table refuses, never a 500', async () => {
    await fc.assert(
      fc.asyncProperty(nearValid, (g) => probe(g, 'near')),
      { numRuns: RUNS },
    );
    // The generator reached the decision and went past it on both doors, not only parser refusals.
    for (const r of RUNTIMES) {
      const all = JSON.stringify([...seen].filter(([k]) => k.startsWith(`near ${r} `)));
      expect(count('near', r, 200), all).toBeGreaterThan(RUNS / 10);
      expect(count('near', r, 401, 403), all).toBeGreaterThan(RUNS / 40);
    }
  }, 300_000);

  it('requests with many hostile parts, and random bytes in the head: the same', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof({ arbitrary: anything, weight: 3 }, { arbitrary: randomBytes, weight: 1 }), (g) => probe(g, 'any')),
      { numRuns: RUNS },
    );
  }, 300_000);

  it('forward-auth sub-requests (nginx, Traefik, Envoy styles, mixed, repeated): never a 2xx the route table refuses, the doors alike', async () => {
    await fc.assert(
      fc.asyncProperty(faRequest, async (f) => {
        const answers = await Promise.all(RUNTIMES.map(async (r) => [r, await exchangeOne(faDoors.get(r)!.url, f.bytes, { head: f.subMethod === 'HEAD' })] as const));
        for (const [r, a] of answers) {
          const key = `fa ${r} ${a.status}`;
          seen.set(key, (seen.get(key) ?? 0) + 1);
          const why = faBreach(f, a);
          if (why) throw new Error(`${r} door: ${why}\nsub-request:\n${JSON.stringify(f.bytes.slice(0, 700))}\nanswer:\n${JSON.stringify(a.raw.slice(0, 700))}`);
        }
        const n = answers[0]![1];
        const b = answers[1]![1];
        // The status the decision gave (nginx style maps every refusal to 401 / 403 and sends it in X-Scopegate-Status).
        const real = (a: RawExchange): number => Number(finalHeaderOf(a.raw, 'x-scopegate-status') ?? a.status);
        const same = n.status === b.status && real(n) === real(b) && (n.status !== 200 || (finalHeaderOf(n.raw, 'x-auth-subject') === finalHeaderOf(b.raw, 'x-auth-subject') && finalHeaderOf(n.raw, 'x-scopegate-uri') === finalHeaderOf(b.raw, 'x-scopegate-uri')));
        if (!same && DECIDED.has(real(n)) && DECIDED.has(real(b))) {
          throw new Error(`the doors answered the sub-request differently:\n${JSON.stringify(f.bytes.slice(0, 700))}\nnode: ${JSON.stringify(n.raw.slice(0, 500))}\nbun: ${JSON.stringify(b.raw.slice(0, 500))}`);
        }
      }),
      { numRuns: RUNS },
    );
    for (const r of RUNTIMES) {
      const all = JSON.stringify([...seen].filter(([k]) => k.startsWith(`fa ${r} `)));
      expect(count('fa', r, 200), all).toBeGreaterThan(RUNS / 20);
      expect(count('fa', r, 401, 403), all).toBeGreaterThan(RUNS / 20);
    }
  }, 300_000);

  it('both doors are still up and serving afterwards, with no unexpected error in their logs', async () => {
    for (const d of faDoors.values()) expect(d.child.exitCode).toBeNull();
    for (const r of RUNTIMES) {
      const d = doors.get(r)!;
      expect(d.child.exitCode, `${r} exited`).toBeNull();
      const ok = await exchangeOne(d.url, `GET /v2/room/42 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tok.alice}\r\n\r\n`);
      expect(ok.status, `${r}: ${ok.raw.slice(0, 300)}`).toBe(200);
      expect(d.stdout.filter((l) => l.includes('unexpected error')), r).toEqual([]);
    }
  });
});

/** A claim value of any JSON shape, strings weighted to the ones header encoding finds hard. */
const claimValue = fc.oneof(
  { arbitrary: fc.string({ unit: 'binary', maxLength: 30 }), weight: 4 },
  fc.constantFrom('42', ' 42', '042', '4\u00002', '42\r\nX-Auth-Subject: mallory', 'é', '\u{1F600}', '\ud800', 'a\u0085b', 'x'.repeat(5000), ''),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 3 }), fc.string({ maxLength: 3 }), { maxKeys: 2 }),
);

const claims = fc.record(
  {
    sub: fc.oneof({ arbitrary: fc.constant('alice'), weight: 2 }, claimValue),
    client_type: fc.oneof({ arbitrary: fc.constantFrom('user', 'user', 'room', 'group'), weight: 6 }, claimValue),
    scope: fc.oneof({ arbitrary: fc.constant('view_room send_notification'), weight: 4 }, fc.constantFrom('view_room\tadmin', ' view_room ', 'view_room,admin', 'VIEW_ROOM'), fc.array(fc.constantFrom('view_room', 'admin', ''), { maxLength: 3 }), claimValue),
    room_id: fc.oneof({ arbitrary: fc.constantFrom(42, '42'), weight: 3 }, claimValue),
    room_name: fc.oneof({ arbitrary: fc.constant(undefined), weight: 2 }, claimValue),
    jti: fc.oneof({ arbitrary: fc.constant(undefined), weight: 2 }, claimValue),
    exp: fc.oneof({ arbitrary: fc.constant(undefined), weight: 6 }, fc.constantFrom(1, 1e20, -1, '9999999999', 1.5e9 + 0.5), claimValue),
  },
  { requiredKeys: ['sub', 'client_type', 'scope'] },
);

describe('hostile claims in validly signed tokens, both doors (SPEC §3)', () => {
  it('get the same decision from both doors, and reach the upstream as the same identity bytes', async () => {
    let n = 0;
    let forwarded = 0;
    await fc.assert(
      fc.asyncProperty(claims, async (c) => {
        const payload: Record<string, unknown> = { iss: 'scopegate-test', aud: 'api', iat: nowS(), exp: nowS() + 3600 };
        for (const [k, v] of Object.entries(c)) if (v !== undefined) payload[k] = v;
        // Signed by hand: jose's SignJWT refuses some of these claims before signing.
        const signing = `${Buffer.from('{"alg":"HS256","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
        const token = `${signing}.${createHmac('sha256', TEST_SECRET).update(signing).digest('base64url')}`;
        const id = `claims-${n++}`;
        const answers = await Promise.all(
          RUNTIMES.map(async (r) => {
            const a = await exchangeOne(doors.get(r)!.url, `GET /v2/room/42 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\nX-Fuzz: ${id}-${r}\r\n\r\n`);
            return [r, a] as const;
          }),
        );
        const what = () => `claims ${JSON.stringify(payload).slice(0, 400)}\n${answers.map(([r, a]) => `${r}: ${JSON.stringify(a.raw.slice(0, 300))}`).join('\n')}`;
        for (const [, a] of answers) if (a.status === 500 || a.status === 0) throw new Error(`answered ${a.status}: ${what()}`);
        if (answers[0]![1].status !== answers[1]![1].status) throw new Error(`the doors decided differently: ${what()}`);
        if (answers[0]![1].status !== 200) return;
        forwarded++;
        // What each door sent upstream as identity, byte for byte (raw header lines, latin1).
        const sentBy = (r: Runtime): string[] => {
          const rec = up.requests.find((q) => q.headers['x-fuzz'] === `${id}-${r}`);
          if (!rec) throw new Error(`${r}: a 200 the upstream never saw: ${what()}`);
          const out: string[] = [];
          for (let i = 0; i < rec.rawHeaders.length; i += 2) if (rec.rawHeaders[i]!.toLowerCase().startsWith('x-auth-')) out.push(`${rec.rawHeaders[i]!.toLowerCase()}: ${Buffer.from(rec.rawHeaders[i + 1]!, 'latin1').toString('hex')}`);
          return out.sort();
        };
        const [node, bun] = [sentBy('node'), sentBy('bun')];
        if (JSON.stringify(node) !== JSON.stringify(bun)) throw new Error(`different identity headers upstream:\nnode ${JSON.stringify(node)}\nbun  ${JSON.stringify(bun)}\n${what()}`);
        if (node.some((h) => h.includes(Buffer.from('mallory').toString('hex')) && !h.startsWith('x-auth-room-name') && !h.startsWith('x-auth-token-id'))) throw new Error(`a claim wrote a header of its own: ${what()}`);
      }),
      { numRuns: RUNS },
    );
    expect(forwarded).toBeGreaterThan(RUNS / 25);
  }, 300_000);
});

/** The Hono middleware's options: the proxy doors' config, as an object. */
const HONO_OPTIONS = {
  realm: 'api',
  trusted_proxies: ['10.255.255.255/32'],
  tokens: { issuers: [{ name: 'local', issuer: 'scopegate-test', audience: 'api', algorithms: ['HS256' as const], secrets: [TEST_SECRET], claims: { client_type: 'client_type', scopes: 'scope', room: 'room_id', room_name: 'room_name' } }] },
  rate_limit: { store: 'memory' as const, default: { limit: 1_000_000, window_s: 60 } },
  routes: ROUTES,
};

/** What reached a Hono application's handler: the middleware let it through. */
interface Served {
  method: string;
  url: string;
  who: ScopegatePrincipal | undefined;
}

/**
 * The Hono middleware's property: each generated request goes to the Hono app at `url` and to the
 * proxy door on the same runtime; what the app's handler served (`servedSince`) must pass the
 * proxy doors' breach check, and where both reached the decision they must answer alike. Resolves
 * with how many requests the app served.
 */
async function honoAgainstDoor(door: Runtime, url: string, servedSince: () => Promise<Served[]>): Promise<number> {
  let served = 0;
  await fc.assert(
    fc.asyncProperty(fc.oneof({ arbitrary: nearValid, weight: 3 }, anything), async (g) => {
      const [hono, proxy] = await Promise.all([exchangeOne(url, g.bytes, { head: g.method === 'HEAD' }), exchangeOne(doors.get(door)!.url, g.bytes, { head: g.method === 'HEAD' })]);
      const reached = await servedSince();
      served += reached.length;
      for (const r of reached) {
        const why = breach({ method: r.method, url: new URL(r.url).pathname, headers: { 'x-auth-subject': r.who?.subject } });
        if (why) throw new Error(`the application got it: ${why}\nrequest sent:\n${JSON.stringify(g.bytes.slice(0, 600))}\napp saw: ${r.method} ${r.url} ${JSON.stringify(r.who)}`);
      }
      if (hono.status !== proxy.status && DECIDED.has(hono.status) && DECIDED.has(proxy.status)) {
        throw new Error(`the Hono middleware on ${door} decided ${hono.status}, the ${door} door ${proxy.status}, for ${JSON.stringify(g.bytes.slice(0, 600))}`);
      }
    }),
    { numRuns: RUNS },
  );
  return served;
}

describe('the Hono middleware on @hono/node-server, the same hostile bytes (SPEC §8)', () => {
  let server: ServerType;
  let url: string;
  /** What the application's handler served, not yet checked. */
  const reached: Served[] = [];

  beforeAll(async () => {
    const app = new Hono();
    app.use('*', scopegate({ ...HONO_OPTIONS, onError: () => undefined }));
    app.all('*', (c) => {
      reached.push({ method: c.req.method, url: c.req.url, who: c.get('scopegate') });
      return c.text('ok');
    });
    server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' });
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('never lets the application serve what the route table refuses, and decides as the Node door does', async () => {
    const served = await honoAgainstDoor('node', url, () => Promise.resolve(reached.splice(0)));
    // The generator got past the middleware, to the application, in a good share of the runs.
    expect(served).toBeGreaterThan(RUNS / 10);
  }, 300_000);
});

/** The same Hono app on Bun.serve, in a Bun process; GET /__reached lists what its handler served. */
const BUN_HONO_APP = `
import { Hono } from ${JSON.stringify(join(ROOT, 'node_modules/hono/dist/index.js'))};
import { scopegate } from ${JSON.stringify(join(ROOT, 'src/doors/hono/index.ts'))};
const reached = [];
const app = new Hono();
app.get('/__reached', (c) => c.json(reached.splice(0)));
app.use('*', scopegate({ ...JSON.parse(process.argv[2]), onError: () => undefined }));
app.all('*', (c) => (reached.push({ method: c.req.method, url: c.req.url, who: c.get('scopegate') }), c.text('ok')));
const server = Bun.serve({ hostname: '127.0.0.1', port: 0, fetch: app.fetch });
console.log('listening ' + server.port);
`;

describe('the Hono middleware on Bun.serve, the same hostile bytes (SPEC §8)', () => {
  let child: ChildProcess;
  let url: string;
  let scriptDir: TempDir;

  beforeAll(async () => {
    scriptDir = await tempDir();
    const script = await scriptDir.write('app.ts', BUN_HONO_APP);
    child = spawn(BUN, [script, JSON.stringify(HONO_OPTIONS)], { stdio: ['ignore', 'pipe', 'pipe'] });
    url = await new Promise<string>((resolve, reject) => {
      let out = '';
      let err = '';
      child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
      child.stdout!.on('data', (c: Buffer) => {
        out += c.toString();
        const m = /listening (\d+)/.exec(out);
        if (m) resolve(`http://127.0.0.1:${m[1]}`);
      });
      child.on('exit', (code) => reject(new Error(`the Bun app exited (${code}): ${err}`)));
    });
  }, 30_000);

  afterAll(async () => {
    child?.kill('SIGKILL');
    await scriptDir?.cleanup();
  });

  it('never lets the application serve what the route table refuses, and decides as the Bun door does', async () => {
    const served = await honoAgainstDoor('bun', url, async () => (await (await fetch(`${url}/__reached`)).json()) as Served[]);
    expect(served).toBeGreaterThan(RUNS / 10);
  }, 300_000);
});
