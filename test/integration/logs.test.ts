/**
 * SPEC §6 logs through real sockets: every kind of request a gateway sees (tokens in the header,
 * the query and the path; bad, expired, forged, oversized and conflicting tokens; 403, 404, 405,
 * 502, auth_test, a request Node's URL parsing refuses) while every log line is captured at debug
 * level. Then: no token, no token signature and no HMAC secret in any line, and exactly one access
 * line per request carrying the SPEC fields.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, TEST_ISSUER, TEST_SECRET, type TestGateway } from '../helpers/gateway.js';
import { craftToken, hsToken, unsecuredToken } from '../helpers/tokens.js';
import { closedPortUrl, startUpstream, type Upstream } from '../helpers/upstream.js';
import { rawRequest as raw, type RawResponse as Reply } from '../helpers/http.js';

const now = () => Math.floor(Date.now() / 1000);
let jtiCounter = 0;
function claims(over: Record<string, unknown> = {}) {
  return { iss: 'scopegate-test', aud: 'api', sub: 'log-subject', iat: now(), exp: now() + 600, jti: `log-jti-${++jtiCounter}`, client_type: 'user', scope: 'view_group view_room', ...over };
}

function config(upstream: string, dead: string): string {
  return `
realm: api
shutdown_timeout_ms: 2000
upstreams:
  default: { url: ${upstream}, timeout_ms: 2000, connect_timeout_ms: 500 }
  dead: { url: ${dead}, timeout_ms: 2000, connect_timeout_ms: 500 }
tokens:
  issuers:
${TEST_ISSUER}
      claims: { client_type: client_type, scopes: scope, room: room_id }
routes:
  - id: oauth-token
    path: /v2/oauth/token/{access_token}
    public: true
  - id: get-room
    path: /v2/room/{room_id_or_name}
    methods: [GET]
    scopes: [view_group, view_room]
    client_types: [group, room, user]
  - id: send-message
    path: /v2/room/{room_id_or_name}/message
    methods: [POST]
    scopes: [send_message]
    client_types: [user]
  - id: dead-end
    path: /v2/dead/{thing}
    methods: [GET]
    scopes: [view_group]
    client_types: [user]
    upstream: dead
`;
}


interface Case {
  name: string;
  method?: string;
  path: string;
  headers?: Record<string, string | string[]>;
  status: number;
  route: string;
  decision: string;
  reason?: string;
  /** The path as the access line must show it. */
  loggedPath: string;
  forwarded?: boolean;
  /** jti expected in token_id (authenticated requests). */
  tokenId?: string;
}

interface AccessLine {
  msg: string;
  level: number;
  request_id?: string;
  method?: string;
  path?: string;
  route?: string;
  status?: number;
  decision?: string;
  reason?: string;
  duration_ms?: number;
  upstream_ms?: number;
  token_id?: string;
  subject?: string;
  client_ip?: string;
}

let up: Upstream;
let gw: TestGateway;
const secrets: string[] = [];
const cases: Case[] = [];
const replies: Reply[] = [];

