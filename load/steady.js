// @ts-check
/* global __ENV, open */
/**
 * Steady load: a constant arrival rate of authenticated requests, tokens used round robin, with
 * pass/fail thresholds on p(99) latency and the failure rate. A share of requests are auth_test
 * probes (answered by the gateway itself, no upstream).
 *
 *   k6 run -e TOKENS_FILE=$PWD/load/tokens.json -e RATE=200 -e DURATION=2m -e P99_MS=250 load/steady.js
 */
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import exec from 'k6/execution';
import { BASE_URL, TARGET_PATH, TOKENS_FILE, checkTokenBudget, durationSeconds, envInt, intHeader, parseTokens, tokenAt } from './lib/common.js';

const tokens = new SharedArray('tokens', () => parseTokens(open(TOKENS_FILE)));
const RATE = envInt('RATE', 100);
const DURATION = __ENV.DURATION || '2m';
const P99_MS = envInt('P99_MS', 250);
const MAX_FAILED = envInt('MAX_FAILED_RATE', 0.01);
const AUTH_TEST_SHARE = envInt('AUTH_TEST_SHARE', 0.1);

/** @type {import('k6/options').Options} */
export const options = {
  scenarios: {
    steady: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: envInt('VUS', 50),
      maxVUs: envInt('MAX_VUS', 400),
    },
  },
  thresholds: {
    http_req_failed: [`rate<${MAX_FAILED}`],
    'http_req_duration{expected_response:true}': [`p(99)<${P99_MS}`],
    'http_req_duration{kind:forwarded}': [`p(99)<${P99_MS}`],
    checks: ['rate>0.99'],
  },
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  return checkTokenBudget(http, tokens, RATE, durationSeconds(DURATION));
}

export default function () {
  const i = exec.scenario.iterationInTest;
  const headers = { Authorization: `Bearer ${tokenAt(tokens, i)}` };
  // Deterministic share of auth_test probes: every k-th iteration.
  const authTest = AUTH_TEST_SHARE > 0 && i % Math.round(1 / AUTH_TEST_SHARE) === 0;
  if (authTest) {
    const res = http.get(`${BASE_URL}${TARGET_PATH}?auth_test=true`, { headers, tags: { kind: 'auth_test', name: `${TARGET_PATH}?auth_test` } });
    check(res, { 'auth_test is 202': (r) => r.status === 202 });
    return;
  }
  const res = http.get(`${BASE_URL}${TARGET_PATH}`, { headers, tags: { kind: 'forwarded', name: TARGET_PATH } });
  check(res, {
    'forwarded: 2xx/3xx': (r) => r.status >= 200 && r.status < 400,
    'forwarded: not rate limited': (r) => r.status !== 429,
    'forwarded: X-Ratelimit-Remaining present': (r) => Number.isFinite(intHeader(r, 'X-Ratelimit-Remaining')),
  });
}
