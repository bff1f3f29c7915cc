/**
 * Mints a token the example accepts (HS256 with $HONO_EXAMPLE_SECRET, iss hono-example, aud api),
 * for trying the example with curl. Prints only the token.
 *
 * @example
 *   HONO_EXAMPLE_SECRET=change-me-0123456789abcdef node examples/hono-app/mint.mjs --sub alice --scopes "view_room send_notification"
 *   … mint.mjs --client-type room --room 42 --scopes send_notification   # a room notification token
 */
import { parseArgs } from 'node:util';
import { SignJWT } from 'jose';

const { values } = parseArgs({
  options: {
    sub: { type: 'string', default: 'example-user' },
    'client-type': { type: 'string', default: 'user' },
    scopes: { type: 'string', default: 'view_room' },
    room: { type: 'string' },
    ttl: { type: 'string', default: '3600' },
  },
});
const secret = process.env.HONO_EXAMPLE_SECRET;
if (!secret) {
  console.error('set HONO_EXAMPLE_SECRET (the same value the server uses)');
  process.exit(2);
}
const claims = { sub: values.sub, client_type: values['client-type'], scope: values.scopes, ...(values.room ? { room_id: values.room } : {}) };
const token = await new SignJWT(claims)
  .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
  .setIssuer('hono-example')
  .setAudience('api')
  .setIssuedAt()
  .setJti(crypto.randomUUID())
  .setExpirationTime(Math.floor(Date.now() / 1000) + Number(values.ttl))
  .sign(new TextEncoder().encode(secret));
process.stdout.write(`${token}\n`);
