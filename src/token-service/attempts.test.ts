import { describe, expect, it } from 'vitest';
import { createAttemptLimiter } from './attempts.js';

function clockAt(start = 1_000_000) {
  let t = start;
  const clock = () => t;
  return Object.assign(clock, { advance: (ms: number) => void (t += ms) });
}

describe('createAttemptLimiter', () => {
  it('blocks a key after maxFailures within the window, until the window has passed', () => {
    const clock = clockAt();
    const l = createAttemptLimiter({ maxFailures: 3, windowMs: 60_000, maxKeys: 10, clock });
    for (let i = 0; i < 3; i++) {
      expect(l.blocked('user:alice')).toBe(false);
      l.fail('user:alice');
    }
    expect(l.blocked('user:alice')).toBe(true);
    expect(l.blocked('user:bob')).toBe(false);
    clock.advance(59_999);
    expect(l.blocked('user:alice')).toBe(true);
    clock.advance(1);
    expect(l.blocked('user:alice')).toBe(false);
  });

  it('counts the window from the first failure, not the last', () => {
    const clock = clockAt();
    const l = createAttemptLimiter({ maxFailures: 2, windowMs: 10_000, maxKeys: 10, clock });
    l.fail('k');
    clock.advance(9_000);
    l.fail('k');
    expect(l.blocked('k')).toBe(true);
    clock.advance(1_000);
    expect(l.blocked('k')).toBe(false);
    l.fail('k');
    expect(l.blocked('k')).toBe(false);
  });

  it('forgets a key on success', () => {
    const l = createAttemptLimiter({ maxFailures: 1, windowMs: 10_000, maxKeys: 10, clock: clockAt() });
    l.fail('k');
    expect(l.blocked('k')).toBe(true);
    l.succeed('k');
    expect(l.blocked('k')).toBe(false);
  });

  it('stays bounded by maxKeys however many keys fail', () => {
    const l = createAttemptLimiter({ maxFailures: 1, windowMs: 10_000, maxKeys: 50, clock: clockAt() });
    for (let i = 0; i < 1000; i++) l.fail(`user:${i}`);
    expect(l.size).toBe(50);
    expect(l.blocked('user:999')).toBe(true);
  });

  it.each([
    [{ maxFailures: 0 }, /maxFailures/],
    [{ windowMs: 1.5 }, /windowMs/],
    [{ maxKeys: -1 }, /maxKeys/],
  ])('validates options once (%j)', (bad, msg) => {
    expect(() => createAttemptLimiter({ maxFailures: 1, windowMs: 1, maxKeys: 1, clock: Date.now, ...bad })).toThrow(msg);
  });
});
