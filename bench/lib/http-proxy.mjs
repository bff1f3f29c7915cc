// Contestant `http-proxy`: bare http-proxy in a node:http server with a keep-alive agent, no auth.
// The Node floor the spec compares undici forwarding against. PORT and UPSTREAM_URL from env.
import http from 'node:http';
import httpProxy from 'http-proxy';

const agent = new http.Agent({ keepAlive: true, maxSockets: 128 });
const proxy = httpProxy.createProxyServer({ target: process.env.UPSTREAM_URL, agent, xfwd: false });
proxy.on('error', (_err, _req, res) => {
  // res is a ServerResponse for HTTP requests; never let a socket error kill the process.
  if (res && 'writeHead' in res && !res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
  res?.end?.('{"error":"bad_gateway"}');
});
const server = http.createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 65_000;
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => process.exit(0));
