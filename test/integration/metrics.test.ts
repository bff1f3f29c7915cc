/**
 * SPEC §6 metrics through real sockets: a scripted mix of requests (allowed, public, auth_test,
 * 401s, 403, 404, 502) against the real gateway, then one scrape of the admin `/metrics`. Counters
 * are asserted to their exact values, and every label value of the whole exposition is checked
 * against the raw paths, tokens and subjects the script used: none may appear.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, TEST_ISSUER, TEST_SECRET, type TestGateway } from '../helpers/gateway.js';
import { hsToken } from '../helpers/tokens.js';
import { closedPortUrl, startUpstream, type Upstream } from '../helpers/upstream.js';
import { VERSION } from '../../src/version.js';
import { rawRequest } from '../helpers/http.js';

const now = () => Math.floor(Date.now() / 1000);
const SUBJECTS = { alice: 'alice-subject-7f3a91', bob: 'bob-subject-c2d8e4', old: 'expired-subject-5b6e0f' };

function claims(over: Record<string, unknown> = {}) {
  return { iss: 'scopegate-test', aud: 'api', sub: SUBJECTS.alice, iat: now(), exp: now() + 600, jti: `m-${Math.random()}`, client_type: 'user', scope: 'view_group view_room', ...over };
}
const mint = (over: Record<string, unknown> = {}) => hsToken(TEST_SECRET, claims(over));

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
  - id: capabilities
    path: /v2/capabilities
    public: true
  - path: /v2/oauth/token/{access_token}
    public: true
  - id: get-room
    path: /v2/room/{room_id_or_name}
    methods: [GET]
    scopes: [view_group, view_room]
    client_types: [group, room, user]
  - id: dead-end
    path: /v2/dead/{thing}
    methods: [GET]
    scopes: [view_group]
    client_types: [user]
    upstream: dead
`;
}


interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition (0.0.4) into samples; label values are unescaped. */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? '';
    const labelRe = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/gy;
    let lm: RegExpExecArray | null;
    let consumed = 0;
    while ((lm = labelRe.exec(body)) !== null) {
      labels[lm[1]!] = lm[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
      consumed = labelRe.lastIndex;
    }
    if (consumed !== body.length) throw new Error(`unparsable labels in: ${line}`);
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** The series of `name` as `{ 'k=v,k=v': value }`, label keys sorted (only the keys in `keys`). */
function series(samples: Sample[], name: string, keys: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples.filter((x) => x.name === name)) {
    const key = keys.map((k) => `${k}=${s.labels[k] ?? ''}`).join(',');
    out[key] = (out[key] ?? 0) + s.value;
  }
  return out;
}

let up: Upstream;
let gw: TestGateway;
let samples: Sample[];
let exposition: string;
const tokens: string[] = [];
const paths: string[] = [];

