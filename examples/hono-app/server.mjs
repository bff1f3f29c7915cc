/**
 * A tiny Hono app behind scopegate (SPEC §8 "Hono middleware"). Runs on Node (with
 * @hono/node-server) or on Bun (Bun.serve), from the built package in dist/:
 *
 *   npm run build
 *   HONO_EXAMPLE_SECRET=change-me-0123456789abcdef node examples/hono-app/server.mjs
 *   HONO_EXAMPLE_SECRET=change-me-0123456789abcdef node_modules/.bin/bun examples/hono-app/server.mjs
 *
 * PORT (default 3000; 0 picks a free one) and HOST (default 127.0.0.1) choose the listener; the
 * first stdout line is JSON: {"msg":"hono-app listening","url":"http://127.0.0.1:3000"}.
 *
 * @example
 *   TOKEN=$(HONO_EXAMPLE_SECRET=… node examples/hono-app/mint.mjs --scopes view_room)
 *   curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/v2/room/42
 */
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import { scopegate } from '../../dist/doors/hono/index.js';

const configFile = process.env.SCOPEGATE_CONFIG ?? fileURLToPath(new URL('./scopegate.yaml', import.meta.url));
const app = new Hono();
let handled = 0;

app.get('/', (c) => c.text('scopegate Hono example: try /v2/capabilities and /v2/room/42\n'));
// How many times a /v2 handler ran: refusals and auth_test never get that far.
app.get('/handled', (c) => c.json({ handled }));

// Validated here, synchronously: a bad config stops the process before it listens.
const guard = scopegate({ configFile });
app.use('/v2/*', guard);

app.get('/v2/capabilities', (c) => {
  handled++;
  return c.json({ capabilities: { version: 'example' }, principal: c.get('scopegate') ?? null });
});
app.get('/v2/room/:room', (c) => {
  handled++;
  return c.json({ room: c.req.param('room'), principal: c.get('scopegate') });
});
app.post('/v2/room/:room/notification', (c) => {
  handled++;
  const p = c.get('scopegate');
  return c.body(null, 204, { 'x-notified-by': p?.subject ?? '' });
});

// Key files are parsed now, so a bad key also fails before the first request.
await guard.ready();

const port = Number(process.env.PORT ?? 3000);
const hostname = process.env.HOST ?? '127.0.0.1';
const announce = (p) =>
  process.stdout.write(`${JSON.stringify({ msg: 'hono-app listening', url: `http://${hostname}:${p}`, runtime: globalThis.Bun ? 'bun' : 'node' })}\n`);

if (globalThis.Bun) {
  const server = globalThis.Bun.serve({ fetch: app.fetch, port, hostname });
  announce(server.port);
  process.on('SIGTERM', () => server.stop().then(() => process.exit(0)));
} else {
  const { serve } = await import('@hono/node-server');
  const server = serve({ fetch: app.fetch, port, hostname }, (info) => announce(info.port));
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}
