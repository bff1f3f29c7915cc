/**
 * Step 8 of the pipeline (SPEC.md §1.8, §5): forwards an authorised request to its upstream.
 * HTTP goes through undici — one keep-alive `Pool` per configured upstream — streaming the
 * request body from the client and the response body straight into the Node `ServerResponse`
 * with backpressure; nothing is buffered. WebSocket upgrades go to `websocket.ts` (http-proxy).
 * Node-only and self-contained (a Bun door forwards with Bun's fetch instead).
 *
 * Slow clients cannot hold an upstream's connections from everybody else:
 * - at most `max_sockets` requests per upstream are handed to undici; the rest wait in a Gate
 *   here, so that one whose time runs out while waiting is taken out and never sent (undici's own
 *   queue cannot drop an entry);
 * - `timeout_ms` counts from the call to `forward()`: the wait for a connection, the connect, and
 *   the wait for response headers once the request body is complete. It does not count while
 *   the request body is still arriving from the client: that is the client's time, bounded per
 *   pause by `bodyIdleTimeoutMs` (an upstream that stops reading the body is still bounded, by
 *   undici's `headersTimeout`);
 * - a pause inside the request body longer than `bodyIdleTimeoutMs` (only time spent waiting
 *   for client bytes; never time the client is held back by our backpressure) aborts the
 *   upstream request, which frees its connection, and answers 408 request_timeout.
 *
 * Failures:
 * - refused / reset / DNS / connect timeout before response headers → 502 upstream_unavailable,
 *   rendered with `deps.render`;
 * - no response headers within `timeout_ms` (waiting for a connection included) → 504
 *   upstream_timeout;
 * - the request body pausing longer than `bodyIdleTimeoutMs` → 408 request_timeout (not an
 *   upstream failure: `onUpstreamError` is not called);
 * - any of these after headers were sent (reset mid-body, `timeout_ms` without a body chunk, the
 *   body pausing while the upstream already answers) → the client connection is destroyed (the
 *   status cannot change any more) and `error` is reported;
 * - the client hanging up → the upstream request is aborted (or never sent), `{ aborted: true }`.
 * Every refusal that leaves request body unread carries `Connection: close`. Nothing here
 * throws for a network failure or leaves an 'error' event unhandled.
 *
 * `Expect: 100-continue` is not forwarded: undici refuses the header, and Node has already
 * answered the client's `100 Continue` when it emitted the request, so the body flows anyway.
 * 1xx responses from the upstream (103 Early Hints) are not relayed.
 *
 * @example
 *   const fwd = createForwarder(config.upstreams, {
 *     render: (e) => renderError(e, { realm: 'api' }),
 *     bodyIdleTimeoutMs: config.listen.body_idle_timeout_ms,
 *   });
 *   server.on('request', async (req, res) => {
 *     const r = await fwd.forward(req, res, {
 *       upstream: 'default', pathAndQuery: '/v2/room?expand=items',
 *       headers: buildUpstreamHeaders(req.headers, {...}), responseHeaders: { 'x-request-id': id },
 *     });
 *     log.info({ status: r.status, upstreamMs: r.upstreamMs, reason: r.error?.code });
 *   });
 *   server.on('upgrade', (req, socket, head) => fwd.upgrade(req, socket, head, opts));
 *   await fwd.close();
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable, type Duplex } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import type { UpstreamConfig } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import type { ErrorCode, RenderedError } from '../errors.js';
import { systemClock } from '../types.js';
import type { Clock } from '../types.js';
import { invalidStatus, responseHeaderList } from './upstream-headers.js';
import { createWsProxy } from './websocket.js';

export interface ForwardOptions {
  /** Upstream name (a key of `upstreams`). */
  upstream: string;
  /** Path and query to request, exactly as they go on the wire (`auth_token` already removed). */
  pathAndQuery: string;
  /** Request headers for the upstream, from `buildUpstreamHeaders` (lower-case names). */
  headers: Record<string, string | string[]>;
  /** The gateway's own response headers (X-Request-Id, rate-limit headers); they override the upstream's. */
  responseHeaders: Record<string, string>;
}

