/**
 * Shared set-up for tests that run the token service as real `scopegate serve` processes (dist/,
 * through test/helpers/process.ts): the gateway config (an ES256 issuer whose keys live in the
 * store, one API route to a real upstream), and the client side of the wire — RFC 6749 Basic,
 * issuing a client_credentials token, asking a gateway what it says about a token on the API
 * route, revoking (RFC 7009), and measuring how long until every gateway refuses a revoked token.
 * Used by revocation.test.ts, gateway-crash.test.ts and replicas.test.ts.
 *
 * @example
 *   const file = await dir.write('gw.yaml', processConfig({ upstream: up.url, store: schema.url }));
 *   const gw = await spawnGateway(file, { timeoutMs: 60_000 });
 *   const token = await issue(gw.url, client);
 *   expect(await verdict(gw.url, token)).toBe('');           // let through to the upstream
 *   await revokeAt(gw.url, client, token);
 *   await lagUntilRefused([gw.url], token, performance.now(), 5 * MAX_LAG_MS);
 */
import { expect } from 'vitest';
import { runCli, spawnGateway, type GatewayProcess, type Runtime } from '../helpers/process.js';
import { tempDir, type TempDir } from '../helpers/tokens.js';
import type { Upstream } from '../helpers/upstream.js';
import { STORE_ISSUER } from './harness.js';

/** revocation.max_lag_ms of processConfig's gateways. */
export const MAX_LAG_MS = 500;

/** The API route processConfig's gateways serve: GET /v2/room/{room_id_or_name}, scope view_group. */
export const ROOM_ROUTE = '/v2/room/';

/**
 * A gateway config with the token service on `store` (a directory or postgres://…): issuer `svc`
 * (ES256, keys generated into the store), revocation.max_lag_ms = MAX_LAG_MS, and one route
 * (GET /v2/room/{room_id_or_name}, view_group) to `upstream`. `tokenService` adds lines to the
 * token_service section (e.g. `password_grant: true`), indented by this function.
 */
export function processConfig(o: { upstream: string; store: string; tokenService?: string }): string {
  return `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
realm: api
shutdown_timeout_ms: 2000
upstreams:
  default: { url: "${o.upstream}", timeout_ms: 2000, connect_timeout_ms: 500 }
tokens:
  issuers:
${STORE_ISSUER}
token_service:
  issuer: svc
  store: "${o.store}"
  revocation: { max_lag_ms: ${MAX_LAG_MS} }
${(o.tokenService ?? '').replace(/^(?=.)/gm, '  ')}
routes:
  - id: get-room
    path: /v2/room/{room_id_or_name}
    methods: [GET]
    scopes: [view_group]
`;
}

/**
 * `scopegate clients create` on the store `file` names (the CLI opens the store itself): a group
 * client with scope view_group; `extra` adds options (e.g. `--group 7 --group-name Ops`).
 */
export async function createClient(file: string, name: string, extra: string[] = []): Promise<{ id: string; secret: string }> {
  const r = await runCli(['clients', 'create', '--config', file, '--name', name, '--client-type', 'group', '--scopes', 'view_group', ...extra, '--json']);
  expect(r.code, r.stderr).toBe(0);
  const j = JSON.parse(r.stdout) as { client_id: string; client_secret: string };
  return { id: j.client_id, secret: j.client_secret };
}

/** Gateways started by storeGateways, one per runtime, and what `prepare` returned for each. */
export interface StoreGateways<T> {
  doors: Map<Runtime, GatewayProcess>;
  prepared: Map<Runtime, T>;
  /** Stops every gateway and removes their directories. */
  close(): Promise<void>;
}

/**
 * One gateway per runtime, each with the token service on an embedded store in a directory of
 * its own (processConfig; `edit` rewrites the text). `prepare` runs on the config file before the
 * gateway starts, while nothing else holds the store (e.g. createClient).
 */
export async function storeGateways<T = undefined>(
  runtimes: readonly Runtime[],
  o: { upstream: string; edit?: (text: string) => string; prepare?: (file: string) => Promise<T> },
): Promise<StoreGateways<T>> {
  const doors = new Map<Runtime, GatewayProcess>();
  const prepared = new Map<Runtime, T>();
  const dirs: TempDir[] = [];
  await Promise.all(
    runtimes.map(async (r) => {
      const dir = await tempDir();
      dirs.push(dir);
      const text = processConfig({ upstream: o.upstream, store: `${dir.path}/store` });
      const file = await dir.write('gw.yaml', o.edit ? o.edit(text) : text);
      if (o.prepare) prepared.set(r, await o.prepare(file));
      // PGlite's first start (initdb) is slow on a busy machine.
      doors.set(r, await spawnGateway(file, { runtime: r, timeoutMs: 60_000 }));
    }),
  );
  return {
    doors,
    prepared,
    close: async () => {
      await Promise.all([...doors.values()].map((d) => d.kill()));
      await Promise.all(dirs.map((d) => d.cleanup()));
    },
  };
}

