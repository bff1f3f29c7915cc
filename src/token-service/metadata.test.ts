import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { compileRoutes } from '../routing/compile-routes.js';
import type { RouteConfig } from '../config/schema.js';
import { authorizationServerMetadata, baseUrlFor, routeScopes } from './metadata.js';

describe('baseUrlFor', () => {
  it('prefers public_url, cutting trailing slashes', () => {
    expect(baseUrlFor('https://auth.example.com/', { proto: 'http', host: 'evil.example' })).toBe('https://auth.example.com');
  });
  it('else builds scheme://host from the request', () => {
    expect(baseUrlFor(undefined, { proto: 'https', host: 'API.example.com:8443' })).toBe('https://api.example.com:8443');
    expect(baseUrlFor(undefined, { proto: 'http', host: '[::1]:80' })).toBe('http://[::1]:80');
  });
  it.each([undefined, '', 'a b', 'evil.com/path', 'x@evil.com', 'evil.com#', 'a..b', 'host:99999999'])('refuses Host %j', (host) => {
    expect(baseUrlFor(undefined, { proto: 'https', host })).toBeUndefined();
  });
  it('never lets a Host header add a path, userinfo, query or fragment', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (host) => {
        const base = baseUrlFor(undefined, { proto: 'https', host });
        if (base === undefined) return;
        const u = new URL(base);
        expect([u.pathname, u.username, u.search, u.hash]).toEqual(['/', '', '', '']);
      }),
    );
  });
});

describe('authorizationServerMetadata', () => {
  it('advertises the standard endpoint, JWKS, grants and auth methods under the base', () => {
    const doc = authorizationServerMetadata({ base: 'https://a.example', iss: 'scopegate', scopes: ['view_room'], passwordGrant: false });
    expect(doc).toEqual({
      issuer: 'https://a.example',
      token_endpoint: 'https://a.example/oauth/token',
      jwks_uri: 'https://a.example/.well-known/jwks.json',
      scopes_supported: ['view_room'],
      response_types_supported: [],
      grant_types_supported: ['client_credentials', 'refresh_token'],
      token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    });
  });
  it('uses a URL iss as the issuer, and lists password only when enabled', () => {
    const doc = authorizationServerMetadata({ base: 'https://a.example', iss: 'https://id.example', scopes: [], passwordGrant: true });
    expect(doc['issuer']).toBe('https://id.example');
    expect(doc['grant_types_supported']).toEqual(['client_credentials', 'password', 'refresh_token']);
  });
});

it('routeScopes is the union of scopes and scopes_all in route order', () => {
  const routes = [
    { path: '/a', scopes: ['view_room', 'view_group'] },
    { path: '/b', scopes_all: ['admin_group', 'view_group'] },
    { path: '/c', public: true },
  ] as unknown as RouteConfig[];
  expect(routeScopes(compileRoutes(routes))).toEqual(['view_room', 'view_group', 'admin_group']);
});
