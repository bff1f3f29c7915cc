// k6 provides `console` (log/info/warn/error/debug) but @types/k6 does not declare it, and the DOM
// lib would declare far more than k6 has (fetch, window, ...).
declare const console: {
  log(...data: unknown[]): void;
  info(...data: unknown[]): void;
  warn(...data: unknown[]): void;
  error(...data: unknown[]): void;
  debug(...data: unknown[]): void;
};
