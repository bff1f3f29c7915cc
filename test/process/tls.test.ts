/**
 * SPEC §6 `listen.tls` with real processes (`node dist/cli.js serve`, or `bun dist/cli.js serve`
 * with SCOPEGATE_TEST_RUNTIME=bun) and a certificate made here with the openssl CLI: a test CA
 * and leaf certificates for 127.0.0.1 / localhost, so every client verifies against the CA
 * instead of turning verification off.
 *
 * HTTPS and WSS reach a real upstream with `X-Forwarded-Proto: https`; refusals keep the §2
 * envelope; TLS 1.1 is refused; SIGHUP serves a renewed certificate to new connections without a
 * restart, and a broken one keeps the running certificate (logged, counted as a failed reload);
 * the admin listener stays plain HTTP; a missing or mismatched file stops the start with a
 * config error (exit 1). And hipchat-notifier — a HipChat v2 client that hard-codes https:// —
 * sends a room notification through the gateway unchanged, trusting the CA via
 * NODE_EXTRA_CA_CERTS in its own process.
 */
import { execFileSync, spawn as spawnChild } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import tls from 'node:tls';
import { Agent, WebSocket } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runCli, spawnGateway, TEST_RUNTIME, type GatewayProcess } from '../helpers/process.js';
import { hsToken, tempDir, type TempDir } from '../helpers/tokens.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const SECRET = 'tls-test-secret-0123456789abcdef-xyz';
const now = () => Math.floor(Date.now() / 1000);
const token = (scope = 'view_group') =>
  hsToken(SECRET, { iss: 'scopegate-test', sub: 'tls-user', iat: now(), exp: now() + 600, client_type: 'user', scope, jti: `t-${Math.random()}` });

let dir: TempDir;
let up: Upstream;
/** The CA's PEM, what every client here trusts. */
let ca: string;
const running: GatewayProcess[] = [];

interface Leaf {
  cert: string;
  key: string;
  /** Upper-case hex, as getPeerCertificate().serialNumber reports it. */
  serial: string;
}
const leaves: Record<'first' | 'renewed', Leaf> = {} as never;

