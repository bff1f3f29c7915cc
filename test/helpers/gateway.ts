/**
 * Starts the real gateway (real listeners on 127.0.0.1:0, fresh metrics registry) from YAML text,
 * with every log line captured so tests can assert what was (and was not) logged.
 *
 * @example
 *   const gw = await startTestGateway(configYaml({ upstream: up.url }));
 *   const res = await fetch(`${gw.url}/v2/room/42`, { headers: { authorization: `Bearer ${t}` } });
 *   await gw.close();
 */
import { Writable } from 'node:stream';
import { loadConfigText, type LoadedConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { startGateway, type RunningGateway, type StartOptions } from '../../src/server.js';

export interface TestGateway extends RunningGateway {
  logs: string[];
  loaded: LoadedConfig;
  close(): Promise<void>;
}

export async function startTestGateway(
  yamlText: string,
  opts: { env?: Record<string, string | undefined>; clock?: StartOptions['clock']; admin?: boolean } = {},
): Promise<TestGateway> {
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  const loaded = loadConfigText(yamlText, { env: opts.env ?? {} });
  const logger = createLogger({ level: 'debug', destination: sink });
  const gw = await startGateway({
    loaded,
    logger,
    listen: { host: '127.0.0.1', port: 0 },
    admin: opts.admin === false ? false : { host: '127.0.0.1', port: 0 },
    ...(opts.clock ? { clock: opts.clock } : {}),
  });
  return Object.assign(gw, { logs, loaded, close: () => gw.shutdown() });
}

export const TEST_SECRET = 'test-secret-0123456789abcdef-0123456789';

/**
 * The `local` HS256 issuer that tokens minted with TEST_SECRET (iss scopegate-test, aud api)
 * verify against, as one item of `tokens.issuers` (list-item indentation). A fixture may add
 * keys of its own (claims, max_token_age_s) on the lines after it, indented six spaces.
 */
export const TEST_ISSUER = `    - name: local
      issuer: scopegate-test
      audience: api
      algorithms: [HS256]
      secrets: ["${TEST_SECRET}"]`;

/** A config with one HS256 issuer (TEST_SECRET) and the SPEC example routes, for most tests. */
export function baseConfig(o: { upstream: string; extra?: string; rateLimit?: string; tokens?: string; routes?: string }): string {
  return `
realm: api
shutdown_timeout_ms: 2000
upstreams:
  default: { url: ${o.upstream}, timeout_ms: 2000, connect_timeout_ms: 500 }
tokens:
${o.tokens ?? ''}
  issuers:
${TEST_ISSUER}
      claims: { client_type: client_type, scopes: scope, room: room_id, room_name: room_name }
${o.rateLimit ?? ''}
${o.extra ?? ''}
routes:
${
  o.routes ??
  `  - path: /v2/capabilities
    public: true
  - id: send-room-notification
    path: /v2/room/{room_id_or_name}/notification
    methods: [POST]
    scopes: [send_notification]
    client_types: [group, room, user]
    room_param: room_id_or_name
  - id: get-room
    path: /v2/room/{room_id_or_name}
    methods: [GET]
    scopes: [view_group, view_room]
    client_types: [group, room, user]
    room_param: room_id_or_name
  - id: get-all-rooms
    path: /v2/room
    methods: [GET]
    scopes: [view_group, view_room]
    client_types: [group, user]
  - id: send-message
    path: /v2/room/{room_id_or_name}/message
    methods: [POST]
    scopes: [send_message]
    client_types: [user]
  - id: history
    path: /v2/room/{room_id_or_name}/history
    methods: [GET]
    scopes: [view_messages]
    client_types: [oauth]
    room_param: room_id_or_name
  - id: view-user
    path: /v2/user/{id_or_email}
    methods: [GET]
    scopes: [view_group]
    client_types: [group, user]
  - id: admin
    path: /v2/admin/*
    scopes_all: [admin_group, view_group]
    client_types: [user]`
}
`;
}
