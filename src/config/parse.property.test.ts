/**
 * Property tests for the config parser (parse.ts): `${ENV}` interpolation treats environment
 * values as data, literal text stays as written, and no text — valid, mangled or random — makes
 * the parser fail with anything but a ConfigError that names its problems.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { loadConfigText, parseConfigText } from './parse.js';

/** A valid config with `secrets` as written (a YAML flow sequence's items). */
const withSecrets = (secrets: string) => `
upstreams:
  default: { url: "http://127.0.0.1:1" }
tokens:
  issuers:
    - name: local
      audience: \${AUD:-api}
      algorithms: [HS256]
      secrets: [${secrets}]
routes:
  - { path: /a, scopes: [x] }
`;

const secretsOf = (text: string, env: Record<string, string>) => loadConfigText(text, { env }).config.tokens.issuers[0]!.secrets;

/** Strings up to 40 characters from every plane, with the characters interpolation treats specially over-represented. */
const anyText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.array(fc.constantFrom('$', '{', '}', '$${', '${X}', '__SGENV_0__', '__SGENV_1__', '0', '9', '-', ' ', '\n', '"', "'", '#', ':', 'é', '\u0000'), { maxLength: 12 }).map((a) => a.join('')),
);

describe('config interpolation (property)', () => {
  it('puts an environment value in verbatim, whatever it holds (`$${`, placeholder look-alikes, digits, quotes, newlines)', () => {
    fc.assert(
      fc.property(anyText, fc.boolean(), (v, quoted) => {
        const value = `secret-0123456789${v}`; // at least 16 characters, as the schema asks
        const ref = quoted ? '"${S}"' : '${S}';
        expect(secretsOf(withSecrets(ref), { S: value })).toEqual([value]);
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps a value made only of digits a string where the schema wants one (a numeric audience or secret from the environment)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 10n ** 15n, max: 10n ** 30n }), fc.boolean(), (n, quoted) => {
        const digits = n.toString();
        const text = withSecrets(quoted ? '"${S}"' : '${S}');
        const { config } = loadConfigText(text, { env: { S: digits, AUD: digits } });
        expect(config.tokens.issuers[0]!.secrets).toEqual([digits]);
        expect(config.tokens.issuers[0]!.audience).toBe(digits);
      }),
      { numRuns: 300 },
    );
  });

  it('leaves literal text as written, `$${` read as `${`, next to references', () => {
    const literal = fc.array(fc.constantFrom('a', 'Z', '{', '}', '$${', '__SGENV_0__', '__SGENV_1__', ' ', '-', '0'), { minLength: 1, maxLength: 12 }).map((a) => `literal-0123456789${a.join('')}`);
    fc.assert(
      fc.property(literal, anyText, (lit, v) => {
        const text = withSecrets(`${JSON.stringify(lit)}, "\${S}"`);
        expect(secretsOf(text, { S: `env-value-0123456${v}` })).toEqual([lit.replaceAll('$${', '${'), `env-value-0123456${v}`]);
      }),
      { numRuns: 2000 },
    );
  });

  it('still turns a whole reference to a number or boolean where the schema wants one', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 65_535 }), fc.boolean(), fc.boolean(), (port, watch, quoted) => {
        const q = (s: string) => (quoted ? `"${s}"` : s);
        const { config } = loadConfigText(`listen: { port: ${q('${P}')} }\nwatch: ${q('${W}')}\n${withSecrets('"0123456789abcdef"')}`, { env: { P: String(port), W: String(watch) } });
        expect(config.listen.port).toBe(port);
        expect(config.watch).toBe(watch);
      }),
      { numRuns: 300 },
    );
  });
});

describe('config text that is not a valid config (property)', () => {
  const valid = withSecrets('"0123456789abcdef"');
  const lines = valid.split('\n');
  /** The valid config with lines dropped, repeated, swapped or overwritten, or bytes spliced in. */
  const mangled = fc.oneof(
    fc.array(fc.record({ op: fc.constantFrom('drop', 'dup', 'swap', 'replace', 'indent'), at: fc.nat(lines.length - 1), with: anyText }), { minLength: 1, maxLength: 4 }).map((ops) => {
      const out = [...lines];
      for (const o of ops) {
        const i = o.at % out.length;
        if (o.op === 'drop') out.splice(i, 1);
        else if (o.op === 'dup') out.splice(i, 0, out[i]!);
        else if (o.op === 'swap' && i + 1 < out.length) [out[i], out[i + 1]] = [out[i + 1]!, out[i]!];
        else if (o.op === 'replace') out[i] = o.with;
        else out[i] = `  ${out[i]}`;
      }
      return out.join('\n');
    }),
    fc.tuple(fc.nat(valid.length), anyText).map(([at, s]) => valid.slice(0, at) + s + valid.slice(at)),
    fc.string({ unit: 'binary', maxLength: 300 }),
  );

  it('answers with the config or a ConfigError whose every issue says what is wrong, and where when it can', () => {
    fc.assert(
      fc.property(mangled, (text) => {
        const parsed = parseConfigText(text, { env: {} });
        const total = text.split('\n').length;
        for (const i of parsed.issues) {
          expect(i.message.length).toBeGreaterThan(0);
          if (i.line !== undefined) expect(i.line >= 1 && i.line <= total + 1, `line ${i.line} of ${total}`).toBe(true);
        }
        expect(parsed.config === undefined).toBe(parsed.issues.length > 0);
        try {
          loadConfigText(text, { env: {} });
        } catch (e) {
          expect(e).toBeInstanceOf(ConfigError);
          expect((e as ConfigError).issues.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 3000 },
    );
  });
});
