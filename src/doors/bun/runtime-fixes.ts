/**
 * Node behaviour the Bun door relies on and Bun 1.4 lacks, added only where it is missing (this
 * module is loaded by the Bun door only, so Node never runs it).
 *
 * `TracingChannel.prototype.hasSubscribers` (node:diagnostics_channel; Node ≥ 20.13 / 22): Bun
 * leaves it undefined (oven-sh/bun#27805, open). pino checks `asJsonChan.hasSubscribers === false`
 * before every line and otherwise runs `traceSync`, which builds a context object and runs the
 * channels' stores: on Bun every access line paid for tracing that nobody listens to (5 % of the Bun
 * door's CPU sampled in a --cpu-prof under the rig's load, mostly attribution: 1.022× requests/s
 * with the getter in one interleaved A/B, within noise build against build; bench/RIG-RESULTS.md).
 * The getter is Node's: true while any of the five trace channels has a subscriber, so a
 * subscriber still receives every event.
 */
import dc from 'node:diagnostics_channel';

interface TraceChannels {
  start: { hasSubscribers: boolean };
  end: { hasSubscribers: boolean };
  asyncStart: { hasSubscribers: boolean };
  asyncEnd: { hasSubscribers: boolean };
  error: { hasSubscribers: boolean };
}

/** Defines the getter on TracingChannel's prototype when the runtime has none; true if it did. */
export function addTracingChannelHasSubscribers(): boolean {
  const proto = Object.getPrototypeOf(dc.tracingChannel('scopegate:runtime-fixes')) as object;
  if ('hasSubscribers' in proto) return false;
  Object.defineProperty(proto, 'hasSubscribers', {
    configurable: true,
    enumerable: false,
    get(this: TraceChannels): boolean {
      return (
        this.start.hasSubscribers ||
        this.end.hasSubscribers ||
        this.asyncStart.hasSubscribers ||
        this.asyncEnd.hasSubscribers ||
        this.error.hasSubscribers
      );
    },
  });
  return true;
}

addTracingChannelHasSubscribers();