export interface ForwardResult {
  /** Status as sent to the client; 499 when the client left before any response was sent. */
  status: number;
  /** Milliseconds from the call to `forward()` to the upstream's response headers, or to the failure. */
  upstreamMs: number;
  /**
   * Set when the exchange failed (before or after headers were sent): `upstream_unavailable`,
   * `upstream_timeout`, or `request_timeout` when the client's body stalled.
   */
  error?: GatewayError;
  /** The client hung up before the response finished; the upstream request was aborted. */
  aborted?: boolean;
}

export interface Forwarder {
  /** Resolves when the response is finished (or aborted). Never rejects for network failures. */
  forward(req: IncomingMessage, res: ServerResponse, opts: ForwardOptions): Promise<ForwardResult>;
  /** Proxies a WebSocket upgrade (the request already passed the pipeline). */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, opts: ForwardOptions): void;
  /**
   * Closes every pool, letting in-flight requests (and those waiting for a connection) finish,
   * then the open WebSocket tunnels — unless `keepTunnels` (a reload: the retired generation's
   * tunnels live on until either side closes them, as in-flight requests finish on their old
   * generation). A later `close()` without it closes them. Idempotent.
   */
  close(opts?: { keepTunnels?: boolean }): Promise<void>;
}

export interface ForwarderDeps {
  /** Renders the gateway's own error response (renderError bound to the realm/docs URL). */
  render: (err: GatewayError) => RenderedError;
  clock?: Clock;
  /**
   * Longest pause inside a request body, ms (`listen.body_idle_timeout_ms`; default 30000): then
   * 408 request_timeout if no response has started (else the client connection is cut), and the
   * upstream request is aborted, its connection freed. Only time spent waiting for client bytes
   * counts, never time the client is held back because the upstream is not reading.
   */
  bodyIdleTimeoutMs?: number;
  /** Called once per upstream failure, with the reason code it maps to (for logs and metrics). */
  onUpstreamError?: (err: Error, code: ErrorCode) => void;
}

/** Status reported when the client left before anything was sent (nginx's convention). */
export const CLIENT_CLOSED_REQUEST = 499;

/** Idle keep-alive sockets are closed after this long, ms; below Node's 5 s server default so we never reuse a socket the upstream is closing. */
const KEEP_ALIVE_TIMEOUT_MS = 4_000;

interface UpstreamEntry {
  config: UpstreamConfig;
  pool: Pool;
  gate: Gate;
  /** `timeout_ms` of this upstream's exchanges without a request body (one timer for all). */
  deadlines: Deadlines;
  /** Path of the upstream URL without its trailing slash ('' for `http://host:port`). */
  prefix: string;
}

const HEADERS_TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

function reasonFor(err: Error): ErrorCode {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && HEADERS_TIMEOUT_CODES.has(code) ? 'upstream_timeout' : 'upstream_unavailable';
}

/** A short, token-free description of a network error: its code, never its message. */
function describe(err: Error): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : err.name;
}

/** HTTP/1.1 requests carry a body only when they say so (RFC 9112 §6.3). */
function hasRequestBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const len = req.headers['content-length'];
  return len !== undefined && len !== '0';
}

function whenClosed(res: ServerResponse): Promise<void> {
  if (res.writableFinished || res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    res.once('finish', resolve);
    res.once('close', resolve);
  });
}

/** The abort reason given to undici when the client hung up; never shown to anyone. */
const CLIENT_GONE = Object.assign(new Error('client closed the connection'), { code: 'CLIENT_GONE' });

/** Node's timers hold at most this many ms; a longer delay fires after 1 ms. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** `listen.body_idle_timeout_ms`'s default, for callers that do not pass one. */
export const DEFAULT_BODY_IDLE_TIMEOUT_MS = 30_000;

/** What waits in a Gate: started with `dispatch()` once a connection is free. */
interface Waiter {
  dispatch(): void;
}

/**
 * At most `limit` exchanges per upstream are handed to undici (its Pool has that many
 * connections); the others wait here, oldest first. undici cannot drop a queued dispatch: a
 * request gets its abort handle only when it is written to a socket, so one that ran out of time
 * in undici's queue would still reach the upstream later (or cost a connection to refuse it).
 * One that waits here is simply taken out. While a connection is free, `enter` is a counter
 * increment and a direct call: nothing is queued or allocated.
 */