beforeAll(async () => {
  up = await startUpstream();
  gw = await startTestGateway(config(up.url, await closedPortUrl()));

  const sign = (c: Record<string, unknown>) => hsToken(TEST_SECRET, c);
  const good = claims();
  const header = await sign(good);
  const queryClaims = claims();
  const query = await sign(queryClaims);
  const inPath = await sign(claims());
  const expired = await sign(claims({ iat: now() - 7200, exp: now() - 3600 }));
  const forged = await hsToken('attacker-secret-0123456789abcdefghij', claims());
  const none = unsecuredToken(claims());
  const garbage = `garbage-${Math.random().toString(36).slice(2)}-token`;
  const oversized = await sign(claims({ padding: 'x'.repeat(9000) }));
  const conflictA = await sign(claims());
  const conflictB = await sign(claims());
  const scopeClaims = claims({ scope: 'send_notification' });
  const scope = await sign(scopeClaims);
  const groupClaims = claims({ client_type: 'group', scope: 'send_message' });
  const group = await sign(groupClaims);
  const testClaims = claims();
  const authTest = await sign(testClaims);
  const deadClaims = claims();
  const dead = await sign(deadClaims);
  const unknownRoute = await sign(claims());
  const badHost = await sign(claims());
  const malformed = craftToken({ alg: 'HS256' }, claims(), 'not-a-signature');
  secrets.push(header, query, inPath, expired, forged, none, garbage, oversized, conflictA, conflictB, scope, group, authTest, dead, unknownRoute, badHost, malformed);

  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });
  const R = '[REDACTED]';
  cases.push(
    { name: 'header token, allowed', path: '/v2/room/1', headers: bearer(header), status: 200, route: 'get-room', decision: 'allowed', loggedPath: '/v2/room/1', forwarded: true, tokenId: good.jti },
    { name: 'query token, allowed', path: `/v2/room/2?x=1&auth_token=${query}`, status: 200, route: 'get-room', decision: 'allowed', loggedPath: `/v2/room/2?x=1&auth_token=${R}`, forwarded: true, tokenId: queryClaims.jti },
    { name: 'token in the path of a public route', path: `/v2/oauth/token/${inPath}`, status: 200, route: 'oauth-token', decision: 'public', loggedPath: `/v2/oauth/token/${R}`, forwarded: true },
    { name: 'no token', path: '/v2/room/3', status: 401, route: 'get-room', decision: 'denied', reason: 'token_missing', loggedPath: '/v2/room/3' },
    { name: 'garbage token in the query', path: `/v2/room/4?auth_token=${garbage}`, status: 401, route: 'get-room', decision: 'denied', reason: 'token_malformed', loggedPath: `/v2/room/4?auth_token=${R}` },
    { name: 'expired token', path: '/v2/room/5', headers: bearer(expired), status: 401, route: 'get-room', decision: 'denied', reason: 'token_expired', loggedPath: '/v2/room/5' },
    { name: 'wrong signature', path: '/v2/room/6', headers: bearer(forged), status: 401, route: 'get-room', decision: 'denied', reason: 'signature_invalid', loggedPath: '/v2/room/6' },
    { name: 'token in a look-alike parameter', path: `/v2/room/6b?AUTH_TOKEN=${malformed}`, status: 400, route: 'get-room', decision: 'denied', reason: 'token_conflict', loggedPath: `/v2/room/6b?AUTH_TOKEN=${R}` },
    { name: 'alg none', path: '/v2/room/7', headers: bearer(none), status: 401, route: 'get-room', decision: 'denied', reason: 'algorithm_forbidden', loggedPath: '/v2/room/7' },
    { name: 'oversized token in the header', path: '/v2/room/8', headers: bearer(oversized), status: 401, route: 'get-room', decision: 'denied', reason: 'token_malformed', loggedPath: '/v2/room/8' },
    { name: 'oversized token in the query', path: `/v2/room/9?auth_token=${oversized}`, status: 401, route: 'get-room', decision: 'denied', reason: 'token_malformed', loggedPath: `/v2/room/9?auth_token=${R}` },
    { name: 'header and query tokens conflict', path: `/v2/room/10?auth_token=${conflictB}`, headers: bearer(conflictA), status: 400, route: 'get-room', decision: 'denied', reason: 'token_conflict', loggedPath: `/v2/room/10?auth_token=${R}` },
    { name: 'repeated Authorization header', path: '/v2/room/11', headers: { authorization: [`Bearer ${conflictA}`, `Bearer ${conflictB}`] }, status: 400, route: 'get-room', decision: 'denied', reason: 'token_conflict', loggedPath: '/v2/room/11' },
    { name: 'missing scope', path: '/v2/room/12', headers: bearer(scope), status: 403, route: 'get-room', decision: 'denied', reason: 'scope_insufficient', loggedPath: '/v2/room/12', tokenId: scopeClaims.jti },
    { name: 'client type not allowed', method: 'POST', path: '/v2/room/13/message', headers: bearer(group), status: 403, route: 'send-message', decision: 'denied', reason: 'client_type_forbidden', loggedPath: '/v2/room/13/message', tokenId: groupClaims.jti },
    { name: 'unknown route with a token', path: `/v2/unknown/${unknownRoute}`, headers: bearer(unknownRoute), status: 404, route: 'unmatched', decision: 'denied', reason: 'route_not_found', loggedPath: `/v2/unknown/${R}` },
    { name: 'known path, other method', method: 'DELETE', path: '/v2/room/14', headers: bearer(header), status: 405, route: 'unmatched', decision: 'denied', reason: 'method_not_allowed', loggedPath: '/v2/room/14' },
    // Forwarded, but the upstream refused: upstream_ms is still reported (the attempt).
    { name: 'upstream refused', path: '/v2/dead/15', headers: bearer(dead), status: 502, route: 'dead-end', decision: 'upstream_error', reason: 'upstream_unavailable', loggedPath: '/v2/dead/15', forwarded: true, tokenId: deadClaims.jti },
    { name: 'auth_test with a query token', path: `/v2/room/16?auth_test=true&auth_token=${authTest}`, status: 202, route: 'get-room', decision: 'auth_test', loggedPath: `/v2/room/16?auth_test=true&auth_token=${R}`, tokenId: testClaims.jti },
    { name: 'dot segment', path: `/v2/room/../room/17?auth_token=${header}`, status: 400, route: 'unmatched', decision: 'denied', reason: 'bad_request', loggedPath: `/v2/room/../room/17?auth_token=${R}` },
    // @hono/node-server refuses a bad Host before the pipeline runs; it is still a request.
    { name: 'invalid Host header', path: `/v2/room/18?auth_token=${badHost}`, headers: { host: 'bad host' }, status: 400, route: 'unmatched', decision: 'denied', reason: 'bad_request', loggedPath: `/v2/room/18?auth_token=${R}` },
  );

  for (const [i, c] of cases.entries()) {
    const reply = await raw(gw.url, c.method ?? 'GET', c.path, { 'x-request-id': `log-case-${i}`, ...c.headers });
    replies.push(reply);
  }
  // Every access line is written before the response completes; give the logger one tick anyway.
  await new Promise((r) => setImmediate(r));
});
afterAll(async () => {
  await gw?.close();
  await up?.close();
});