beforeAll(async () => {
  up = await startUpstream();
  gw = await startTestGateway(config(up.url, await closedPortUrl()));

  const alice = await mint();
  const bob = await mint({ sub: SUBJECTS.bob, scope: 'send_notification' });
  const expired = await mint({ sub: SUBJECTS.old, iat: now() - 7200, exp: now() - 3600 });
  const inPath = await mint({ sub: SUBJECTS.bob });
  tokens.push(alice, bob, expired, inPath);
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

  const script: Array<[string, Record<string, string>, number]> = [
    ['/v2/room/alpha-room-1', bearer(alice), 200], // allowed, token cache miss
    [`/v2/room/alpha-room-2`, bearer(alice), 200], // allowed, hit
    [`/v2/oauth/token/${inPath}`, {}, 200], // public, token in the path
    ['/v2/room/alpha-room-3?auth_test=true', bearer(alice), 202], // auth_test, hit
    ['/v2/room/beta-room-9', {}, 401], // token_missing
    ['/v2/room/gamma-room-4', bearer(expired), 401], // token_expired, miss
    ['/v2/room/delta-room-5', bearer(bob), 403], // scope_insufficient, miss
    ['/v2/nowhere/epsilon-unknown-6', {}, 404], // route_not_found
    ['/v2/dead/zeta-refused-7', bearer(alice), 502], // upstream refused, hit
  ];
  for (const [path, headers, want] of script) {
    paths.push(path.split('?')[0]!);
    const res = await raw(gw.url, path, headers);
    expect(res.status, `${path}: ${res.body}`).toBe(want);
  }

  const res = await fetch(`${gw.adminUrl}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  exposition = await res.text();
  samples = parseExposition(exposition);
});
afterAll(async () => {
  await gw?.close();
  await up?.close();
});

const raw = (base: string, path: string, headers: Record<string, string> = {}) => rawRequest(base, 'GET', path, headers);

describe('Prometheus metrics after a scripted request mix (SPEC 6)', () => {
  it('counts every request by route id, method, status and decision', () => {
    expect(series(samples, 'scopegate_requests_total', ['route', 'method', 'status', 'decision'])).toEqual({
      'route=get-room,method=GET,status=200,decision=allowed': 2,
      'route=/v2/oauth/token/{access_token},method=GET,status=200,decision=public': 1,
      'route=get-room,method=GET,status=202,decision=auth_test': 1,
      'route=get-room,method=GET,status=401,decision=denied': 2,
      'route=get-room,method=GET,status=403,decision=denied': 1,
      'route=unmatched,method=GET,status=404,decision=denied': 1,
      'route=dead-end,method=GET,status=502,decision=upstream_error': 1,
    });
  });

  it('counts refusals by reason code, and upstream failures only in their own counter', () => {
    expect(series(samples, 'scopegate_auth_failures_total', ['reason'])).toEqual({
      'reason=token_missing': 1,
      'reason=token_expired': 1,
      'reason=scope_insufficient': 1,
      'reason=route_not_found': 1,
    });
    expect(series(samples, 'scopegate_upstream_errors_total', ['route', 'upstream', 'reason'])).toEqual({
      'route=dead-end,upstream=dead,reason=upstream_unavailable': 1,
    });
  });

  it('counts token cache lookups: one miss per distinct token verified, hits for the reuses', () => {
    // alice: miss, hit, hit (auth_test), hit (502); expired: miss; bob: miss. No lookup without a token.
    expect(series(samples, 'scopegate_token_cache_total', ['result'])).toEqual({ 'result=hit': 3, 'result=miss': 3, 'result=disabled': 0 });
  });

  it('observes one request duration per request and one upstream duration per upstream answer', () => {
    expect(series(samples, 'scopegate_request_duration_seconds_count', ['route', 'decision'])).toEqual({
      'route=get-room,decision=allowed': 2,
      'route=/v2/oauth/token/{access_token},decision=public': 1,
      'route=get-room,decision=auth_test': 1,
      'route=get-room,decision=denied': 3,
      'route=unmatched,decision=denied': 1,
      'route=dead-end,decision=upstream_error': 1,
    });
    const upstream = series(samples, 'scopegate_upstream_duration_seconds_count', ['route', 'upstream']);
    expect(upstream['route=get-room,upstream=default']).toBe(2);
    expect(upstream['route=/v2/oauth/token/{access_token},upstream=default']).toBe(1);
    // The +Inf bucket equals the count (the histogram is well formed).
    const inf = samples.find((s) => s.name === 'scopegate_request_duration_seconds_bucket' && s.labels['route'] === 'get-room' && s.labels['decision'] === 'denied' && s.labels['le'] === '+Inf');
    expect(inf?.value).toBe(3);
  });

  it('reports no request in flight once all have finished, the build version and zero reloads', () => {
    expect(series(samples, 'scopegate_inflight_requests', [])).toEqual({ '': 0 });
    expect(series(samples, 'scopegate_build_info', ['version'])).toEqual({ [`version=${VERSION}`]: 1 });
    expect(series(samples, 'scopegate_config_reloads_total', ['result'])).toEqual({ 'result=success': 0, 'result=error': 0 });
    // Node process metrics ride along on the same registry.
    expect(samples.some((s) => s.name === 'process_cpu_user_seconds_total')).toBe(true);
  });

  it('never uses a raw request path, a token or a subject as a label value', () => {
    const labelValues = samples.flatMap((s) => Object.values(s.labels));
    expect(labelValues.length).toBeGreaterThan(20);
    const forbidden = [...tokens, ...tokens.map((t) => t.split('.')[2]!), ...Object.values(SUBJECTS), ...paths];
    const leaks = labelValues.filter((v) => forbidden.some((f) => v.includes(f)));
    expect(leaks).toEqual([]);
    // Belt and braces: nothing secret anywhere in the text, label or not.
    for (const f of [...tokens, ...Object.values(SUBJECTS), TEST_SECRET]) expect(exposition).not.toContain(f);
    for (const p of paths) expect(exposition).not.toContain(p);
  });
});