export const basicAuth = (id: string, secret: string) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;

/** A client_credentials access token from the standard dialect (asserts 200). */
export async function issue(gwUrl: string, c: { id: string; secret: string }): Promise<string> {
  const res = await fetch(`${gwUrl}/oauth/token`, { method: 'POST', headers: { authorization: basicAuth(c.id, c.secret), 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials' });
  expect(res.status).toBe(200);
  return ((await res.json()) as { access_token: string }).access_token;
}

/** The reason a gateway answers the token with on the API route ('' when it is let through). */
export async function verdict(gwUrl: string, token: string, room = '1'): Promise<string> {
  const res = await fetch(`${gwUrl}${ROOM_ROUTE}${encodeURIComponent(room)}`, { headers: { authorization: `Bearer ${token}` } });
  if (res.status === 200) {
    await res.body?.cancel();
    return '';
  }
  return ((await res.json()) as { error: { reason: string } }).error.reason;
}

let roomSeq = 0;

/**
 * Asserts that the gateway lets `token` through on the API route and that the upstream received
 * that very request (a room name used once), with `X-Auth-Subject: subject`.
 */
export async function expectLetThrough(up: Upstream, gwUrl: string, token: string, subject: string): Promise<void> {
  const room = `through-${process.pid}-${roomSeq++}`;
  expect(await verdict(gwUrl, token, room)).toBe('');
  const seen = up.requests.find((r) => r.url === `${ROOM_ROUTE}${room}`);
  expect(seen, `the upstream did not receive ${ROOM_ROUTE}${room}`).toBeDefined();
  expect(seen!.headers['x-auth-subject']).toBe(subject);
}

/** ms from `t0` until every gateway refuses the token with token_revoked (each polled every 5 ms). */
export async function lagUntilRefused(gwUrls: string[], token: string, t0: number, timeoutMs: number): Promise<number[]> {
  return Promise.all(
    gwUrls.map(async (u) => {
      for (;;) {
        const r = await verdict(u, token);
        if (r === 'token_revoked') return performance.now() - t0;
        expect(r).toBe('');
        if (performance.now() - t0 > timeoutMs) throw new Error(`${u} still accepts the revoked token after ${timeoutMs} ms`);
        await new Promise((res) => setTimeout(res, 5));
      }
    }),
  );
}

/** RFC 7009 revocation at one gateway (asserts 200). */
export async function revokeAt(gwUrl: string, c: { id: string; secret: string }, token: string): Promise<void> {
  const res = await fetch(`${gwUrl}/oauth/revoke`, { method: 'POST', headers: { authorization: basicAuth(c.id, c.secret), 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${token}` });
  expect(res.status).toBe(200);
}

/** The token endpoint's three dialects, by the path each one is served on. */
export type TokenDialect = 'hipchat' | 'livedigital' | 'standard';
const TOKEN_PATH: Readonly<Record<TokenDialect, string>> = { hipchat: '/v2/oauth/token', livedigital: '/v1/auth/token', standard: '/oauth/token' };

export interface TokenAnswer {
  status: number;
  body: Record<string, unknown>;
  /** The RFC 6749 error code of a refusal (HipChat's envelope: its `reason`), else undefined. */
  error: string | undefined;
}

/**
 * One token request in a dialect's wire form — HipChat and standard: Basic + form; livedigital:
 * JSON with client_id and client_secret in it. Resolves once the whole response has arrived;
 * rejects when none did (connection refused or reset, a body cut off, `timeoutMs` passed).
 */
export async function tokenRequest(
  gwUrl: string,
  dialect: TokenDialect,
  c: { id: string; secret: string },
  params: Record<string, string>,
  timeoutMs = 20_000,
): Promise<TokenAnswer> {
  const init: RequestInit =
    dialect === 'livedigital'
      ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...params, client_id: c.id, client_secret: c.secret }) }
      : { headers: { authorization: basicAuth(c.id, c.secret), 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(params).toString() };
  const res = await fetch(`${gwUrl}${TOKEN_PATH[dialect]}`, { ...init, method: 'POST', signal: AbortSignal.timeout(timeoutMs) });
  const body = JSON.parse(await res.text()) as Record<string, unknown>;
  const e = body['error'];
  const error = typeof e === 'string' ? e : e && typeof e === 'object' ? String((e as { reason?: unknown }).reason) : undefined;
  return { status: res.status, body, error };
}