class Gate {
  private active = 0;
  private pumping = false;
  private readonly waiting = new Set<Waiter>();
  private drainedWaiters: Array<() => void> = [];

  constructor(private readonly limit: number) {}

  /** Dispatches `w` now if a connection is free, else once one is (unless cancelled first). */
  enter(w: Waiter): void {
    if (this.active < this.limit && this.waiting.size === 0) {
      this.active++;
      w.dispatch();
    } else {
      this.waiting.add(w);
    }
  }

  /** Takes a waiting `w` back; false when it was already dispatched. */
  cancel(w: Waiter): boolean {
    const had = this.waiting.delete(w);
    if (had) this.notifyDrained();
    return had;
  }

  /** An exchange that `enter` started is over (undici released it). */
  leave(): void {
    this.active--;
    if (this.waiting.size > 0) this.pump();
  }

  /** Resolves once nobody is waiting (started exchanges may still run). */
  drained(): Promise<void> {
    if (this.waiting.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainedWaiters.push(resolve));
  }

  private pump(): void {
    // A start that fails synchronously leaves again from inside this loop: loop, don't recurse.
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.active < this.limit) {
        const next = this.waiting.values().next();
        if (next.done) break;
        this.waiting.delete(next.value);
        this.active++;
        next.value.dispatch();
      }
    } finally {
      this.pumping = false;
    }
    this.notifyDrained();
  }

  private notifyDrained(): void {
    if (this.waiting.size > 0 || this.drainedWaiters.length === 0) return;
    for (const resolve of this.drainedWaiters.splice(0)) resolve();
  }
}

/** An exchange's `timeout_ms` as one upstream's Deadlines see it. */
interface Timed {
  /** Its place in the Deadlines (set by `add`; -1 when not in them). */
  slot: number;
  expire(): void;
}

/**
 * `timeout_ms` for the exchanges of one upstream whose clock never pauses (those without a
 * request body, nearly all of them): one timer for all, not one per request. Every entry has
 * the same `timeout_ms` and `performance.now()` only grows, so deadlines come in the order the
 * entries were added: the timer waits for the oldest live one, and when it fires expires the
 * ones past due. Under load it fires about once per `timeout_ms`, whatever the request rate.
 *
 * An exchange that no longer needs its clock (headers arrived, or it ended) is `release`d: its
 * slot is cleared at once, so the Deadlines never keep a finished exchange — and its request and
 * response — alive; the cleared slots at the front are dropped on the next `add`, so the arrays
 * hold about as many entries as there are exchanges waiting for headers.
 */
class Deadlines {
  private owners: Array<Timed | null> = [];
  private times: number[] = [];
  /** Position of the oldest slot that may still be live. */
  private head = 0;
  /** Slot number of position 0 (slots dropped from the front so far). */
  private base = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly ms: number) {}

  add(t: Timed): void {
    this.advance();
    t.slot = this.base + this.owners.length;
    this.owners.push(t);
    this.times.push(performance.now() + this.ms);
    if (this.timer === undefined) this.arm(this.ms);
  }

  /** `t` no longer needs its clock. */
  release(t: Timed): void {
    const i = t.slot - this.base;
    if (i >= 0 && i < this.owners.length && this.owners[i] === t) this.owners[i] = null;
    t.slot = -1;
  }

  /** Moves `head` past cleared slots, dropping them from the arrays once they are half of them. */
  private advance(): void {
    const owners = this.owners;
    let h = this.head;
    while (h < owners.length && owners[h] === null) h++;
    if (h === owners.length) {
      this.base += h;
      this.owners = [];
      this.times = [];
      this.head = 0;
    } else if (h > 1024 && h * 2 > owners.length) {
      this.base += h;
      this.owners = owners.slice(h);
      this.times = this.times.slice(h);
      this.head = 0;
    } else {
      this.head = h;
    }
  }

  private arm(ms: number): void {
    this.timer = setTimeout(this.check, Math.max(1, Math.ceil(ms)));
    this.timer.unref(); // in-flight sockets keep the process alive, never this timer
  }

  private readonly check = (): void => {
    this.timer = undefined;
    const now = performance.now();
    for (let i = this.head; i < this.owners.length; i++) {
      const t = this.owners[i];
      if (t === null || t === undefined) continue;
      if (this.times[i]! > now) break;
      this.owners[i] = null;
      t.slot = -1;
      t.expire();
    }
    this.advance();
    if (this.head < this.owners.length) this.arm(this.times[this.head]! - now);
  };
}

