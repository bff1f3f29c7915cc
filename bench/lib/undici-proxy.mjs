// Contestant `undici`: bare undici Pool.stream forwarding in a node:http server, keep-alive, no auth.
// Same shape as shared/bench/contestants/node-undici-proxy.mjs. PORT and UPSTREAM_URL from env.
import http from 'node:http';
import { Pool } from 'undici';

const HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);
const pool = new Pool(process.env.UPSTREAM_URL, { connections: 128, keepAliveTimeout: 60_000 });

const server = http.createServer((req, res) => {
  const headers = {};
  for (const [k, v] of Object.entries(req.headers)) if (!HOP.has(k)) headers[k] = v;
  const body = req.method === 'GET' || req.method === 'HEAD' ? null : req;
  pool.stream(
    { method: req.method, path: req.url, headers, body, opaque: res },
    ({ statusCode, headers: h, opaque }) => {
      for (const k of Object.keys(h)) if (HOP.has(k)) delete h[k];
      opaque.writeHead(statusCode, h);
      return opaque;
    },
    (err) => {
      if (!err) return;
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
      res.end('{"error":"bad_gateway"}');
    },
  );
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => process.exit(0));
