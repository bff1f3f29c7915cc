/**
 * The few Bun APIs the Bun door uses, typed here instead of pulling the whole bun-types package
 * into every compilation (its globals would leak into the Node code). Read at runtime from
 * `globalThis.Bun`; this module is only ever imported on Bun.
 *
 * @example
 *   const server = bun().serve({ port: 0, hostname: '127.0.0.1', fetch: (req) => new Response('ok') });
 *   server.port; server.stop();
 */

export interface BunServerWebSocket<T> {
  readonly data: T;
  readonly readyState: number;
  send(data: string | ArrayBuffer | Uint8Array): number;
  close(code?: number, reason?: string): void;
}

export interface BunServer {
  readonly port: number;
  readonly hostname: string;
  readonly pendingRequests: number;
  readonly pendingWebSockets: number;
  requestIP(req: Request): { address: string; family: string; port: number } | null;
  upgrade<T>(req: Request, opts?: { headers?: Record<string, string>; data?: T }): boolean;
  stop(closeActiveConnections?: boolean): Promise<void>;
}

export interface BunWebSocketHandler<T> {
  open?(ws: BunServerWebSocket<T>): void;
  message(ws: BunServerWebSocket<T>, message: string | Uint8Array): void;
  close?(ws: BunServerWebSocket<T>, code: number, reason: string): void;
  drain?(ws: BunServerWebSocket<T>): void;
  maxPayloadLength?: number;
  idleTimeout?: number;
  backpressureLimit?: number;
}

export interface BunServeOptions<T> {
  port: number;
  hostname: string;
  /** Seconds a connection may be idle; Bun caps it at 255. */
  idleTimeout?: number;
  maxRequestBodySize?: number;
  development?: boolean;
  fetch(req: Request, server: BunServer): Response | Promise<Response> | undefined | Promise<Response | undefined>;
  error?(err: Error): Response | Promise<Response>;
  websocket?: BunWebSocketHandler<T>;
  tls?: { cert: string; key: string };
  /**
   * SO_REUSEPORT: a second server may listen on the same port (same user only, on Linux); the
   * kernel spreads new connections between them. How the Bun door swaps a certificate.
   */
  reusePort?: boolean;
}

export interface BunRuntime {
  serve<T = unknown>(opts: BunServeOptions<T>): BunServer;
  readonly version: string;
}

export function bun(): BunRuntime {
  const b = (globalThis as { Bun?: BunRuntime }).Bun;
  if (!b) throw new TypeError('the Bun door runs on Bun only (bun dist/cli.js serve)');
  return b;
}

/** The controller of Bun's `type: 'direct'` ReadableStream: writes go straight to the sink. */
export interface BunDirectController {
  /** A promise when the sink is full: awaiting it is the backpressure. */
  write(data: Uint8Array): number | Promise<number>;
  close(error?: Error): void;
}

/** A `type: 'direct'` stream (Bun only): Bun.serve calls `pull` once; its rejection errors the response. */
export function directStream(pull: (ctrl: BunDirectController) => Promise<void>): ReadableStream<Uint8Array> {
  return new ReadableStream({ type: 'direct', pull } as never) as ReadableStream<Uint8Array>;
}

