/**
 * The Bun door's step 8 (SPEC §1.8, §5): forwards an allowed request with Bun's own fetch — its
 * keep-alive connection pool, request and response bodies streamed as ReadableStreams, so Bun's
 * stream backpressure holds the upstream back while the client is slow. No undici: Bun maps
 * `undici` to a partial copy of its own.
 *
 * Failures and clocks are the Node door's (src/proxy/forward.ts): refused / reset / DNS before
 * response headers → 502 upstream_unavailable; no response headers within `timeout_ms` of the
 * decision to forward → 504 upstream_timeout, where the time the request body is still arriving
 * from the client does not count (it is the client's, bounded per pause by
 * `body_idle_timeout_ms`: a longer wait for the client's next bytes aborts the upstream request
 * and answers 408 request_timeout); the client hanging up (the Request's signal) aborts the
 * upstream request.
 * After the response head, as on the Node door: no body chunk within `timeout_ms` is
 * upstream_timeout, a reset is upstream_unavailable; the client's connection is cut (never a
 * clean end) and the outcome arrives with `bodyEnded`, so the access line and the metrics are
 * written once the body is over. A body of up to BUFFERED_BODY_MAX bytes with a Content-Length
 * is read whole first (Bun.serve's fast path), so its failure is still answered 502 / 504.
 * Responses are never decompressed or followed (redirects go back to the client as sent).
 *
 * @example
 *   const fwd = createBunForwarder(config.upstreams, { render: (e) => renderError(e, { realm: 'api' }), bodyIdleTimeoutMs: config.listen.body_idle_timeout_ms });
 *   const r = await fwd.forward(req, { upstream: 'default', pathAndQuery: '/v2/room', headers, responseHeaders });
 *   return r.response; // r.status, r.upstreamMs, r.error
 */
import type { UpstreamConfig } from '../../config/schema.js';
import { GatewayError, type ErrorCode, type RenderedError } from '../../errors.js';
import { invalidStatus, withoutHopByHopHeaders } from '../../proxy/upstream-headers.js';
import { systemClock, type Clock } from '../../types.js';
import { directStream } from './bun-api.js';

export interface BunForwardOptions {
  upstream: string;
  pathAndQuery: string;
  headers: Record<string, string | string[]>;
  responseHeaders: Record<string, string>;
}

export interface BunForwardResult {
  response: Response;
  status: number;
  upstreamMs: number;
  error?: GatewayError;
  aborted?: boolean;
  /**
   * For a relayed upstream body: settles once the body has ended, failed or been cancelled (never
   * rejects). A failure after the response head — the upstream resetting mid-body, or sending no
   * chunk for `timeout_ms` — cuts the client off (never a clean end) and settles with `error`; the
   * client leaving settles with `aborted`. The Node door's forward resolves at the same moment.
   */
  bodyEnded?: Promise<BunBodyOutcome>;
}

/** How a relayed response body ended. */
export interface BunBodyOutcome {
  error?: GatewayError;
  aborted?: boolean;
}

export interface BunForwarder {
  forward(req: Request, opts: BunForwardOptions): Promise<BunForwardResult>;
  /** Origin and base path of an upstream, for WebSocket tunnels. */
  target(name: string): { origin: string; prefix: string; timeoutMs: number };
  close(): Promise<void>;
}

export interface BunForwarderDeps {
  render: (err: GatewayError) => RenderedError;
  clock?: Clock;
  /** Longest wait for the client's next request-body bytes, ms (`listen.body_idle_timeout_ms`). */
  bodyIdleTimeoutMs: number;
  onUpstreamError?: (err: Error, code: ErrorCode) => void;
}

/** Status logged when the client left before anything was sent (nginx's convention). */
export const CLIENT_CLOSED_REQUEST = 499;

const TIMED_OUT = 'scopegate: upstream timeout';

/** The client hung up before the door answered: nothing is sent, the access line says 499. */
function clientLeft(upstreamMs: number): BunForwardResult {
  return { response: new Response(null, { status: CLIENT_CLOSED_REQUEST }), status: CLIENT_CLOSED_REQUEST, upstreamMs, aborted: true };
}
const BODY_STALLED = 'scopegate: request body stalled';

