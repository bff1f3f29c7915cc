/**
 * `npm run demo`: an example upstream (a tiny HipChat-like API that echoes who called it) and
 * scopegate in front of it on config/demo.yaml; prints tokens and curl commands to try.
 * Ports: DEMO_PORT (8080), DEMO_ADMIN_PORT (9090), DEMO_UPSTREAM_PORT (3000).
 */
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { mintToken } from './auth/mint.js';
import { runClients } from './commands/clients.js';
import { loadConfigFile } from './config/load.js';
import { createLogger } from './observability/logger.js';
import { startGateway } from './server.js';

const configFile = fileURLToPath(new URL('../config/demo.yaml', import.meta.url));
const upstreamPort = Number(process.env.DEMO_UPSTREAM_PORT ?? 3000);

function startExampleApi(): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const who = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('x-auth-')));
      if (req.method === 'POST' && /\/notification$/.test(req.url ?? '')) {
        res.writeHead(204).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ upstream: 'example-api', method: req.method, url: req.url, identity: who }, null, 2) + '\n');
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(upstreamPort, '127.0.0.1', () => resolve(server));
  });
}

async function main(): Promise<void> {
  const api = await startExampleApi();
  const loaded = await loadConfigFile(configFile);
  const issuer = loaded.config.tokens.issuers[0]!;
  const logger = createLogger({ level: process.env.LOG_LEVEL ?? 'warn' });
  const gw = await startGateway({ configFile, logger });
  const group = await mintToken(issuer, { kind: 'addon', sub: 'addon-1', group: '1', ttl: '1h', scopes: ['send_notification', 'view_group', 'view_room'] });
  const room = await mintToken(issuer, { kind: 'room-notification', sub: 'room-42-token', room: '42', roomName: 'ops', ttl: '365d' });
  const user = await mintToken(issuer, { kind: 'personal', sub: 'alice', scopes: ['view_room'], ttl: '365d' });
  const u = gw.url;
  const say = (s = '') => process.stdout.write(`${s}\n`);
  say(`scopegate demo: gateway ${u}  admin ${gw.adminUrl}  example API http://127.0.0.1:${upstreamPort}`);
  say();
  say(`GROUP=${group}`);
  say(`ROOM=${room}      # room notification token, bound to room 42 ("ops")`);
  say(`USER=${user}      # personal token with only view_room`);
  say();
  say('# 204: a room token sends a notification to its own room');
  say(`curl -i -X POST -H "Authorization: Bearer $ROOM" ${u}/v2/room/42/notification -d '{"message":"hi"}'`);
  say('# 200: a group token reads a room (token in the query, as HipChat allowed)');
  say(`curl -i "${u}/v2/room/42?auth_token=$GROUP"`);
  say('# 401: no token');
  say(`curl -i ${u}/v2/room/42`);
  say('# 403 scope_insufficient: the user token lacks view_group');
  say(`curl -i -H "Authorization: Bearer $USER" ${u}/v2/user/alice`);
  say('# 403 room_forbidden: the room token on another room');
  say(`curl -i -X POST -H "Authorization: Bearer $ROOM" ${u}/v2/room/7/notification`);
  say('# 202: auth_test answers without calling the API');
  say(`curl -i -X POST "${u}/v2/room/42/notification?auth_test=true&auth_token=$ROOM"`);
  const addon = await registerDemoClient(configFile);
  say();
  say('# The token service: an add-on client was registered (scopegate clients create); get its token');
  say('# by client_credentials, HipChat style (Basic + form), then use it:');
  say(`CLIENT_ID=${addon.clientId}`);
  say(`CLIENT_SECRET=${addon.secret}`);
  say(`ADDON=$(curl -s -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials ${u}/v2/oauth/token | sed -E 's/.*"access_token":"([^"]+)".*/\\1/')`);
  say(`curl -i -X POST -H "Authorization: Bearer $ADDON" ${u}/v2/room/42/notification -d '{"message":"from an add-on"}'`);
  say(`curl -s ${u}/.well-known/oauth-authorization-server   # RFC 8414 metadata; keys at /.well-known/jwks.json`);
  say('# metrics');
  say(`curl -s ${gw.adminUrl}/metrics | grep scopegate_requests_total`);
  say();
  say('Ctrl-C stops the demo.');
  const stop = () => {
    void gw.shutdown().finally(() => api.close(() => process.exit(0)));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

/**
 * Registers the demo's add-on client with the same command operators use (`scopegate clients
 * create`), through the running gateway's store; an earlier run's demo client is deleted first.
 */
async function registerDemoClient(file: string): Promise<{ clientId: string; secret: string }> {
  const run = async (args: string[]): Promise<string> => {
    let out = '';
    let err = '';
    const code = await runClients(args, { stdout: (t) => void (out += t), stderr: (t) => void (err += t), env: process.env });
    if (code !== 0) throw new Error(`clients ${args[0]}: ${err.trim()}`);
    return out;
  };
  const listed = JSON.parse(await run(['list', '--config', file, '--json'])) as { clients: Array<{ client_id: string; name: string }> };
  for (const c of listed.clients) if (c.name === 'demo-addon') await run(['delete', c.client_id, '--config', file]);
  const created = JSON.parse(
    await run(['create', '--config', file, '--name', 'demo-addon', '--client-type', 'group', '--scopes', 'send_notification view_room view_group', '--group', '1', '--group-name', 'Demo', '--json']),
  ) as { client_id: string; client_secret: string };
  return { clientId: created.client_id, secret: created.client_secret };
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${(err as Error).message}\n`);
  process.exit(1);
});
