// The Bun floor (bun-floor.mjs: Bun.serve + fetch, no work) with the Bun door's native-facing
// parts switched on one at a time, to find what the door pays for besides its own JS. Each part
// is what the door did or does per request:
//   ip      server.requestIP(req) (the access line's client_ip, X-Forwarded-For, trusted peers)
//   rec     request headers read into a record (buildUpstreamHeaders takes one) instead of a Headers copy
//   sig     an AbortController, a timer and an abort listener on req.signal, passed to fetch
//   sigA    only the AbortController's signal passed to fetch
//   sigT    only the timer; sigL only the listener; sigR req.signal passed to fetch as it is
//   duplex  duplex: 'half' (the door streams request bodies)
//   append  response headers read field by field and appended to a new Headers (the door before
//           d8e0b70) instead of a native copy minus hop-by-hop (the door now)
//   st      statusText passed through
//   ws      a websocket handler on the server; idle: idleTimeout; err: an error handler
//
// Runs as the shared rig's `gateway` contestant (its auth checks fail by design, the load runs):
//   GATEWAY_CMD='F=append exec /path/to/scopegate/node_modules/.bin/bun /path/to/scopegate/bench/lib/bun-floor-parts.mjs' ./run.sh gateway
// F is a comma-separated list of parts (empty: the plain floor). PORT and UPSTREAM_URL come from
// the environment. Measured 2026-12-02, one pinned core, 50 connections, alternating: the plain
// floor 26.6k req/s twice, `append` 19.4k / 19.6k (14 µs a request); the others within the VM's
// ±10 % noise of the floor (bench/RIG-RESULTS.md).
/* global Bun */
const HOP = ['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host'];
const upstream = process.env.UPSTREAM_URL;
const F = new Set((process.env.F ?? '').split(',').filter(Boolean));
const known = new Set(['ip', 'rec', 'sig', 'sigA', 'sigT', 'sigL', 'sigR', 'duplex', 'append', 'st', 'ws', 'idle', 'err']);
for (const f of F) if (!known.has(f)) throw new TypeError(`bun-floor-parts: unknown part "${f}"; known: ${[...known].join(', ')}`);

const opts = {
  hostname: process.env.HOST ?? '127.0.0.1',
  port: Number(process.env.PORT),
  development: false,
  async fetch(req, server) {
    if (F.has('ip')) server.requestIP(req);
    const url = req.url;
    const target = url.slice(url.indexOf('/', url.indexOf('//') + 2));
    let headers;
    if (F.has('rec')) {
      headers = {};
      req.headers.forEach((v, k) => {
        headers[k] = v;
      });
      for (const h of HOP) delete headers[h];
    } else {
      headers = new Headers(req.headers);
      for (const h of HOP) headers.delete(h);
    }
    const init = { method: req.method, headers, body: null, redirect: 'manual', decompress: false };
    let timer;
    let ac;
    if (F.has('sig')) {
      ac = new AbortController();
      timer = setTimeout(() => ac.abort('timeout'), 30000);
      req.signal.addEventListener('abort', () => ac.abort(req.signal.reason), { once: true });
      init.signal = ac.signal;
    }
    if (F.has('sigA')) {
      ac = new AbortController();
      init.signal = ac.signal;
    }
    if (F.has('sigT')) {
      const a = (ac ??= new AbortController());
      timer = setTimeout(() => a.abort('timeout'), 30000);
    }
    if (F.has('sigL')) {
      const a = ac ?? new AbortController();
      req.signal.addEventListener('abort', () => a.abort(), { once: true });
    }
    if (F.has('sigR')) init.signal = req.signal;
    if (F.has('duplex')) init.duplex = 'half';
    const res = await fetch(upstream + target, init);
    if (timer) clearTimeout(timer);
    let out;
    if (F.has('append')) {
      out = new Headers();
      res.headers.forEach((v, k) => {
        if (!HOP.includes(k)) out.append(k, v);
      });
      out.append('x-request-id', 'floor');
    } else {
      out = new Headers(res.headers);
      for (const h of HOP) out.delete(h);
      out.set('x-request-id', 'floor');
    }
    return new Response(res.body, { status: res.status, statusText: F.has('st') ? res.statusText : undefined, headers: out });
  },
};
if (F.has('ws')) opts.websocket = { open() {}, message() {}, close() {} };
if (F.has('idle')) opts.idleTimeout = 60;
if (F.has('err')) opts.error = () => new Response('floor error', { status: 500 });
Bun.serve(opts);