/**
 * The part of `timeout_ms` the upstream has not used yet, for an exchange with a request body.
 * It runs while the gateway waits for a connection or for response headers, and is paused while
 * the request body is still coming from the client: that time is the client's, bounded per
 * pause by `body_idle_timeout_ms`.
 */
class Countdown {
  private left: number;
  private since = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    ms: number,
    private readonly onExpire: () => void,
  ) {
    this.left = ms;
  }

  run(): void {
    if (this.timer !== undefined || this.stopped) return;
    this.since = performance.now();
    this.timer = setTimeout(this.fire, Math.max(0, this.left));
  }

  pause(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.left -= performance.now() - this.since;
  }

  stop(): void {
    this.pause();
    this.stopped = true;
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    this.stopped = true;
    this.onExpire();
  };
}

/**
 * The client's request body as undici reads it, with a clock on the client's pauses. The clock
 * runs only while the gateway is waiting for client bytes (undici asked for more and our buffer
 * has room), never while the client is held back by our own backpressure (undici not reading
 * because the upstream is not): a slow upstream or a paused download is not the client's
 * idleness. Every chunk restarts it; past `idleMs`, `onIdle` runs once.
 *
 * Destroying it never destroys the client's request: that socket may still carry our answer.
 * The rest of the body is read and dropped instead, as Node does for a handler that ignores a
 * body, so the client is not reset while our answer is in flight.
 */
class BodyWatch extends Readable {
  /** performance.now() since when we wait for client bytes; -1 while we are not waiting. */
  private waitingSince = -1;
  private timer: NodeJS.Timeout | undefined;
  private ended = false;

  constructor(
    private readonly src: IncomingMessage,
    private readonly idleMs: number,
    private readonly onIdle: () => void,
    private readonly onClientGone: () => void,
  ) {
    super();
    // The client may fail the body before undici listens (while waiting in the Gate): never an
    // unhandled 'error'. undici adds its own listener once it has the request.
    this.on('error', ignore);
    src.pause(); // before 'data' is listened to, so that the listener does not start the flow
    src.on('data', this.onData);
    src.on('end', this.onEnd);
    src.on('error', this.onSrcError);
    src.on('close', this.onSrcClose);
  }

  override _read(): void {
    this.wait();
    this.src.resume();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.waitingSince = -1;
    const src = this.src;
    src.off('data', this.onData);
    src.off('end', this.onEnd);
    src.off('error', this.onSrcError);
    src.off('close', this.onSrcClose);
    if (!this.ended && !src.destroyed) {
      src.on('error', ignore);
      src.resume();
    }
    callback(err);
  }

  private readonly onData = (chunk: Buffer): void => {
    this.waitingSince = -1;
    if (this.push(chunk)) this.wait();
    else this.src.pause(); // our buffer is full: from now on we keep the client waiting, not it us
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    this.waitingSince = -1;
    this.push(null);
  };

  private readonly onSrcError = (err: Error): void => this.gone(err);

  private readonly onSrcClose = (): void => this.gone(CLIENT_GONE);

  private gone(err: Error): void {
    if (this.ended || this.destroyed) return;
    this.onClientGone();
    this.destroy(err);
  }

  private wait(): void {
    if (this.ended || this.waitingSince >= 0) return;
    this.waitingSince = performance.now();
    // One timer per body, re-armed lazily: a chunk only moves `waitingSince`.
    if (this.timer === undefined) this.timer = setTimeout(this.check, this.idleMs);
  }

  private readonly check = (): void => {
    this.timer = undefined;
    if (this.waitingSince < 0 || this.destroyed) return;
    const idle = performance.now() - this.waitingSince;
    if (idle < this.idleMs) {
      this.timer = setTimeout(this.check, Math.max(1, this.idleMs - idle));
      return;
    }
    this.waitingSince = -1;
    this.onIdle();
  };
}

