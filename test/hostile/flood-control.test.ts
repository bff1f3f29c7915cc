/**
 * Hostile: dodging flood control (SPEC §4) through the real gateway, a real upstream and real
 * tokens. The attack is to address one room under many spellings, so that each spelling gets a
 * fresh flood window: `042`, `0042`, `+42`, `42.0`, `%34%32` for room 42, or a room token's
 * room id and its room's name. The defence keys the recipient canonically; every test counts
 * what the upstream actually received.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { baseConfig, startTestGateway, TEST_SECRET, type TestGateway } from '../helpers/gateway.js';
import { rawRequest } from '../helpers/http.js';
import { hsToken, testClock } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

// Aligned to the 60 s flood window and the 300 s default window.
const T0 = Date.UTC(2030, 0, 1);
const clock = testClock(T0 + 1_000);

const FLOOD_LIMIT = 3;
const ROUTES = `  - id: send-room-notification
    path: /v2/room/{room_id_or_name}/notification
    methods: [POST]
    scopes: [send_notification]
    client_types: [group, room, user]
    room_param: room_id_or_name
    flood_control: { limit: ${FLOOD_LIMIT}, window_s: 60, param: room_id_or_name }
  - id: send-message
    path: /v2/room/{room_id_or_name}/message
    methods: [POST]
    scopes: [send_message]
    client_types: [user]
    flood_control: { limit: ${FLOOD_LIMIT}, window_s: 60, param: room_id_or_name }`;

const RATE_LIMIT = `rate_limit:
  store: memory
  default: { limit: 1000, window_s: 300 }`;

let seq = 0;
function mint(claims: Record<string, unknown>): Promise<string> {
  const iat = Math.floor(clock() / 1000);
  return hsToken(TEST_SECRET, {
    iss: 'scopegate-test',
    aud: 'api',
    sub: 'mallory',
    iat,
    exp: iat + 3_600,
    jti: `flood-${++seq}-${Math.random().toString(36).slice(2, 8)}`,
    ...claims,
  });
}

describe('flood control cannot be dodged by spelling the recipient differently', () => {
  let upstream: Upstream;
  let gw: TestGateway;

  beforeAll(async () => {
    upstream = await startUpstream();
    gw = await startTestGateway(baseConfig({ upstream: upstream.url, rateLimit: RATE_LIMIT, routes: ROUTES }), { clock, admin: false });
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });
  beforeEach(() => {
    upstream.requests.length = 0;
  });

  const post = (path: string, token: string) => rawRequest(gw.url, 'POST', path, { authorization: `Bearer ${token}`, 'content-length': '0' });

  /** Sends one request per path; returns the statuses and the paths the upstream received. */
  async function send(paths: string[], token: string) {
    const statuses: number[] = [];
    const reasons: Array<string | undefined> = [];
    for (const p of paths) {
      const r = await post(p, token);
      statuses.push(r.status);
      reasons.push(r.status === 429 ? (JSON.parse(r.body) as { error: { reason: string } }).error.reason : undefined);
    }
    return { statuses, reasons, forwarded: upstream.requests.map((r) => r.url) };
  }

  it('gives 042, 0042, +42, 42.0 and %34%32 the one flood window of room 42', async () => {
    const user = await mint({ client_type: 'user', scope: 'send_notification' });
    const spellings = ['042', '0042', '+42', '42.0', '%34%32', '42'];
    const paths = spellings.map((s) => `/v2/room/${s}/notification`);
    const { statuses, reasons, forwarded } = await send(paths, user);
    expect(statuses).toEqual([200, 200, 200, 429, 429, 429]);
    expect(reasons.slice(FLOOD_LIMIT)).toEqual(['flood_limited', 'flood_limited', 'flood_limited']);
    // Only the first three reached the upstream, byte for byte as sent.
    expect(forwarded).toEqual(paths.slice(0, FLOOD_LIMIT));
    // Room 43 has its own window.
    expect((await post('/v2/room/43/notification', user)).status).toBe(200);
  });

  it('counts every spelling against the window the plain id already used up, on a route without room binding', async () => {
    const user = await mint({ client_type: 'user', scope: 'send_message' });
    const { statuses, forwarded } = await send(
      ['/v2/room/7/message', '/v2/room/7/message', '/v2/room/7/message', '/v2/room/007/message', '/v2/room/7.00/message', '/v2/room/%2B7/message'],
      user,
    );
    expect(statuses).toEqual([200, 200, 200, 429, 429, 429]);
    expect(forwarded).toHaveLength(FLOOD_LIMIT);
  });

  it("spends one window for a room token whether it names its room by id or by name", async () => {
    const room = await mint({ client_type: 'room', scope: 'send_notification', room_id: '42', room_name: 'ops' });
    const paths = ['/v2/room/42/notification', '/v2/room/ops/notification', '/v2/room/42/notification', '/v2/room/ops/notification', '/v2/room/42/notification'];
    const { statuses, reasons, forwarded } = await send(paths, room);
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
    expect(reasons.slice(FLOOD_LIMIT)).toEqual(['flood_limited', 'flood_limited']);
    expect(forwarded).toEqual(paths.slice(0, FLOOD_LIMIT));
  });

  it('keeps a room token bound by a numeric room claim on one window for its room name and its id', async () => {
    const room = await mint({ client_type: 'room', scope: 'send_notification', room_id: 42, room_name: 'ops' });
    const { statuses, forwarded } = await send(
      ['/v2/room/ops/notification', '/v2/room/ops/notification', '/v2/room/ops/notification', '/v2/room/42/notification'],
      room,
    );
    expect(statuses).toEqual([200, 200, 200, 429]);
    expect(forwarded).toHaveLength(FLOOD_LIMIT);
  });

  it('does not merge genuinely different recipients: 42, -42, 42.5 and a name each have a window', async () => {
    const user = await mint({ client_type: 'user', scope: 'send_notification' });
    const paths = ['42', '-42', '42.5', 'ops', '42abc'].map((r) => `/v2/room/${r}/notification`);
    const { statuses, forwarded } = await send(paths, user);
    expect(statuses).toEqual([200, 200, 200, 200, 200]);
    expect(forwarded).toEqual(paths);
  });
});