function openssl(args: string[]): void {
  execFileSync('openssl', args, { cwd: dir.path, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A leaf certificate for 127.0.0.1 and localhost, signed by the test CA, with its own key. */
async function makeLeaf(name: string, serial: string): Promise<Leaf> {
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', '/CN=localhost']);
  await dir.write(`${name}.ext`, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', `0x${serial}`, '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`]);
  return { cert: await readFile(join(dir.path, `${name}.pem`), 'utf8'), key: await readFile(join(dir.path, `${name}.key`), 'utf8'), serial };
}

/** Puts `leaf` where the config's listen.tls points, replacing each file atomically (as cert-manager does). */
async function install(sub: string, leaf: { cert: string; key: string }): Promise<void> {
  for (const [file, text] of [
    ['cert.pem', leaf.cert],
    ['key.pem', leaf.key],
  ] as const) {
    const tmp = join(dir.path, sub, `.${file}.tmp`);
    await writeFile(tmp, text);
    await rename(tmp, join(dir.path, sub, file));
  }
}

function config(o: { upstream: string; sub: string; trustedProxies?: string }): string {
  return `
listen:
  host: 127.0.0.1
  port: 0
  tls: { cert_file: ${o.sub}/cert.pem, key_file: ${o.sub}/key.pem }
admin: { host: 127.0.0.1, port: 0 }
${o.trustedProxies === undefined ? '' : `trusted_proxies: ${o.trustedProxies}`}
upstreams:
  default: { url: ${o.upstream}, timeout_ms: 10000, connect_timeout_ms: 500 }
tokens:
  issuers:
    - name: local
      issuer: scopegate-test
      algorithms: [HS256]
      secrets: ["\${TLS_SECRET}"]
      claims: { client_type: client_type, scopes: scope }
routes:
  - id: get-room
    path: /v2/room/{room}
    methods: [GET]
    scopes: [view_group]
  - id: events
    path: /v2/events
    methods: [GET]
    scopes: [view_group]
  - id: notify
    path: /v2/room/{room}/notification
    methods: [POST]
    scopes: [send_notification]
`;
}

/** A gateway serving `leaf` from its own sub-directory of the temp dir (relative paths in the config). */
async function startTlsGateway(name: string, leaf: Leaf, o: { trustedProxies?: string } = {}): Promise<GatewayProcess> {
  await mkdir(join(dir.path, name), { recursive: true });
  await install(name, leaf);
  const file = await dir.write(`${name}.yaml`, config({ upstream: up.url, sub: name, ...o }));
  const gw = await spawnGateway(file, { env: { TLS_SECRET: SECRET } });
  running.push(gw);
  return gw;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** The serial of the certificate the gateway presented on this connection. */
  serial: string;
  protocol: string | null;
}

/** One HTTPS request on its own connection, verified against the test CA. */
function get(base: string, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: u.hostname, port: u.port, path, method, headers, ca, agent: false }, (res) => {
      const sock = res.socket as tls.TLSSocket;
      const serial = sock.getPeerCertificate().serialNumber;
      const protocol = sock.getProtocol();
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), serial, protocol }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** A bare TLS handshake with `opts`: the protocol agreed, or the error code. */
function handshake(base: string, opts: tls.ConnectionOptions): Promise<{ ok: boolean; protocol?: string | null; serial?: string; code?: string }> {
  const u = new URL(base);
  return new Promise((resolve) => {
    const s = tls.connect({ host: u.hostname, port: Number(u.port), ca, ...opts }, () => {
      resolve({ ok: true, protocol: s.getProtocol(), serial: s.getPeerCertificate().serialNumber });
      s.destroy();
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, code: e.code ?? e.message }));
  });
}

/** A WSS tunnel through the gateway to the echoing upstream. */
async function openWss(base: string, t: string, dispatcher: Agent): Promise<{ echo(text: string): Promise<string>; close(): void }> {
  const ws = new WebSocket(`${base.replace(/^https/, 'wss')}/v2/events?auth_token=${t}`, { dispatcher });
  const inbox: string[] = [];
  const waiting: Array<(m: string) => void> = [];
  ws.addEventListener('message', (e) => {
    const m = String(e.data);
    const w = waiting.shift();
    if (w) w(m);
    else inbox.push(m);
  });
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve());
    ws.addEventListener('error', () => reject(new Error('wss failed')));
  });
  return {
    echo(text) {
      const next = new Promise<string>((resolve) => {
        const m = inbox.shift();
        if (m !== undefined) resolve(m);
        else waiting.push(resolve);
      });
      ws.send(text);
      return next;
    },
    close: () => ws.close(),
  };
}

async function metric(gw: GatewayProcess, name: string, labels: string): Promise<number | undefined> {
  const text = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** Polls `fn` until it returns true (bounded; the bound only turns a hang into a failure). */
async function until(fn: () => Promise<boolean>, what: string, timeoutMs = 8000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  dir = await tempDir();
  openssl(['version']);
  openssl([
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2',
    '-subj', '/CN=scopegate test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign',
  ]);
  ca = await readFile(join(dir.path, 'ca.pem'), 'utf8');
  leaves.first = await makeLeaf('first', '1001');
  leaves.renewed = await makeLeaf('renewed', '2002');
  up = await startUpstream();
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((g) => g.kill()));
});
afterAll(async () => {
  await up?.close();
  await dir?.cleanup();
});

describe(`listen.tls on the main listener (SPEC 6), ${TEST_RUNTIME} door`, () => {
  it('serves HTTPS: a real token reaches the upstream with X-Forwarded-Proto: https, a refusal keeps the envelope, the admin listener stays HTTP', async () => {
    // No trusted proxies: a client's own X-Forwarded-Proto is replaced by what the gateway saw.
    const gw = await startTlsGateway('serve', leaves.first, { trustedProxies: '[]' });
    expect(gw.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(JSON.parse(gw.stdout.find((l) => /TLS certificate loaded/.test(l))!)).toMatchObject({ serial: leaves.first.serial });

    const t = await token();
    const seen = up.requests.length;
    const ok = await get(gw.url, '/v2/room/42?x=1', { authorization: `Bearer ${t}`, 'x-forwarded-proto': 'http' });
    expect(ok.status).toBe(200);
    expect(ok.serial).toBe(leaves.first.serial);
    const rec = up.requests[seen]!;
    expect(rec.method).toBe('GET');
    expect(rec.url).toBe('/v2/room/42?x=1');
    expect(rec.headers['x-forwarded-proto']).toBe('https');
    expect(rec.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(rec.headers['x-auth-subject']).toBe('tls-user');
    expect(rec.headers['authorization']).toBe(`Bearer ${t}`);

    const denied = await get(gw.url, '/v2/room/42');
    expect(denied.status).toBe(401);
    expect(denied.headers['www-authenticate']).toMatch(/^Bearer realm=/);
    expect(JSON.parse(denied.body)).toMatchObject({ error: { code: 401, type: 'Unauthorized' } });
    expect(up.requests.length).toBe(seen + 1);

    // The admin listener: plain HTTP, and it speaks no TLS.
    expect(gw.adminUrl).toMatch(/^http:\/\//);
    expect((await fetch(`${gw.adminUrl}/healthz`)).status).toBe(200);
    expect((await handshake(gw.adminUrl!, {})).ok).toBe(false);
  });

  it('refuses TLS 1.1 (and older), agrees on TLS 1.2 and 1.3', async () => {
    const gw = await startTlsGateway('versions', leaves.first);
    // Allow the old protocols on the client side (OpenSSL 3 keeps them behind security level 0),
    // so a refusal is the gateway's: the same client does get TLS 1.1 from a server that offers it.
    const legacy: tls.ConnectionOptions = { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' };
    const control = tls.createServer({ cert: leaves.first.cert, key: leaves.first.key, minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' }, (s) => s.end());
    await new Promise<void>((resolve) => control.listen(0, '127.0.0.1', resolve));
    try {
      const port = (control.address() as { port: number }).port;
      expect(await handshake(`https://127.0.0.1:${port}`, legacy)).toMatchObject({ ok: true, protocol: 'TLSv1.1' });
    } finally {
      control.close();
    }

    expect(await handshake(gw.url, legacy)).toEqual({ ok: false, code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' });
    expect(await handshake(gw.url, { ...legacy, maxVersion: 'TLSv1' })).toEqual({ ok: false, code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' });
    expect(await handshake(gw.url, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' })).toMatchObject({ ok: true, protocol: 'TLSv1.2' });
    expect(await handshake(gw.url, { minVersion: 'TLSv1.3' })).toMatchObject({ ok: true, protocol: 'TLSv1.3' });
    // A client that does not trust the CA is not talked into it.
    expect(await handshake(gw.url, { ca: undefined })).toMatchObject({ ok: false, code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    // The listener still serves after the refused handshakes.
    expect((await get(gw.url, '/v2/room/1', { authorization: `Bearer ${await token()}` })).status).toBe(200);
  });

  it('tunnels WSS end to end after the decision, with X-Forwarded-Proto: https; refuses one without a token', async () => {
    const gw = await startTlsGateway('wss', leaves.first);
    const dispatcher = new Agent({ connect: { ca } });
    try {
      const seen = up.requests.length;
      const ws = await openWss(gw.url, await token(), dispatcher);
      const text = `hello over wss ${randomBytes(4).toString('hex')}`;
      expect(await ws.echo(text)).toBe(text);
      ws.close();
      const rec = up.requests[seen]!;
      expect(rec.upgrade).toBe(true);
      expect(rec.url).toBe('/v2/events');
      expect(rec.headers['x-forwarded-proto']).toBe('https');
      expect(rec.headers['x-auth-subject']).toBe('tls-user');

      const refused = new WebSocket(`${gw.url.replace(/^https/, 'wss')}/v2/events`, { dispatcher });
      const outcome = await new Promise<string>((resolve) => {
        refused.addEventListener('open', () => resolve('open'));
        refused.addEventListener('error', () => resolve('refused'));
      });
      expect(outcome).toBe('refused');
      // The refusal itself, read as plain HTTPS: the envelope, and nothing reached the upstream.
      const plain = await get(gw.url, '/v2/events', { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64') });
      expect(plain.status).toBe(401);
      expect(JSON.parse(plain.body)).toMatchObject({ error: { code: 401 } });
      expect(up.requests.length).toBe(seen + 1);
    } finally {
      await dispatcher.close();
    }
  });

  it('serves a renewed certificate to new connections after SIGHUP, without a restart; open connections and requests in flight carry on', async () => {
    up.route('/v2/room/slow', { kind: 'slow', delayMs: 1500, body: 'slow-done' });
    const gw = await startTlsGateway('renew', leaves.first);
    const pid = gw.child.pid;
    expect(await handshake(gw.url, {})).toMatchObject({ ok: true, serial: leaves.first.serial });
    const dispatcher = new Agent({ connect: { ca } });
    try {
      // Open before the renewal: a WSS tunnel and a request the upstream takes 1.5 s to answer.
      const ws = await openWss(gw.url, await token(), dispatcher);
      expect(await ws.echo('before')).toBe('before');
      const seen = up.requests.length;
      const inflight = get(gw.url, '/v2/room/slow', { authorization: `Bearer ${await token()}` });
      await up.waitForRequest(seen + 1);

      await install('renew', leaves.renewed);
      gw.signal('SIGHUP');
      const line = JSON.parse(await gw.waitForLine(/TLS certificate reloaded/)) as Record<string, string>;
      expect(line).toMatchObject({ serial: leaves.renewed.serial });
      expect(JSON.stringify(line)).not.toContain('PRIVATE KEY');
      await until(async () => (await handshake(gw.url, {})).serial === leaves.renewed.serial, 'the renewed certificate is served');
      // Every new connection now gets it, and requests are served with it.
      for (let i = 0; i < 5; i++) expect(await handshake(gw.url, {})).toMatchObject({ ok: true, serial: leaves.renewed.serial });
      const ok = await get(gw.url, '/v2/room/7', { authorization: `Bearer ${await token()}` });
      expect(ok).toMatchObject({ status: 200, serial: leaves.renewed.serial });
      // What was open before finishes on the old certificate (on Bun, on the old listener, draining).
      expect(await inflight).toMatchObject({ status: 200, body: 'slow-done', serial: leaves.first.serial });
      // A WebSocket tunnel opened before the reload lives on (on Bun, on the old listener, which
      // keeps it while it drains; on Node, the retired generation keeps its tunnels until shutdown).
      expect(await ws.echo('after')).toBe('after');
      ws.close();

      expect(gw.child.pid).toBe(pid);
      expect(gw.child.exitCode).toBeNull();
      expect(await metric(gw, 'scopegate_config_reloads_total', 'result="success"')).toBe(1);
      expect(await metric(gw, 'scopegate_config_reloads_total', 'result="error"')).toBe(0);
      // And it still shuts down cleanly.
      gw.signal('SIGTERM');
      expect(await gw.exit()).toBe(0);
    } finally {
      await dispatcher.close();
    }
  });

  it('keeps the running certificate when the new files are broken: logged, counted as a failed reload', async () => {
    const gw = await startTlsGateway('broken', leaves.first);
    // The renewed certificate with the first key: each file alone is valid PEM, together they are not a pair.
    await install('broken', { cert: leaves.renewed.cert, key: leaves.first.key });
    gw.signal('SIGHUP');
    const mismatch = JSON.parse(await gw.waitForLine(/config reload failed/)) as { level: number; err: string };
    expect(mismatch.level).toBeGreaterThanOrEqual(50);
    expect(mismatch.err).toContain(join(dir.path, 'broken', 'key.pem'));
    expect(mismatch.err).toMatch(/does not belong to the certificate/);
    expect(await metric(gw, 'scopegate_config_reloads_total', 'result="error"')).toBe(1);
    expect(await handshake(gw.url, {})).toMatchObject({ ok: true, serial: leaves.first.serial });

    // A certificate file that is no certificate at all.
    await writeFile(join(dir.path, 'broken', 'cert.pem'), 'not a certificate\n');
    await writeFile(join(dir.path, 'broken', 'key.pem'), leaves.first.key);
    gw.signal('SIGHUP');
    await gw.waitForLine(/holds no PEM certificate.*config reload failed/);
    expect(gw.stdout.filter((l) => /config reload failed/.test(l))).toHaveLength(2);
    expect(await metric(gw, 'scopegate_config_reloads_total', 'result="error"')).toBe(2);
    // No key material in any log line.
    const keyBody = leaves.first.key.split('\n')[1]!;
    expect(gw.stdout.join('\n')).not.toContain(keyBody);
    expect(gw.stdout.join('\n')).not.toContain('PRIVATE KEY');

    expect(await metric(gw, 'scopegate_config_reloads_total', 'result="success"')).toBe(0);
    const ok = await get(gw.url, '/v2/room/7', { authorization: `Bearer ${await token()}` });
    expect(ok).toMatchObject({ status: 200, serial: leaves.first.serial });
    expect((await fetch(`${gw.adminUrl}/readyz`)).status).toBe(200);

    // Fixed files are picked up by the next SIGHUP.
    await install('broken', leaves.renewed);
    gw.signal('SIGHUP');
    await gw.waitForLine(/TLS certificate reloaded/);
    await until(async () => (await handshake(gw.url, {})).serial === leaves.renewed.serial, 'the fixed certificate is served');
    expect(await metric(gw, 'scopegate_config_reloads_total', 'result="success"')).toBe(1);
  });

  it('does not start with a missing or mismatched file: a config error naming the file, exit 1, no stack trace', async () => {
    await mkdir(join(dir.path, 'nostart'), { recursive: true });
    const file = await dir.write('nostart.yaml', config({ upstream: up.url, sub: 'nostart' }));
    const env = { TLS_SECRET: SECRET, LOG_LEVEL: 'info' };

    const missing = await runCli(['serve', '--config', file], { env });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('listen.tls.cert_file');
    expect(missing.stderr).toContain(join(dir.path, 'nostart', 'cert.pem'));
    expect(missing.stderr).toContain('ENOENT');
    expect(missing.stderr).toContain('listen.tls.key_file'); // both files are missing: both named
    expect(missing.stderr).not.toMatch(/\n\s+at /);

    await install('nostart', { cert: leaves.first.cert, key: leaves.renewed.key });
    const mismatched = await runCli(['serve', '--config', file], { env });
    expect(mismatched.code).toBe(1);
    expect(mismatched.stderr).toContain('listen.tls.key_file');
    expect(mismatched.stderr).toContain('does not belong to the certificate');
    expect(mismatched.stderr + mismatched.stdout).not.toContain('PRIVATE KEY');

    await copyFile(join(dir.path, 'first.pem'), join(dir.path, 'nostart', 'key.pem'));
    const notAKey = await runCli(['serve', '--config', file], { env });
    expect(notAKey.code).toBe(1);
    expect(notAKey.stderr).toContain('holds no PEM private key');

    // A passphrase-protected key: scopegate has no passphrase to give it.
    openssl(['pkey', '-in', 'first.key', '-aes256', '-passout', 'pass:secret-pass', '-out', join('nostart', 'key.pem')]);
    const encrypted = await runCli(['serve', '--config', file], { env });
    expect(encrypted.code).toBe(1);
    expect(encrypted.stderr).toContain('is an encrypted key');
  });
});

/** Runs hipchat-notifier's `send` in its own Node process, as its users do; resolves with what its callback saw. */
function notify(o: { host: string; room: string; token: string; message: string }): Promise<{ err: string | null; status: number | null; body: unknown }> {
  const script = `
    const hipchat = require('hipchat-notifier').make(process.env.ROOM, process.env.TOKEN, 'tls test', process.env.HOST);
    hipchat.send({ message: process.env.MESSAGE, color: 'green' }, (err, res, body) => {
      process.stdout.write(JSON.stringify({ err: err ? String(err.code || err.message) : null, status: res ? res.statusCode : null, body }));
    });`;
  return new Promise((resolve, reject) => {
    const child = spawnChild(process.execPath, ['-e', script], {
      cwd: ROOT,
      // The notifier's own https agent, unchanged: it trusts what Node trusts, plus the test CA.
      env: { ...process.env, NODE_EXTRA_CA_CERTS: join(dir.path, 'ca.pem'), HOST: o.host, ROOM: o.room, TOKEN: o.token, MESSAGE: o.message },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let errText = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (errText += c.toString('utf8')));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`notifier exited ${code}: ${errText}`));
      resolve(JSON.parse(out) as { err: string | null; status: number | null; body: unknown });
    });
  });
}

describe(`hipchat-notifier through the TLS listener, ${TEST_RUNTIME} door`, () => {
  it('sends a room notification unchanged; with a bad token it reports the error and the upstream receives nothing', async () => {
    const gw = await startTlsGateway('notifier', leaves.first);
    const host = new URL(gw.url).host; // 127.0.0.1:<port>: the certificate names the address
    const t = await token('send_notification');
    const seen = up.requests.length;
    const message = `deployed ${randomBytes(3).toString('hex')}`;

    const sent = await notify({ host, room: '42', token: t, message });
    expect(sent.err).toBeNull();
    expect(sent.status).toBe(200);
    const rec = up.requests[seen]!;
    await rec.done;
    expect(rec.method).toBe('POST');
    expect(rec.url).toBe('/v2/room/42/notification');
    expect(rec.headers['authorization']).toBe(`Bearer ${t}`);
    expect(rec.headers['x-forwarded-proto']).toBe('https');
    expect(rec.headers['x-auth-scopes']).toBe('send_notification');
    expect(JSON.parse(rec.body.toString('utf8'))).toEqual({ message, from: 'tls test', color: 'green', message_format: 'text', notify: false });

    // A token signed with another secret: the gateway answers 401 in HipChat's envelope, which
    // the notifier hands to its callback; nothing is forwarded.
    const forged = await hsToken('some-other-secret-0123456789abcdef', { iss: 'scopegate-test', sub: 'x', iat: now(), exp: now() + 600, client_type: 'user', scope: 'send_notification' });
    const refused = await notify({ host, room: '42', token: forged, message: 'never delivered' });
    expect(refused.err).toBeNull();
    expect(refused.status).toBe(401);
    expect(refused.body).toMatchObject({ error: { code: 401, type: 'Unauthorized' } });
    // A token without the scope: 403, also not forwarded.
    const viewOnly = await notify({ host, room: '42', token: await token('view_group'), message: 'never delivered' });
    expect(viewOnly.status).toBe(403);
    expect(up.requests.length).toBe(seen + 1);
    expect(up.requests.some((r) => r.body.toString('utf8').includes('never delivered'))).toBe(false);
  });
});
