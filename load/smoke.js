// @ts-check
/* global __ENV, open */
/**
 * Smoke test: one pass over the gateway's observable contract (admin endpoints, public route, the
 * HipChat-style errors, auth_test, rate-limit headers). Every check must pass.
 *
 *   k6 run -e BASE_URL=http://127.0.0.1:8080 -e TOKENS_FILE=$PWD/load/tokens.json load/smoke.js
 */
import http from 'k6/http';
import { check, group } from 'k6';
import { SharedArray } from 'k6/data';
import { ADMIN_URL, BASE_URL, TARGET_PATH, TOKENS_FILE, errorReason, header, intHeader, parseTokens, tokenAt } from './lib/common.js';

const tokens = new SharedArray('tokens', () => parseTokens(open(TOKENS_FILE)));
const PUBLIC_PATH = __ENV.PUBLIC_PATH || '/v2/capabilities';
const UNKNOWN_PATH = __ENV.UNKNOWN_PATH || '/scopegate-smoke/no-such-route';
const AUTH_TEST_BODY = '{"success":{"code":202,"message":"This auth_token has access to use this method.","type":"Accepted"}}';

/** @type {import('k6/options').Options} */
export const options = {
  scenarios: { smoke: { executor: 'per-vu-iterations', vus: 1, iterations: 1, maxDuration: '1m' } },
  thresholds: { checks: ['rate==1'] },
};

export default function () {
  const token = tokenAt(tokens, 0);
  const auth = { Authorization: `Bearer ${token}` };

  group('admin', () => {
    check(http.get(`${ADMIN_URL}/healthz`), { 'healthz is 200': (r) => r.status === 200 });
    check(http.get(`${ADMIN_URL}/readyz`), { 'readyz is 200': (r) => r.status === 200 });
    check(http.get(`${ADMIN_URL}/metrics`), {
      'metrics is 200': (r) => r.status === 200,
      'metrics exports scopegate_build_info': (r) => typeof r.body === 'string' && r.body.includes('scopegate_build_info'),
    });
  });

  group('public route', () => {
    const res = http.get(`${BASE_URL}${PUBLIC_PATH}`);
    check(res, {
      'public route needs no token': (r) => r.status !== 401 && r.status !== 403,
      'every response has X-Request-Id': (r) => (header(r, 'X-Request-Id') ?? '') !== '',
    });
  });

  group('errors', () => {
    const missing = http.get(`${BASE_URL}${TARGET_PATH}`);
    check(missing, {
      'no token: 401': (r) => r.status === 401,
      'no token: reason token_missing': (r) => errorReason(r) === 'token_missing',
      'no token: HipChat message': (r) => typeof r.body === 'string' && r.body.includes('Authenticated requests only.'),
      'no token: WWW-Authenticate Bearer realm': (r) => /^Bearer realm="/.test(header(r, 'WWW-Authenticate') ?? ''),
      'errors are JSON': (r) => (header(r, 'Content-Type') ?? '').startsWith('application/json'),
    });

    const bogus = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzbW9rZSJ9.c2lnbmF0dXJlLW5vdC12YWxpZA';
    const invalid = http.get(`${BASE_URL}${TARGET_PATH}`, { headers: { Authorization: `Bearer ${bogus}` } });
    check(invalid, {
      'bad token: 401': (r) => r.status === 401,
      'bad token: invalid_token challenge': (r) => (header(r, 'WWW-Authenticate') ?? '').includes('error="invalid_token"'),
      'bad token: never echoed': (r) => typeof r.body === 'string' && !r.body.includes(bogus),
    });

    const unknown = http.get(`${BASE_URL}${UNKNOWN_PATH}`, { headers: auth });
    check(unknown, {
      'unknown route: 404 route_not_found': (r) => r.status === 404 && errorReason(r) === 'route_not_found',
    });
  });

  group('authorized', () => {
    const probe = http.get(`${BASE_URL}${TARGET_PATH}?auth_test=true`, { headers: auth });
    check(probe, {
      'auth_test: 202': (r) => r.status === 202,
      'auth_test: exact HipChat body': (r) => typeof r.body === 'string' && JSON.stringify(JSON.parse(r.body)) === AUTH_TEST_BODY,
      'auth_test: carries X-Ratelimit-Limit': (r) => Number.isFinite(intHeader(r, 'X-Ratelimit-Limit')),
    });

    const res = http.get(`${BASE_URL}${TARGET_PATH}`, { headers: auth });
    check(res, {
      'valid token is forwarded (not 401/403/429)': (r) => ![401, 403, 429].includes(r.status) && r.status < 500,
      'X-Ratelimit-Remaining is an integer': (r) => Number.isFinite(intHeader(r, 'X-Ratelimit-Remaining')),
      'X-Ratelimit-Reset is an epoch in the future': (r) => intHeader(r, 'X-Ratelimit-Reset') > Date.now() / 1000 - 2,
    });
  });
}
