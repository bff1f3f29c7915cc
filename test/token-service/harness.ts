/**
 * Runs the real token service on a real socket, on a real embedded store in a temp dir, until the
 * lead wires it into the gateway: `@hono/node-server` serves `service.handle` on 127.0.0.1:0. Every
 * log line is captured; `verifier()` builds the gateway's own token verifier for the service's
 * issuer, with the JWKS fetched from the service's /.well-known/jwks.json written into a
 * jwks_file (the key source the gateway needs for store keys), so tests prove the gateway accepts
 * what the service issues.
 *
 * @example
 *   const h = await startService(serviceConfig({ tokenService: 'password_grant: true' }));
 *   const c = await h.createClient({ clientType: 'group', scopes: ['send_notification'], groupId: '1' });
 *   const res = await fetch(`${h.url}/oauth/token`, { method: 'POST', headers: { authorization: basic(c.id, c.secret) }, body: … });
 *   const principal = await (await h.verifier()).verify(token);
 *   await h.close();
 */
import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { serve } from '@hono/node-server';
import { loadConfigText, type LoadedConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { createMetrics, type Metrics } from '../../src/observability/metrics.js';
import { createTokenVerifier, type TokenVerifier } from '../../src/auth/verify-token.js';
import { createTokenService, type TokenService, type TokenServiceDeps } from '../../src/token-service/service.js';
import { hashSecret, newId, newSecret } from '../../src/token-service/secrets.js';
import { openEmbeddedStore } from '../../src/token-service/store/embedded.js';
import type { ClientRecord, TokenStore } from '../../src/token-service/store.js';
import { TEST_ISSUER } from '../helpers/gateway.js';
import { tempDir, type TempDir } from '../helpers/tokens.js';
import type { Clock } from '../../src/types.js';

/** The ES256 issuer whose keys the service generates into its store (no key source). */
export const STORE_ISSUER = `    - name: svc
      issuer: https://auth.scopegate.test
      audience: api
      algorithms: [ES256]`;

/**
 * A gateway config with the token service on. `issuer: 'local'` uses TEST_ISSUER (HS256 with
 * TEST_SECRET) alone; the default `svc` (beside `local`) signs with the store's ES256 keys.
 */
export function serviceConfig(o: { issuer?: 'svc' | 'local'; tokenService?: string; routes?: string } = {}): string {
  const issuer = o.issuer ?? 'svc';
  return `
realm: api
upstreams:
  default: { url: http://127.0.0.1:9 }
tokens:
  issuers:
${issuer === 'svc' ? STORE_ISSUER : ''}
${TEST_ISSUER}
token_service:
  issuer: ${issuer}
  store: STORE_DIR
${(o.tokenService ?? '').replace(/^/gm, '  ')}
routes:
${
  o.routes ??
  `  - path: /v2/room/{room}/notification
    methods: [POST]
    scopes: [send_notification]
    room_param: room
  - path: /v2/room
    methods: [GET]
    scopes: [view_group, view_room]
  - path: /v2/admin/*
    scopes_all: [admin_group, view_group]`
}
`;
}

export interface ServiceHarness {
  url: string;
  store: TokenStore;
  service: TokenService;
  metrics: Metrics;
  logs: string[];
  loaded: LoadedConfig;
  dir: TempDir;
  /** Adds a client to the store; returns its id and the secret (shown once, as the CLI would). */
  createClient(o: Partial<Omit<ClientRecord, 'secretHash'>> & Pick<ClientRecord, 'clientType' | 'scopes'>): Promise<{ id: string; secret: string; record: ClientRecord }>;
  addUser(username: string, password: string, scopes: string[], groupId?: string): Promise<void>;
  /** The gateway's verifier for this config, keys as the service publishes them. */
  verifier(): Promise<TokenVerifier>;
  /** The value of one counter series, 0 when absent. */
  counter(name: string, labels?: Record<string, string>): Promise<number>;
  close(): Promise<void>;
}

export async function startService(
  yamlText: string,
  opts: { clock?: Clock; endpoint?: TokenServiceDeps['endpoint']; store?: TokenStore; dir?: TempDir } = {},
): Promise<ServiceHarness> {
  const dir = opts.dir ?? (await tempDir());
  const loaded = loadConfigText(yamlText.replace('STORE_DIR', dir.path), { env: {}, baseDir: dir.path });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  const logger = createLogger({ level: 'debug', destination: sink });
  const metrics = createMetrics({ processMetrics: false });
  const clock = opts.clock ?? Date.now;
  const store = opts.store ?? (await openEmbeddedStore(`${dir.path}/store`, { control: false, metrics }));
  const service = await createTokenService(loaded, { store, clock, logger, metrics, purgeIntervalMs: 0, endpoint: opts.endpoint });
  const server = serve({
    fetch: (req, env) => {
      const incoming = (env as { incoming: IncomingMessage }).incoming;
      return service.handle(req, { clientIp: incoming.socket.remoteAddress ?? '', proto: 'http', host: req.headers.get('host') ?? undefined });
    },
    hostname: '127.0.0.1',
    port: 0,
  });
  await new Promise<void>((resolve) => (server.listening ? resolve() : server.once('listening', () => resolve())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url,
    store,
    service,
    metrics,
    logs,
    loaded,
    dir,
    async createClient(o) {
      const secret = newSecret();
      const record: ClientRecord = { id: newId('cl'), name: 'test client', createdAt: clock(), ...o, secretHash: await hashSecret(secret) };
      await store.createClient(record);
      return { id: record.id, secret, record };
    },
    async addUser(username, password, scopes, groupId) {
      await store.putUser({ username, passwordHash: await hashSecret(password), scopes, groupId, createdAt: clock() });
    },
    async verifier() {
      const jwks = await (await fetch(`${url}/.well-known/jwks.json`)).text();
      const file = await dir.write(`jwks-${newId()}.json`, jwks);
      const tokens = loaded.config.tokens;
      const issuers = tokens.issuers.map((i) =>
        i.secrets || i.private_key_file || i.public_key_file || i.jwks_file || i.jwks_url ? i : { ...i, jwks_file: file },
      );
      return createTokenVerifier({ ...tokens, cache: { ...tokens.cache, max_entries: 0 }, issuers }, { clock, baseDir: dir.path });
    },
    async counter(name, labels = {}) {
      const m = await metrics.registry.getSingleMetric(name)?.get();
      const hit = m?.values.find((v) => Object.entries(labels).every(([k, val]) => (v.labels as Record<string, unknown>)[k] === val));
      return hit?.value ?? 0;
    },
    async close() {
      const closing = new Promise<void>((resolve) => server.close(() => resolve()));
      (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
      await closing;
      await service.close();
      if (!opts.store) await store.close();
      if (!opts.dir) await dir.cleanup();
    },
  };
}

/** `Authorization: Basic` as RFC 6749 §2.3.1 clients write it (form-urlencoded id and secret). */
export function basic(id: string, secret: string): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}

/** The payload of a JWT, decoded without verification (for asserting claim names). */
export function jwtPayload(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
}
