// @ts-check
/* global __ENV, open */
/**
 * Spike: baseline -> sudden peak -> hold -> back to baseline (ramping-arrival-rate). Checks that the
 * gateway sheds no errors during the spike and that latency recovers afterwards (requests are
 * tagged phase=baseline|spike|recovery; the recovery phase has its own p(95) threshold).
 *
 *   k6 run -e TOKENS_FILE=$PWD/load/tokens.json -e BASE_RATE=20 -e PEAK_RATE=400 load/spike.js
 */
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import exec from 'k6/execution';
import { Rate } from 'k6/metrics';
import { BASE_URL, TARGET_PATH, TOKENS_FILE, checkTokenBudget, envInt, parseTokens, tokenAt } from './lib/common.js';

const tokens = new SharedArray('tokens', () => parseTokens(open(TOKENS_FILE)));
const BASE_RATE = envInt('BASE_RATE', 20);
const PEAK_RATE = envInt('PEAK_RATE', 300);
const P99_MS = envInt('SPIKE_P99_MS', 1000);
const RECOVERY_P95_MS = envInt('RECOVERY_P95_MS', 250);

/** Stage lengths in seconds: warm-up, ramp up, hold the peak, ramp down, recovery. */
const WARM_S = envInt('WARM_S', 30);
const RAMP_S = envInt('RAMP_S', 10);
const HOLD_S = envInt('HOLD_S', 30);
const RECOVER_S = envInt('RECOVER_S', 30);
const TOTAL_S = WARM_S + RAMP_S + HOLD_S + RAMP_S + RECOVER_S;

const serverErrors = new Rate('server_errors');

/** @type {import('k6/options').Options} */
export const options = {
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      startRate: BASE_RATE,
      timeUnit: '1s',
      preAllocatedVUs: envInt('VUS', 50),
      maxVUs: envInt('MAX_VUS', 1000),
      stages: [
        { target: BASE_RATE, duration: `${WARM_S}s` },
        { target: PEAK_RATE, duration: `${RAMP_S}s` },
        { target: PEAK_RATE, duration: `${HOLD_S}s` },
        { target: BASE_RATE, duration: `${RAMP_S}s` },
        { target: BASE_RATE, duration: `${RECOVER_S}s` },
      ],
    },
  },
  thresholds: {
    server_errors: ['rate<0.01'],
    http_req_failed: [`rate<${envInt('MAX_FAILED_RATE', 0.02)}`],
    'http_req_duration{expected_response:true}': [`p(99)<${P99_MS}`],
    'http_req_duration{phase:recovery}': [`p(95)<${RECOVERY_P95_MS}`],
  },
  summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  // Upper bound of the traffic: the peak rate over the whole run.
  return checkTokenBudget(http, tokens, PEAK_RATE, TOTAL_S);
}

/** @returns {'baseline' | 'spike' | 'recovery'} */
function phase() {
  const elapsed = (Date.now() - exec.scenario.startTime) / 1000;
  if (elapsed < WARM_S) return 'baseline';
  if (elapsed < WARM_S + RAMP_S + HOLD_S + RAMP_S) return 'spike';
  return 'recovery';
}

export default function () {
  const headers = { Authorization: `Bearer ${tokenAt(tokens, exec.scenario.iterationInTest)}` };
  const res = http.get(`${BASE_URL}${TARGET_PATH}`, { headers, tags: { name: TARGET_PATH, phase: phase() } });
  serverErrors.add(res.status >= 500 || res.status === 0);
  check(res, {
    'not a 5xx': (r) => r.status > 0 && r.status < 500,
    'not rate limited': (r) => r.status !== 429,
  });
}
