// @ts-check
/* global __ENV, open */
/**
 * Rate-limit correctness with one token (SPEC §4): the token's remaining budget is spent one request
 * at a time; X-Ratelimit-Remaining must count down by exactly one per request, X-Ratelimit-Reset
 * must stay the same integer epoch in the future, the first 429 must come exactly after the budget,
 * and every 429 must carry Retry-After. An auth_test probe reads the budget without spending it.
 *
 * Use a token no other test is spending (mint one: node load/mint-tokens.mjs --count 1
 * --out load/tokens-ratelimit.json). If the current window ends within MIN_WINDOW_LEFT_S, the
 * script waits for the next one, so the run never straddles a window boundary.
 *
 *   k6 run -e TOKENS_FILE=$PWD/load/tokens-ratelimit.json load/rate-limit.js
 */
import http from 'k6/http';
import { check, fail, sleep } from 'k6';
import { SharedArray } from 'k6/data';
import { BASE_URL, TARGET_PATH, TOKENS_FILE, envInt, errorReason, header, intHeader, parseTokens, tokenAt } from './lib/common.js';

const tokens = new SharedArray('tokens', () => parseTokens(open(TOKENS_FILE)));
/** 429s to collect after the budget is spent. */
const EXTRA = envInt('EXTRA_REQUESTS', 5);
/** Do not start when the window has fewer seconds left than this. */
const MIN_WINDOW_LEFT_S = envInt('MIN_WINDOW_LEFT_S', 20);
/** Tolerated clock difference between this machine and the gateway, seconds. */
const CLOCK_SKEW_S = envInt('CLOCK_SKEW_S', 2);

/** @type {import('k6/options').Options} */
export const options = {
  scenarios: {
    'rate-limit': { executor: 'per-vu-iterations', vus: 1, iterations: 1, maxDuration: __ENV.MAX_DURATION || '15m' },
  },
  thresholds: { checks: ['rate==1'] },
};

const nowS = () => Date.now() / 1000;

/**
 * auth_test probe: limit, remaining and reset of the token's window, spending nothing.
 * @param {Record<string, string>} headers
 */
function probe(headers) {
  const res = http.get(`${BASE_URL}${TARGET_PATH}?auth_test=true`, { headers, tags: { name: 'probe' } });
  if (res.status !== 202 && res.status !== 429) {
    fail(`auth_test probe answered ${res.status}; expected 202 (or 429 when the budget is spent). Check TARGET_PATH and the token's scopes.`);
  }
  return {
    status: res.status,
    limit: intHeader(res, 'X-Ratelimit-Limit'),
    remaining: intHeader(res, 'X-Ratelimit-Remaining'),
    reset: intHeader(res, 'X-Ratelimit-Reset'),
  };
}

export default function () {
  const headers = { Authorization: `Bearer ${tokenAt(tokens, envInt('TOKEN_INDEX', 0))}` };

  let p = probe(headers);
  check(p, {
    'probe: X-Ratelimit-Limit is an integer': (x) => Number.isFinite(x.limit) && x.limit > 0,
    'probe: X-Ratelimit-Reset is an integer epoch': (x) => Number.isFinite(x.reset),
  });
  // Start in a window with enough time left, and with budget left to count down.
  if (p.reset - nowS() < MIN_WINDOW_LEFT_S || p.remaining === 0) {
    const wait = Math.max(0, p.reset - nowS()) + 1;
    console.log(`waiting ${wait.toFixed(0)}s for the next window (remaining ${p.remaining}, reset ${p.reset})`);
    sleep(wait);
    p = probe(headers);
  }
  const { limit, remaining, reset } = p;
  if (!(remaining > 0)) fail(`no budget left after waiting for a new window (remaining=${remaining})`);
  check(p, {
    'probe: 202 with budget left': (x) => x.status === 202,
    'probe: remaining <= limit': (x) => x.remaining <= x.limit,
    'X-Ratelimit-Reset is in the future': (x) => x.reset + CLOCK_SKEW_S > nowS(),
  });

  let first429 = -1;
  for (let i = 0; i < remaining + EXTRA; i++) {
    const res = http.get(`${BASE_URL}${TARGET_PATH}`, { headers, tags: { name: TARGET_PATH } });
    const resetNow = intHeader(res, 'X-Ratelimit-Reset');
    if (resetNow !== reset) {
      check(res, { 'window did not roll over during the run': () => false });
      fail(`X-Ratelimit-Reset changed from ${reset} to ${resetNow} at request ${i}: the window rolled over; raise MIN_WINDOW_LEFT_S`);
    }
    if (res.status === 429 && first429 < 0) first429 = i;
    if (i < remaining) {
      check(res, {
        'within budget: not 429': (r) => r.status !== 429,
        'within budget: X-Ratelimit-Remaining counts down by one': (r) => intHeader(r, 'X-Ratelimit-Remaining') === remaining - 1 - i,
        'within budget: X-Ratelimit-Limit unchanged': (r) => intHeader(r, 'X-Ratelimit-Limit') === limit,
      });
    } else {
      check(res, {
        'over budget: 429': (r) => r.status === 429,
        'over budget: reason rate_limited': (r) => errorReason(r) === 'rate_limited',
        'over budget: X-Ratelimit-Remaining is 0': (r) => intHeader(r, 'X-Ratelimit-Remaining') === 0,
        'over budget: Retry-After is whole seconds until the reset': (r) => {
          const ra = header(r, 'Retry-After') ?? '';
          return /^\d+$/.test(ra) && Number(ra) >= 1 && Number(ra) <= reset - nowS() + 1 + CLOCK_SKEW_S;
        },
        'X-Ratelimit-Reset is an integer epoch in the future': (r) => /^\d+$/.test(header(r, 'X-Ratelimit-Reset') ?? '') && reset + CLOCK_SKEW_S > nowS(),
      });
    }
  }
  check(first429, { '429s begin exactly after the budget': (i) => i === remaining });

  // An exhausted token gets the same 429 from auth_test, and auth_test spent nothing on the way.
  const after = http.get(`${BASE_URL}${TARGET_PATH}?auth_test=true`, { headers, tags: { name: 'probe' } });
  check(after, {
    'auth_test on a spent token: 429': (r) => r.status === 429,
    'auth_test on a spent token: Retry-After': (r) => /^\d+$/.test(header(r, 'Retry-After') ?? ''),
  });
  console.log(`limit ${limit}, spent ${remaining} from a fresh probe, first 429 at request ${first429}`);
}
