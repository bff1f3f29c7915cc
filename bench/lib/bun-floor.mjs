// The floor under the Bun door: Bun.serve answering every request with Bun's fetch to the
// upstream (hop-by-hop headers dropped, body and response streamed, decompression off), and
// nothing else: no token, no route table, no rate limit, no metrics, no access log. Whatever the
// Bun door costs beyond this is scopegate's own per-request work.
//
// Runs as the shared rig's `gateway` contestant (its auth checks fail by design, the load runs):
//   GATEWAY_CMD='exec /path/to/scopegate/node_modules/.bin/bun /path/to/scopegate/bench/lib/bun-floor.mjs' ./run.sh gateway
// PORT and UPSTREAM_URL come from the environment.
/* global Bun */
const HOP = ['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host'];
const upstream = process.env.UPSTREAM_URL;

Bun.serve({
  hostname: process.env.HOST ?? '127.0.0.1',
  port: Number(process.env.PORT),
  async fetch(req) {
    const url = new URL(req.url);
    const headers = new Headers(req.headers);
    for (const h of HOP) headers.delete(h);
    const res = await fetch(upstream + url.pathname + url.search, {
      method: req.method,
      headers,
      body: req.method === 'GET' || req.method === 'HEAD' ? null : req.body,
      redirect: 'manual',
      decompress: false,
    });
    const out = new Headers(res.headers);
    for (const h of HOP) out.delete(h);
    return new Response(res.body, { status: res.status, headers: out });
  },
});
