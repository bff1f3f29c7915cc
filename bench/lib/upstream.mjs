// Upstream for the bench: node:http answering {"ok":true} to every request, keep-alive.
// Runs in its own process (pinned to the load cpu by run.mjs). PORT from env.
import http from 'node:http';

const body = Buffer.from('{"ok":true}');
const server = http.createServer((req, res) => {
  // Drain any request body so keep-alive connections stay reusable.
  req.resume();
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => process.exit(0));
