#!/usr/bin/env node
/**
 * scopegate CLI (SPEC §6):
 *   scopegate serve   [--config F]
 *   scopegate check   [--config F] [--json]
 *   scopegate mint    --config F --issuer NAME [--kind addon|user|personal|room-notification]
 *                     [--sub S] [--client-type T] [--scopes "a b"] [--room R] [--room-name N]
 *                     [--group G] [--ttl 1h|365d|never] [--jti ID]
 *   scopegate explain --config F (--token T | --token-file F) [--json] METHOD URL
 * Config default: $SCOPEGATE_CONFIG, else config/gateway.yaml.
 * Exit codes: 0 ok / allowed, 1 invalid config / denied, 2 usage error.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { mintToken, TOKEN_KINDS } from './auth/mint.js';
import { loadConfigFile, type LoadedConfig } from './config/load.js';
import { ConfigError } from './errors.js';
import { explain, formatExplanation } from './explain.js';
import { formatCheck, runCheck } from './check.js';
import { runClients } from './commands/clients.js';
import { runKeys } from './commands/keys.js';
import { runTokens } from './commands/tokens.js';
import { runUsers } from './commands/users.js';
import { serve } from './main.js';
import { VERSION } from './version.js';

const USAGE = `scopegate ${VERSION} — reverse-proxy authentication gateway

Usage:
  scopegate serve   [--config FILE]
  scopegate check   [--config FILE] [--json]
  scopegate mint    --config FILE --issuer NAME [--kind addon|user|personal|room-notification]
                    [--sub S] [--client-type group|room|user] [--scopes "a b"] [--room ID]
                    [--room-name NAME] [--group ID] [--ttl 30m|1h|365d|never] [--jti ID]
  scopegate explain --config FILE (--token T | --token-file FILE|-) [--json] METHOD URL
  scopegate clients create|list|rotate-secret|delete  [--config FILE] …   (token service, SPEC §9)
  scopegate users   add|delete|list                   [--config FILE] …
  scopegate keys    list|rotate                       [--config FILE]
  scopegate tokens  list|revoke                       [--config FILE] …
  (each prints its own usage with --help)

FILE defaults to $SCOPEGATE_CONFIG, else config/gateway.yaml.
`;

class UsageError extends Error {}

function defaultConfig(): string {
  return process.env.SCOPEGATE_CONFIG || 'config/gateway.yaml';
}

async function load(file: string): Promise<LoadedConfig> {
  return loadConfigFile(file);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return command ? 0 : 2;
  }
  if (command === '--version' || command === 'version') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  switch (command) {
    case 'serve': {
      const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' } }, strict: true });
      await serve({ configFile: values.config ?? defaultConfig() });
      return -1; // keeps running; exits from signal handlers
    }
    case 'check': {
      const { values } = parseArgs({
        args: rest,
        options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean', default: false } },
        strict: true,
      });
      const report = await runCheck(values.config ?? defaultConfig());
      process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatCheck(report));
      return report.ok ? 0 : 1;
    }
    case 'mint': {
      const { values } = parseArgs({
        args: rest,
        options: {
          config: { type: 'string', short: 'c' },
          issuer: { type: 'string' },
          kind: { type: 'string' },
          sub: { type: 'string' },
          'client-type': { type: 'string' },
          scopes: { type: 'string' },
          room: { type: 'string' },
          'room-name': { type: 'string' },
          group: { type: 'string' },
          ttl: { type: 'string' },
          jti: { type: 'string' },
        },
        strict: true,
      });
      // Argument mistakes are usage errors (exit 2), found before the config is read.
      if (values.kind !== undefined && !Object.hasOwn(TOKEN_KINDS, values.kind)) {
        throw new UsageError(`--kind must be one of ${Object.keys(TOKEN_KINDS).join(', ')}`);
      }
      if (values.kind === 'room-notification' && !values.room) {
        throw new UsageError('--kind room-notification needs --room ID: a room notification token is bound to one room');
      }
      const loaded = await load(values.config ?? defaultConfig());
      const issuers = loaded.config.tokens.issuers;
      const issuer = values.issuer ? issuers.find((i) => i.name === values.issuer) : issuers.length === 1 ? issuers[0] : undefined;
      if (!issuer) {
        throw new UsageError(
          values.issuer
            ? `no issuer named "${values.issuer}"; configured: ${issuers.map((i) => i.name).join(', ')}`
            : `--issuer is required (configured: ${issuers.map((i) => i.name).join(', ')})`,
        );
      }
      const token = await mintToken(issuer, {
        kind: values.kind as keyof typeof TOKEN_KINDS | undefined,
        sub: values.sub,
        clientType: values['client-type'] as 'group' | 'room' | 'user' | undefined,
        scopes: values.scopes !== undefined ? values.scopes.split(/[\s,]+/).filter(Boolean) : undefined,
        room: values.room,
        roomName: values['room-name'],
        group: values.group,
        ttl: values.ttl,
        jti: values.jti,
        baseDir: loaded.baseDir,
      });
      process.stdout.write(`${token}\n`);
      return 0;
    }
    case 'explain': {
      const { values, positionals } = parseArgs({
        args: rest,
        options: {
          config: { type: 'string', short: 'c' },
          token: { type: 'string' },
          'token-file': { type: 'string' },
          header: { type: 'boolean', default: false },
          json: { type: 'boolean', default: false },
        },
        allowPositionals: true,
        strict: true,
      });
      if (positionals.length !== 2) throw new UsageError('explain needs METHOD and URL, e.g. explain --token T GET /v2/room/42');
      if (values.token !== undefined && values['token-file'] !== undefined) throw new UsageError('give --token or --token-file, not both');
      const tokenFile = values['token-file'];
      // `--token-file -` reads stdin, so the token never has to appear in a process listing.
      const token = tokenFile !== undefined ? readFileSync(tokenFile === '-' ? 0 : tokenFile, 'utf8').trim() : values.token;
      const loaded = await load(values.config ?? defaultConfig());
      const result = await explain(loaded, { method: positionals[0]!, url: positionals[1]!, token });
      process.stdout.write(values.json ? `${JSON.stringify(result, null, 2)}\n` : formatExplanation(result));
      return result.allowed ? 0 : 1;
    }
    case 'clients':
    case 'users':
    case 'keys':
    case 'tokens': {
      // The token service's operator commands (SPEC §9): src/commands/, one module each. They work
      // while `serve` runs on the same store (an embedded store is reached through its control socket).
      const io = { stdout: (t: string) => void process.stdout.write(t), stderr: (t: string) => void process.stderr.write(t), env: process.env };
      const run = { clients: runClients, users: runUsers, keys: runKeys, tokens: runTokens }[command];
      return run(rest, io);
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exitCode = 1;
    } else if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`scopegate: ${(err as Error).message}\n\n${USAGE}`);
      process.exitCode = 2;
    } else if (err instanceof TypeError || err instanceof Error) {
      process.stderr.write(`scopegate: ${err.message}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`scopegate: ${String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