function describe(err: unknown): string {
  const code = (err as { code?: unknown })?.code;
  if (typeof code === 'string') return code;
  return err instanceof Error ? err.name : 'error';
}

/**
 * Request headers as fetch takes them: the record itself when every value is one string (nearly
 * always), else name/value pairs, a repeated header once per value (Set-Cookie never appears in
 * a request).
 */
function headerInit(h: Record<string, string | string[]>): Record<string, string> | [string, string][] {
  let repeated = false;
  for (const name in h) {
    if (Array.isArray(h[name])) {
      repeated = true;
      break;
    }
  }
  if (!repeated) return h as Record<string, string>;
  const out: [string, string][] = [];
  for (const name in h) {
    const v = h[name]!;
    if (Array.isArray(v)) for (const x of v) out.push([name, x]);
    else out.push([name, v]);
  }
  return out;
}

interface BodyEvents {
  /** fetch asked for the first chunk: the upload has begun. */
  started(): void;
  /** The client's body is complete. */
  ended(): void;
  /** fetch waited longer than the idle bound for the client's next bytes. */
  stalled(): void;
  /** fetch took no chunk for `heldMs`: the upstream stopped reading the body. */
  heldBack(): void;
}

/**
 * The client's body as fetch reads it, one chunk per pull, telling `events` when the upload starts
 * and ends. The idle timer runs only while fetch has asked for a chunk and the client has not sent
 * it: time the client is held back by the upstream's backpressure (fetch not pulling) never counts
 * there. That time is bounded too: fetch taking no chunk for `heldMs` (the upstream's `timeout_ms`)
 * means the upstream stopped reading, as undici's `headersTimeout` bounds it on the Node door.
 */