function ignore(): void {}

/** What an exchange needs besides the request: fixed per forwarder. */
interface ExchangeEnv {
  bodyIdleTimeoutMs: number;
  deps: ForwarderDeps;
  clock: Clock;
}

/**
 * One proxied exchange, from the decision to forward to the last response byte, and its undici
 * dispatch handler: it waits for a connection in the upstream's Gate, streams the request body
 * through a BodyWatch, writes response headers and chunks straight into the Node response and
 * pauses the upstream while the client's socket is full. Three clocks can end it early — the
 * upstream's `timeout_ms` (504), the body's idle timeout (408), the client leaving (499) — and
 * whichever fires first aborts the undici request (or takes it out of the Gate) and answers.
 * The result is resolved exactly once; the Gate slot is given back exactly once, when undici is
 * done with the request.
 *
 * Without a request body (nearly every request) the exchange is lean: `timeout_ms` is an entry
 * in the upstream's Deadlines (no timer of its own), and the body's closures are never made.
 */
class Exchange implements Dispatcher.DispatchHandler, Waiter, Timed {
  private controller: Dispatcher.DispatchController | null = null;
  /** waiting: in the Gate; dispatched: handed to undici, not yet written; requesting: written; responding: headers relayed. */
  private stage: 'waiting' | 'dispatched' | 'requesting' | 'responding' = 'waiting';
  private clientGone = false;
  private answered = false;
  private released = false;
  private bodyDone = false;
  /** Set by our own clocks; it is the answer, whatever error undici reports for the abort. */
  private failure: GatewayError | null = null;
  private upstreamMs = 0;
  private readonly start: number;
  /** The paused-while-uploading clock of an exchange with a body; null without one (Deadlines instead). */
  private readonly countdown: Countdown | null;
  private readonly body: BodyWatch | null;
  private drainListener: (() => void) | null = null;
  /** Timed: the slot in the upstream's Deadlines while its clock runs there, else -1. */
  slot = -1;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly entry: UpstreamEntry,
    private readonly path: string,
    private readonly headers: Record<string, string | string[]>,
    private readonly ownHeaders: Readonly<Record<string, string>>,
    private readonly withBody: boolean,
    private readonly env: ExchangeEnv,
    private readonly resolve: (r: ForwardResult) => void,
  ) {
    this.start = env.clock();
    if (withBody) {
      this.countdown = new Countdown(entry.config.timeout_ms, () => this.expire());
      this.body = new BodyWatch(
        req,
        env.bodyIdleTimeoutMs,
        () => this.fail(new GatewayError('request_timeout', { why: 'the request body paused longer than body_idle_timeout_ms' })),
        () => (this.clientGone = true),
      );
      this.body.once('end', () => {
        this.bodyDone = true;
        if (this.stage === 'requesting') this.countdown!.run(); // the rest of the wait is the upstream's again
      });
    } else {
      this.countdown = null;
      this.body = null;
    }
  }

  begin(): void {
    this.res.once('close', this.onClientClose);
    if (this.countdown) this.countdown.run();
    else this.entry.deadlines.add(this);
    this.entry.gate.enter(this);
  }

  /** Called by the Gate once a connection is free. */
  dispatch(): void {
    this.stage = 'dispatched';
    this.entry.pool.dispatch({ path: this.path, method: this.req.method ?? 'GET', headers: this.headers, body: this.body }, this);
  }

  // --- our clocks and the client ---

  /**
   * The client's response closed: unless it was finished (or answered by us), the client left.
   * Also when the response errored: a relay paused for a 'drain' that never comes would
   * otherwise hold the upstream connection for good.
   */
  private readonly onClientClose = (): void => {
    if (this.answered || this.res.writableFinished) return;
    this.clientGone = true;
    this.stop(CLIENT_GONE);
  };

  /** `timeout_ms` ran out (from Deadlines or the Countdown). */
  expire(): void {
    const why = this.stage === 'waiting' ? 'no free upstream connection within timeout_ms' : 'no response headers within timeout_ms';
    this.fail(new GatewayError('upstream_timeout', { why }));
  }

  private stopClock(): void {
    if (this.countdown) this.countdown.stop();
    else if (this.slot >= 0) this.entry.deadlines.release(this); // and the Deadlines let go of it
  }

  private fail(err: GatewayError): void {
    if (this.answered || this.failure) return;
    this.failure = err;
    this.stop(err);
  }

  /** Ends the exchange from our side: abort the written request, or never let it be written. */
  private stop(reason: Error): void {
    if (this.controller) {
      this.controller.abort(reason); // undici answers through onResponseError
      return;
    }
    if (this.stage === 'waiting') this.entry.gate.cancel(this);
    // 'dispatched': undici still holds it; onRequestStart aborts it before a byte is written.
    // Either way the rest of the body is dropped, so the client can read our answer.
    this.body?.destroy();
    this.answer(this.failure);
  }

  // --- undici's side ---

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.clientGone || this.failure) {
      controller.abort(this.failure ?? CLIENT_GONE);
      return;
    }
    this.stage = 'requesting';
    if (this.countdown && !this.bodyDone) this.countdown.pause(); // the client is sending: its time, not the upstream's
  }

  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200) return; // 103 Early Hints and the like are not relayed
    // undici's parser takes any three digits; a status past 599 is no HTTP answer (RFC 9110 §15).
    if (statusCode > 599) return this.fail(new GatewayError('upstream_unavailable', { why: invalidStatus(statusCode) }));
    this.stage = 'responding';
    this.stopClock();
    this.upstreamMs = this.env.clock() - this.start;
    this.res.writeHead(statusCode, responseHeaderList(headers, this.ownHeaders));
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.res.write(chunk)) {
      controller.pause();
      this.drainListener ??= () => this.controller?.resume();
      this.res.once('drain', this.drainListener);
    }
  }

  onResponseEnd(): void {
    this.res.end();
    this.release();
    this.answer(null);
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    this.release();
    if (this.answered) return;
    if (this.failure || this.clientGone) return this.answer(this.failure);
    const code = reasonFor(err);
    this.answer(new GatewayError(code, { why: describe(err) }), err);
  }

  /** undici is done with the request: its connection is free for the next one in the Gate. */
  private release(): void {
    if (this.released) return;
    this.released = true;
    if (this.drainListener) this.res.off('drain', this.drainListener);
    this.stopClock();
    this.body?.destroy();
    this.entry.gate.leave();
  }

  /** Resolves the result once: a success, the client gone, or `err` answered (or the connection cut). */
  private answer(err: GatewayError | null, cause?: Error): void {
    if (this.answered) return;
    this.answered = true;
    this.stopClock();
    const { res, resolve } = this;
    if (!err && !this.clientGone) return resolve({ status: res.statusCode, upstreamMs: this.upstreamMs });
    const deps = this.env.deps;
    const upstreamMs = res.headersSent ? this.upstreamMs : this.env.clock() - this.start; // or time until the failure
    if (this.clientGone) {
      return resolve({ status: res.headersSent ? res.statusCode : CLIENT_CLOSED_REQUEST, upstreamMs, aborted: true });
    }
    const error = err!;
    if (error.code !== 'request_timeout') deps.onUpstreamError?.(cause ?? error, error.code);
    if (res.headersSent || res.destroyed) {
      // The status line is gone: the only honest signal left is a broken connection.
      res.destroy();
      return resolve({ status: res.headersSent ? res.statusCode : CLIENT_CLOSED_REQUEST, upstreamMs, error });
    }
    const rendered = deps.render(error);
    const h: Record<string, string> = { ...rendered.headers, ...this.ownHeaders };
    // An unread request body would be parsed as the next request: close after this answer.
    if (this.withBody && !this.req.complete) h['connection'] = 'close';
    res.writeHead(rendered.status, h);
    res.end(rendered.body);
    void whenClosed(res).then(() => resolve({ status: rendered.status, upstreamMs, error }));
  }
}

