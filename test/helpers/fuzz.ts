/**
 * How many generated requests a wire-level property test sends: `defaultRuns`, or
 * $SCOPEGATE_FUZZ_RUNS for a longer hunt (a positive integer; anything else is refused).
 *
 * @example
 *   const RUNS = fuzzRuns(1000);
 *   await fc.assert(fc.asyncProperty(gen, probe), { numRuns: RUNS });
 */
export function fuzzRuns(defaultRuns: number): number {
  const set = process.env['SCOPEGATE_FUZZ_RUNS'];
  if (set === undefined || set === '') return defaultRuns;
  if (!/^[1-9][0-9]*$/.test(set)) throw new Error(`SCOPEGATE_FUZZ_RUNS must be a positive integer, got ${JSON.stringify(set)}`);
  return Number(set);
}