function watchBody(src: ReadableStream<Uint8Array>, idleMs: number, heldMs: number, events: BodyEvents): ReadableStream<Uint8Array> {
  const reader = src.getReader();
  let started = false;
  let held: ReturnType<typeof setTimeout> | undefined;
  return new ReadableStream<Uint8Array>(
    {
      async pull(ctrl) {
        clearTimeout(held);
        if (!started) {
          started = true;
          events.started();
        }
        const idle = setTimeout(() => events.stalled(), idleMs);
        let r: Awaited<ReturnType<typeof reader.read>>;
        try {
          r = await reader.read();
        } finally {
          clearTimeout(idle);
        }
        if (r.done) {
          ctrl.close();
          events.ended();
        } else {
          ctrl.enqueue(r.value);
          held = setTimeout(() => events.heldBack(), heldMs);
        }
      },
      cancel(reason) {
        clearTimeout(held);
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * A response body up to this size, announced by Content-Length, is read whole before the head is
 * sent and answered from memory. Bun.serve sends such a body on its fast path; relaying it chunk
 * by chunk through JavaScript (so the door can tell how it ended) cost 12 % of the door's
 * requests/s with a direct stream and 37 % with a standard ReadableStream (measured A/B,
 * interleaved, the rig's load). Reading it first also means a failure mid-body is answered as a
 * failure (502 / 504 in the envelope), not as a 200 that stops short.
 */
export const BUFFERED_BODY_MAX = 64 * 1024;

/**
 * The upstream's response body relayed to the client through a Bun direct stream: each chunk is
 * written as it arrives and the next one is read only once the client's socket took it (Bun's
 * backpressure holds the upstream back). No chunk within `idleMs` while the relay waits for one
 * aborts the upstream exchange (`expire`, forward's own), as undici's bodyTimeout does on the
 * Node door. A failure rejects
 * the pull, which makes Bun.serve cut the client's connection instead of ending the response
 * cleanly; `end` hears how the body ended, once.
 */
function relayBody(
  src: ReadableStream<Uint8Array>,
  idleMs: number,
  abort: AbortController,
  expire: () => void,
  clientSignal: AbortSignal,
  end: (outcome: BunBodyOutcome, err?: unknown) => void,
): ReadableStream<Uint8Array> {
  const reader = src.getReader();
  return directStream(async (ctrl) => {
    for (;;) {
      const idle = setTimeout(expire, idleMs);
      let r: Awaited<ReturnType<typeof reader.read>>;
      try {
        r = await reader.read();
      } catch (err) {
        clearTimeout(idle);
        // Whichever end aborted first named the reason: `expire` names TIMED_OUT.
        const timedOut = abort.signal.reason === TIMED_OUT;
        if (clientSignal.aborted && !timedOut) end({ aborted: true });
        else end({ error: new GatewayError(timedOut ? 'upstream_timeout' : 'upstream_unavailable', { why: `response body: ${describe(err)}` }) }, err);
        throw err;
      }
      clearTimeout(idle);
      if (r.done) break;
      try {
        const w = ctrl.write(r.value);
        if (typeof w !== 'number') await w;
      } catch (err) {
        // The client's side went away mid-body: the upstream exchange is dropped with it.
        end({ aborted: true });
        abort.abort(err);
        throw err;
      }
    }
    ctrl.close();
    end({});
  });
}

export function createBunForwarder(upstreams: Record<string, UpstreamConfig>, deps: BunForwarderDeps): BunForwarder {
  const clock = deps.clock ?? systemClock;
  const idleMs = deps.bodyIdleTimeoutMs;
  const entries = new Map<string, { config: UpstreamConfig; origin: string; prefix: string }>();
  for (const [name, config] of Object.entries(upstreams)) {
    const url = new URL(config.url);
    entries.set(name, { config, origin: url.origin, prefix: url.pathname.replace(/\/+$/, '') });
  }
  const entryFor = (name: string) => {
    const e = entries.get(name);
    if (!e) throw new TypeError(`unknown upstream "${name}"; defined: ${[...entries.keys()].join(', ')}`);
    return e;
  };

  /** The rendered failure; an upstream's is reported, a stalled client body (request_timeout) is not (as in proxy/forward.ts). */
  function failure(gwErr: GatewayError, err: unknown, opts: BunForwardOptions, start: number): BunForwardResult {
    if (gwErr.code !== 'request_timeout') deps.onUpstreamError?.(err instanceof Error ? err : new Error(String(err)), gwErr.code);
    const r = deps.render(gwErr);
    return {
      response: new Response(r.body, { status: r.status, headers: { ...r.headers, ...opts.responseHeaders } }),
      status: r.status,
      upstreamMs: clock() - start,
      error: gwErr,
    };
  }

  return {
    async forward(req, opts) {
      const entry = entryFor(opts.upstream);
      const start = clock();
      // One controller for every end: the client hanging up, timeout_ms, and the body stalling.
      // (AbortSignal.any and a second controller cost ~3 % of the door's CPU per request.)
      const abort = new AbortController();
      let timedOut = false;
      let stalled = false;
      let answered = false;
      // timeout_ms runs from the decision to forward until the response headers (SPEC §1.8), and
      // is paused while the request body is arriving (see watchBody).
      let left = entry.config.timeout_ms;
      let since = start;
      const expire = () => {
        timedOut = true;
        abort.abort(TIMED_OUT);
      };
      let timer: ReturnType<typeof setTimeout> | undefined = setTimeout(expire, left);
      const clientSignal = req.signal;
      const onClientGone = () => abort.abort(clientSignal.reason);
      if (clientSignal.aborted) onClientGone();
      else clientSignal.addEventListener('abort', onClientGone, { once: true });
      const detach = () => clientSignal.removeEventListener('abort', onClientGone);
      const signal = abort.signal;
      const method = req.method;
      const hasBody = req.body !== null && method !== 'GET' && method !== 'HEAD';
      const upload = hasBody
        ? watchBody(req.body!, idleMs, entry.config.timeout_ms, {
            started() {
              if (timer === undefined) return;
              clearTimeout(timer);
              timer = undefined;
              left -= clock() - since;
            },
            ended() {
              // After the response headers timeout_ms is over; the body may still be finishing.
              if (timedOut || stalled || answered) return;
              since = clock();
              timer = setTimeout(expire, Math.max(0, left));
            },
            stalled() {
              stalled = true;
              abort.abort(BODY_STALLED);
            },
            heldBack() {
              if (!answered && !timedOut && !stalled) expire();
            },
          })
        : null;
      let res: Response;
      try {
        res = await fetch(entry.origin + entry.prefix + opts.pathAndQuery, {
          method,
          headers: headerInit(opts.headers),
          body: upload,
          redirect: 'manual',
          signal,
          // Bun's fetch options: pass the body through as sent, stream the request body.
          decompress: false,
          duplex: 'half',
        } as RequestInit);
      } catch (err) {
        clearTimeout(timer);
        detach();
        if (clientSignal.aborted && !timedOut && !stalled) {
          return clientLeft(clock() - start);
        }
        if (stalled) return failure(new GatewayError('request_timeout', { why: 'the request body paused longer than body_idle_timeout_ms' }), err, opts, start);
        return failure(new GatewayError(timedOut ? 'upstream_timeout' : 'upstream_unavailable', { why: describe(err) }), err, opts, start);
      }
      answered = true;
      clearTimeout(timer);
      const upstreamMs = clock() - start;
      // Refused as undici refuses them on the Node door: a status that is no HTTP answer, and a
      // response framed both ways (RFC 9112 §6.3: a smuggling signal; undici will not parse it).
      const length = res.headers.get('content-length');
      const refusal =
        res.status < 200 || res.status > 599
          ? invalidStatus(res.status)
          : length !== null && res.headers.has('transfer-encoding')
            ? 'the upstream response has both Content-Length and Transfer-Encoding'
            : undefined;
      if (refusal !== undefined) {
        detach();
        void res.body?.cancel().catch(() => undefined);
        return failure(new GatewayError('upstream_unavailable', { why: refusal }), new Error(refusal), opts, start);
      }
      const headers = withoutHopByHopHeaders(new Headers(res.headers), opts.responseHeaders);
      const body = method === 'HEAD' || res.status === 204 || res.status === 304 ? null : res.body;
      if (body === null) {
        detach();
        return { response: new Response(null, { status: res.status, statusText: res.statusText, headers }), status: res.status, upstreamMs };
      }
      // Bun.serve labels a body from memory application/octet-stream when it has no type; the Node
      // door (and the upstream) send none, so an untyped body is relayed (an empty one sent as none).
      const typed = res.headers.has('content-type');
      if (length !== null && Number(length) <= BUFFERED_BODY_MAX && (typed || Number(length) === 0)) {
        // timeout_ms bounds the whole (small) body here, as it bounds each pause of a relayed one.
        timer = setTimeout(expire, entry.config.timeout_ms);
        let bytes: ArrayBuffer;
        try {
          bytes = await res.arrayBuffer();
        } catch (err) {
          clearTimeout(timer);
          detach();
          if (clientSignal.aborted && !timedOut) return clientLeft(upstreamMs);
          return failure(new GatewayError(timedOut ? 'upstream_timeout' : 'upstream_unavailable', { why: `response body: ${describe(err)}` }), err, opts, start);
        }
        clearTimeout(timer);
        detach();
        return { response: new Response(typed ? bytes : null, { status: res.status, statusText: res.statusText, headers }), status: res.status, upstreamMs };
      }
      // Any other body is relayed as it arrives, through a JavaScript stream: Bun.serve leaves such
      // a body unlabelled, where it would label a fetched body passed on as it is.
      let settle!: (o: BunBodyOutcome) => void;
      const bodyEnded = new Promise<BunBodyOutcome>((resolve) => (settle = resolve));
      let ended = false;
      const relayed = relayBody(body, entry.config.timeout_ms, abort, expire, clientSignal, (outcome, err) => {
        if (ended) return;
        ended = true;
        detach();
        if (outcome.error) deps.onUpstreamError?.(err instanceof Error ? err : new Error(String(err)), outcome.error.code);
        settle(outcome);
      });
      return { response: new Response(relayed, { status: res.status, statusText: res.statusText, headers }), status: res.status, upstreamMs, bodyEnded };
    },
    target(name) {
      const e = entryFor(name);
      return { origin: e.origin, prefix: e.prefix, timeoutMs: e.config.timeout_ms };
    },
    async close() {
      // Bun's fetch pool has no per-forwarder handle; in-flight exchanges finish on their own.
    },
  };
}