const accessLines = () => gw.logs.map((l) => JSON.parse(l) as AccessLine).filter((l) => l.msg === 'request');

describe('access logs (SPEC 6)', () => {
  it('answers every scripted request as expected', () => {
    const got = cases.map((c, i) => `${c.name}: ${replies[i]!.status}`);
    expect(got).toEqual(cases.map((c) => `${c.name}: ${c.status}`));
  });

  it('never writes a token, a token signature or the HMAC secret into any line', () => {
    expect(gw.logs.length).toBeGreaterThanOrEqual(cases.length);
    const needles = [TEST_SECRET, ...secrets, ...secrets.map((t) => t.split('.')[2]).filter((s): s is string => !!s && s.length >= 8)];
    const leaks = gw.logs.filter((line) => needles.some((n) => line.includes(n)));
    expect(leaks).toEqual([]);
  });

  it('writes exactly one access line per request, under the request id the client sent', () => {
    const ids = accessLines().map((l) => l.request_id);
    expect(ids.sort()).toEqual(cases.map((_, i) => `log-case-${i}`).sort());
  });

  it('carries the SPEC fields: method, redacted path, route, status, decision, reason, durations, identity, client ip', () => {
    const lines = accessLines();
    for (const [i, c] of cases.entries()) {
      const l = lines.find((x) => x.request_id === `log-case-${i}`);
      expect(l, c.name).toBeDefined();
      expect(
        { method: l!.method, path: l!.path, route: l!.route, status: l!.status, decision: l!.decision, reason: l!.reason, client_ip: l!.client_ip, token_id: l!.token_id },
        c.name,
      ).toEqual({ method: c.method ?? 'GET', path: c.loggedPath, route: c.route, status: c.status, decision: c.decision, reason: c.reason, client_ip: '127.0.0.1', token_id: c.tokenId });
      expect(typeof l!.duration_ms, c.name).toBe('number');
      expect(l!.duration_ms, c.name).toBeGreaterThanOrEqual(0);
      if (c.forwarded) expect(typeof l!.upstream_ms, c.name).toBe('number');
      else expect(l!.upstream_ms, c.name).toBeUndefined();
      if (c.tokenId) expect(l!.subject, c.name).toBe('log-subject');
    }
  });

  it('echoes the request id on every response, the refused Host included', () => {
    expect(replies.map((r, i) => `${cases[i]!.name}: ${String(r.headers['x-request-id'])}`)).toEqual(cases.map((c, i) => `${c.name}: log-case-${i}`));
  });
});
