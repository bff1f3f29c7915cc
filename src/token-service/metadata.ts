/**
 * RFC 8414 authorization server metadata (`GET /.well-known/oauth-authorization-server`), pure.
 *
 * Every URL is absolute under one base: `token_service.public_url` when configured, else the
 * request's own scheme and Host (`baseUrlFor`). The metadata's `issuer` is that base, because
 * RFC 8414 §3.3 (and oauth4webapi's `processDiscoveryResponse`) require it to equal the URL the
 * document was fetched for — unless the issuer's configured `iss` is itself an absolute http(s)
 * URL, which is then used (RFC 9068 wants the two to match; configure `issuer:` as the public URL
 * to get both). A non-URL `iss` such as `scopegate` stays in the tokens only.
 *
 * @example
 *   const base = baseUrlFor(undefined, { proto: 'https', host: 'api.example.com' }); // 'https://api.example.com'
 *   const doc = authorizationServerMetadata({ base, iss: 'scopegate', scopes: ['view_room'], passwordGrant: false });
 *   // { issuer: 'https://api.example.com', token_endpoint: 'https://api.example.com/oauth/token', ... }
 */
import { TOKEN_PATHS } from './dialects.js';
import type { RouteTable } from '../routing/compile-routes.js';

export const METADATA_PATH = '/.well-known/oauth-authorization-server';
export const JWKS_PATH = '/.well-known/jwks.json';

/** A Host header value we are willing to echo into URLs: a DNS name or IP literal, optional port. */
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;

/**
 * The base of every advertised URL, without a trailing slash: `publicUrl` (trailing slashes cut),
 * else `<proto>://<host>` from the request. undefined when there is no usable Host.
 */
export function baseUrlFor(publicUrl: string | undefined, facts: { proto: 'http' | 'https'; host: string | undefined }): string | undefined {
  if (publicUrl !== undefined) return publicUrl.replace(/\/+$/, '');
  const host = facts.host;
  if (host === undefined || host.length > 261 || !HOST.test(host)) return undefined;
  const base = `${facts.proto}://${host.toLowerCase()}`;
  // The HOST pattern admits a few spellings WHATWG URL refuses ('[.]', a port over 65535): a base
  // that does not parse as a plain origin is no base to advertise.
  try {
    const u = new URL(base);
    if (u.pathname !== '/' || u.search !== '' || u.username !== '') return undefined;
  } catch {
    return undefined;
  }
  return base;
}

/** The scopes the route table names (scopes and scopes_all), in route order, each once. */
export function routeScopes(table: RouteTable): string[] {
  const out: string[] = [];
  for (const r of table.routes) {
    for (const s of [...(r.config.scopes ?? []), ...(r.config.scopes_all ?? [])]) if (!out.includes(s)) out.push(s);
  }
  return out;
}

export interface MetadataInput {
  /** From baseUrlFor. */
  base: string;
  /** The token issuer's configured `iss`, if any. */
  iss?: string | undefined;
  scopes: readonly string[];
  passwordGrant: boolean;
}

function isHttpUrl(s: string | undefined): s is string {
  if (s === undefined) return false;
  try {
    const u = new URL(s);
    return (u.protocol === 'https:' || u.protocol === 'http:') && u.search === '' && u.hash === '';
  } catch {
    return false;
  }
}

/** The RFC 8414 document (key order fixed). */
export function authorizationServerMetadata(m: MetadataInput): Record<string, unknown> {
  const grants = ['client_credentials', ...(m.passwordGrant ? ['password'] : []), 'refresh_token'];
  return {
    issuer: isHttpUrl(m.iss) ? m.iss : m.base,
    token_endpoint: `${m.base}${TOKEN_PATHS.standard}`,
    jwks_uri: `${m.base}${JWKS_PATH}`,
    scopes_supported: [...m.scopes],
    // No authorization endpoint: no response types (RFC 8414 §2 requires the member).
    response_types_supported: [],
    grant_types_supported: grants,
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
  };
}
