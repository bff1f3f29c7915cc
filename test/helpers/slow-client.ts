/**
 * A deliberately slow client for the hostile tests: one HTTP/1.1 request on its own connection
 * (no agent, no reuse) whose body is written only when the test says so — byte by byte, with
 * pauses, or never — while the response is read as it arrives, even before the body is done.
 *
 * @example
 *   const up = openSlowUpload(gw.url, { path: '/upload', contentLength: 10 });
 *   up.send('a');                         // the head and one byte, now
 *   await up.trickle(5, 100);             // five more bytes, 100 ms apart
 *   const r = await up.response;          // { status: 408, headers, body, complete: true }
 *   up.destroy();
 */
import { request } from 'node:http';
import type { IncomingHttpHeaders } from 'node:http';

export interface SlowReply {
  /** 0 when the connection closed before a response head arrived. */
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** false when the connection broke before the response body was complete. */
  complete: boolean;
}

export interface SlowUpload {
  /** Writes bytes of the body now (the head goes out with the first write). */
  send(bytes: string | Buffer): void;
  /** Sends `count` single bytes `intervalMs` apart; stops early once a response or a close arrived. Resolves with the bytes sent. */
  trickle(count: number, intervalMs: number): Promise<number>;
  /** Ends the body. */
  end(bytes?: string | Buffer): void;
  /** The response read to its end (or to the broken connection); never rejects. */
  response: Promise<SlowReply>;
  /** true once a response head or a close arrived. */
  readonly answered: boolean;
  /** Closes the connection from the client's side. */
  destroy(): void;
}

export interface SlowUploadOptions {
  method?: string;
  path: string;
  /** Content-Length to announce; without it the body is sent chunked. */
  contentLength?: number;
  headers?: Record<string, string>;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function openSlowUpload(base: string, opts: SlowUploadOptions): SlowUpload {
  const u = new URL(base);
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.contentLength !== undefined) headers['content-length'] = String(opts.contentLength);
  else headers['transfer-encoding'] = 'chunked';
  let answered = false;
  let settle!: (r: SlowReply) => void;
  const response = new Promise<SlowReply>((resolve) => (settle = resolve));
  const req = request({ host: u.hostname, port: u.port, method: opts.method ?? 'POST', path: opts.path, headers, agent: false }, (res) => {
    answered = true;
    let body = '';
    res.setEncoding('utf8');
    res.on('data', (c: string) => (body += c));
    res.on('error', () => {});
    res.on('close', () => settle({ status: res.statusCode ?? 0, headers: res.headers, body, complete: res.complete }));
  });
  req.on('error', () => {});
  req.on('close', () => {
    answered = true;
    // Without a response this is the answer; with one, the response's own 'close' settles first.
    setImmediate(() => settle({ status: 0, headers: {}, body: '', complete: false }));
  });
  req.flushHeaders();
  const alive = (): boolean => !answered && !req.destroyed;
  return {
    send(bytes) {
      if (!req.destroyed) req.write(bytes);
    },
    async trickle(count, intervalMs) {
      let sent = 0;
      while (sent < count && alive()) {
        req.write(Buffer.from([0x61 + (sent % 26)]));
        sent++;
        if (sent < count) await sleep(intervalMs);
      }
      return sent;
    },
    end(bytes) {
      if (!req.destroyed) req.end(bytes);
    },
    response,
    get answered() {
      return answered;
    },
    destroy() {
      req.destroy();
    },
  };
}
