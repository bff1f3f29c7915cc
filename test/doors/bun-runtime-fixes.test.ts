/**
 * src/doors/bun/runtime-fixes.ts, run in real Bun (node_modules/.bin/bun, TypeScript as is):
 * TracingChannel gets Node's `hasSubscribers` where Bun has none — false with no subscriber, true
 * while any of the five trace channels has one — and pino's tracing still reaches a subscriber, so
 * the fast path it enables loses no event.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { BUN } from '../helpers/process.js';

const FIXES = fileURLToPath(new URL('../../src/doors/bun/runtime-fixes.ts', import.meta.url));
const PINO = createRequire(import.meta.url).resolve('pino');

const SCRIPT = `
import dc from 'node:diagnostics_channel';
const before = dc.tracingChannel('t:before').hasSubscribers;
const { addTracingChannelHasSubscribers } = await import(${JSON.stringify(FIXES)});
const ch = dc.tracingChannel('t:after');
const out = { before: before === undefined ? 'undefined' : before, again: addTracingChannelHasSubscribers(), none: ch.hasSubscribers, each: {} };
for (const name of ['start', 'end', 'asyncStart', 'asyncEnd', 'error']) {
  const h = () => {};
  ch[name].subscribe(h);
  out.each[name] = ch.hasSubscribers;
  ch[name].unsubscribe(h);
}
out.afterUnsubscribe = ch.hasSubscribers;
const pino = (await import(${JSON.stringify(PINO)})).default;
const lines = [];
const log = pino({ base: null, timestamp: false }, { write: (l) => void lines.push(l) });
log.info('untraced');
const events = [];
const handlers = { start: (m) => events.push('start:' + m.arguments[1]), end: () => events.push('end') };
dc.tracingChannel('pino_asJson').subscribe(handlers);
log.info('traced');
dc.tracingChannel('pino_asJson').unsubscribe(handlers);
log.info('untraced again');
out.events = events;
out.lines = lines.map((l) => JSON.parse(l).msg);
console.log(JSON.stringify(out));
`;

describe('the Bun door runtime fixes, in Bun', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sg-bun-fixes-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("gives TracingChannel Node's hasSubscribers, and pino's trace events still reach a subscriber", () => {
    const file = join(dir, 'probe.mjs');
    writeFileSync(file, SCRIPT);
    const out = JSON.parse(execFileSync(BUN, [file], { encoding: 'utf8', timeout: 30_000 })) as Record<string, unknown>;
    // Bun 1.4 has no getter (the fix adds it); a Bun that gains one keeps its own.
    expect(['undefined', false]).toContain(out['before']);
    expect(out['again']).toBe(false);
    expect(out['none']).toBe(false);
    expect(out['each']).toEqual({ start: true, end: true, asyncStart: true, asyncEnd: true, error: true });
    expect(out['afterUnsubscribe']).toBe(false);
    expect(out['events']).toEqual(['start:traced', 'end']);
    expect(out['lines']).toEqual(['untraced', 'traced', 'untraced again']);
  });
});
