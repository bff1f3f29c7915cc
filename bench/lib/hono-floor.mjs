// The floor under scopegate's design: Hono on @hono/node-server, one pass-through middleware
// around one handler (scopegate's `observe` + `pipeline` shape), forwarding with undici's
// Pool.dispatch straight into the Node response, exactly as src/proxy/forward.ts does, and
// nothing else: no token, no route table, no rate limit, no metrics, no access log.
// Whatever scopegate costs beyond this is its own per-request work.
//
// Runs as the shared rig's `gateway` contestant (its auth checks fail by design, the load runs):
//   GATEWAY_CMD='exec node /path/to/scopegate/bench/lib/hono-floor.mjs' ./run.sh gateway
// PORT and UPSTREAM_URL come from the environment.
import http from 'node:http';
import { getRequestListener } from '@hono/node-server';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import { Hono } from 'hono';
import { Pool } from 'undici';

const HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);
const pool = new Pool(process.env.UPSTREAM_URL, { connections: 128, keepAliveTimeout: 4_000 });

class Relay {
  constructor(res, done) {
    this.res = res;
    this.done = done;
  }
  onRequestStart(controller) {
    this.controller = controller;
  }
  onResponseStart(_c, status, headers) {
    const out = [];
    for (const k in headers) if (!HOP.has(k)) out.push(k, headers[k]);
    this.res.writeHead(status, out);
  }
  onResponseData(controller, chunk) {
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', () => controller.resume());
    }
  }
  onResponseEnd() {
    this.res.end();
    this.done();
  }
  onResponseError() {
    if (!this.res.headersSent) this.res.writeHead(502, { 'content-type': 'application/json' });
    this.res.end('{"error":"bad_gateway"}');
    this.done();
  }
}

const app = new Hono();
app.all(
  '*',
  async (_c, next) => {
    await next();
  },
  async (c) => {
    const req = c.env.incoming;
    const headers = {};
    for (const k in req.headers) if (!HOP.has(k)) headers[k] = req.headers[k];
    const body = req.method === 'GET' || req.method === 'HEAD' ? null : req;
    await new Promise((resolve) => pool.dispatch({ method: req.method, path: req.url, headers, body }, new Relay(c.env.outgoing, resolve)));
    return RESPONSE_ALREADY_SENT;
  },
);

const server = http.createServer(getRequestListener(app.fetch));
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
