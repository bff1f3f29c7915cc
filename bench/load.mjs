// Load child for bench/run.mjs: autocannon against one URL, rotating bearer tokens.
//   node bench/load.mjs <url> <tokens.json | spec.json> <connections> <warmup_s> <duration_s>
// <tokens.json> is an array of bearer tokens (the proxy rows: GET <url> with each in turn).
// <spec.json> is an object { method, headers, body, authorizations: [...] } (the token-issue
// rows): every request, warm-up and measured run together, carries the next Authorization of the
// list (one shared counter across connections), so consecutive requests name different clients.
// Prints `measure-start` / `measure-end` lines (run.mjs samples the contestant's CPU between
// them), then one `RESULT <json>` line with the measured run's numbers and the warm-up's errors.
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';

const [url, tokensFile, connArg, warmupArg, durationArg] = process.argv.slice(2);
const loaded = JSON.parse(readFileSync(tokensFile, 'utf8'));
const spec = Array.isArray(loaded) ? null : loaded;
const tokens = spec ? [] : loaded;
const connections = Number(connArg);
const warmup = Number(warmupArg);
const duration = Number(durationArg);
const path = new URL(url).pathname;
if (spec && !(Array.isArray(spec.authorizations) && spec.authorizations.length > 0)) throw new Error(`${tokensFile}: authorizations must be a non-empty array`);

/** Requests built so far with the spec's rotating Authorization (a few more than were sent). */
let rotated = 0;
function specRequest() {
  const auths = spec.authorizations;
  return {
    method: spec.method,
    path,
    body: spec.body,
    setupRequest(req) {
      req.headers = { ...spec.headers, authorization: auths[rotated++ % auths.length] };
      return req;
    },
  };
}

// Each connection walks the whole token list, starting at its own offset, so every request on a
// connection carries the next token and concurrent connections carry different tokens. Requests
// are prebuilt per connection (no per-request setupRequest cost on the load cpu).
let clientNo = 0;
function setupClient(client) {
  if (spec) return;
  const start = (clientNo++ * Math.ceil(tokens.length / connections)) % tokens.length;
  const reqs = [];
  for (let i = 0; i < tokens.length; i++) {
    reqs.push({ method: 'GET', path, headers: { authorization: `Bearer ${tokens[(start + i) % tokens.length]}` } });
  }
  client.setRequests(reqs);
}

function run(seconds) {
  return new Promise((resolve, reject) => {
    const inst = autocannon(
      {
        url,
        connections,
        duration: seconds,
        pipelining: 1,
        timeout: 10,
        requests: spec ? [specRequest()] : [{ method: 'GET', path, headers: { authorization: `Bearer ${tokens[0]}` } }],
        setupClient,
      },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
    process.once('SIGTERM', () => inst.stop());
  });
}

function summary(r) {
  return {
    requests: r.requests.total,
    rps: r.requests.total / (r.duration || duration),
    rpsMean: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    mean: r.latency.average,
    max: r.latency.max,
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    mismatches: r.mismatches,
    statusCodes: r.statusCodeStats,
    duration: r.duration,
  };
}

let warm = null;
if (warmup > 0) {
  clientNo = 0;
  warm = summary(await run(warmup));
}
clientNo = 0;
process.stdout.write('measure-start\n');
const measured = summary(await run(duration));
process.stdout.write('measure-end\n');
process.stdout.write(`RESULT ${JSON.stringify({ ...measured, warmup: warm, ...(spec ? { rotated, distinct: spec.authorizations.length } : {}) })}\n`);