/**
 * Builds one Pool per upstream. Options map from config as: `max_sockets` → `connections` (and
 * the size of the Gate in front of it), `connect_timeout_ms` → `connectTimeout`, `timeout_ms` →
 * our own countdown from the decision to forward (see Countdown), undici's `headersTimeout` (which
 * also fires when the upstream stops reading the request body for that long) and `bodyTimeout`
 * (the longest silence between two response body chunks).
 */
export function createForwarder(upstreams: Record<string, UpstreamConfig>, deps: ForwarderDeps): Forwarder {
  const clock = deps.clock ?? systemClock;
  const bodyIdleTimeoutMs = deps.bodyIdleTimeoutMs ?? DEFAULT_BODY_IDLE_TIMEOUT_MS;
  if (!Number.isInteger(bodyIdleTimeoutMs) || bodyIdleTimeoutMs < 1 || bodyIdleTimeoutMs > MAX_TIMER_MS) {
    throw new TypeError(`bodyIdleTimeoutMs must be an integer from 1 to ${MAX_TIMER_MS} (ms), got ${String(bodyIdleTimeoutMs)}`);
  }
  const env: ExchangeEnv = { bodyIdleTimeoutMs, deps, clock };
  const entries = new Map<string, UpstreamEntry>();
  for (const [name, config] of Object.entries(upstreams)) {
    if (!Number.isInteger(config.timeout_ms) || config.timeout_ms < 1 || config.timeout_ms > MAX_TIMER_MS) {
      throw new TypeError(`upstreams.${name}.timeout_ms must be an integer from 1 to ${MAX_TIMER_MS} (ms), got ${String(config.timeout_ms)}`);
    }
    if (!Number.isInteger(config.max_sockets) || config.max_sockets < 1) {
      throw new TypeError(`upstreams.${name}.max_sockets must be a positive integer, got ${String(config.max_sockets)}`);
    }
    const url = new URL(config.url);
    entries.set(name, {
      config,
      prefix: url.pathname.replace(/\/+$/, ''),
      gate: new Gate(config.max_sockets),
      deadlines: new Deadlines(config.timeout_ms),
      pool: new Pool(url.origin, {
        connections: config.max_sockets,
        connectTimeout: config.connect_timeout_ms,
        headersTimeout: config.timeout_ms,
        bodyTimeout: config.timeout_ms,
        keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      }),
    });
  }
  const ws = createWsProxy({
    render: deps.render,
    onError: (err, code) => deps.onUpstreamError?.(err, code),
  });

  const entryFor = (name: string): UpstreamEntry => {
    const e = entries.get(name);
    if (!e) throw new TypeError(`unknown upstream "${name}"; defined: ${[...entries.keys()].join(', ')}`);
    return e;
  };

  function forward(req: IncomingMessage, res: ServerResponse, opts: ForwardOptions): Promise<ForwardResult> {
    const entry = entryFor(opts.upstream);
    if (res.destroyed) return Promise.resolve({ status: CLIENT_CLOSED_REQUEST, upstreamMs: 0, aborted: true });

    // undici refuses `expect`; strip it (the body is sent without waiting for 100 Continue).
    let headers = opts.headers;
    if (headers['expect'] !== undefined || headers['Expect'] !== undefined) {
      headers = {};
      for (const k in opts.headers) if (k.toLowerCase() !== 'expect') headers[k] = opts.headers[k]!;
    }

    const path = entry.prefix + opts.pathAndQuery;
    const withBody = hasRequestBody(req);
    return new Promise<ForwardResult>((resolve) => {
      new Exchange(req, res, entry, path, headers, opts.responseHeaders, withBody, env, resolve).begin();
    });
  }

  let closing: Promise<void> | undefined;
  return {
    forward,
    upgrade(req, socket, head, opts) {
      const entry = entryFor(opts.upstream);
      ws.proxy(req, socket, head, {
        target: entry.config.url,
        pathAndQuery: entry.prefix + opts.pathAndQuery,
        headers: opts.headers,
        responseHeaders: opts.responseHeaders,
        timeoutMs: entry.config.timeout_ms,
      });
    },
    close(opts = {}) {
      // Requests still waiting for a connection get one (or their 504) before the pool closes.
      closing ??= Promise.all(
        [...entries.values()].map(async (e) => {
          await e.gate.drained();
          await e.pool.close();
        }),
      ).then(() => undefined);
      return opts.keepTunnels ? closing : closing.then(() => ws.close());
    },
  };
}
