import { isIP } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cidrProblem, compileCidrs, parseAddress } from './cidr.js';

describe('compileCidrs: which peers are trusted_proxies', () => {
  const trusted = compileCidrs(['127.0.0.0/8', '::1/128', '10.0.0.0/8', '192.168.1.7', 'fd00::/8']);
  it.each([
    ['127.0.0.1', true],
    ['127.255.255.254', true],
    ['::ffff:127.0.0.1', true], // a dual-stack socket reporting an IPv4 client
    ['::1', true],
    ['10.200.3.4', true],
    ['::ffff:10.1.2.3', true],
    ['192.168.1.7', true],
    ['192.168.1.8', false],
    ['fd12:3456::1', true],
    ['fe80::1', false],
    ['11.0.0.1', false],
    ['::2', false],
    ['', false],
    ['localhost', false],
    ['127.0.0.1.evil', false],
    ['0127.0.0.1', false], // no octal or leading-zero spellings
    ['[::1]', true],
  ])('%s → %s', (addr, expected) => {
    expect(trusted.contains(addr)).toBe(expected);
  });
  it('treats an undefined peer (a socket already gone) as untrusted', () => {
    expect(trusted.contains(undefined)).toBe(false);
  });
  it('matches IPv4-mapped blocks against mapped and plain IPv4 peers alike', () => {
    const mapped = compileCidrs(['::ffff:10.0.0.0/104']);
    expect(mapped.contains('10.9.9.9')).toBe(true);
    expect(mapped.contains('::ffff:10.9.9.9')).toBe(true);
    expect(mapped.contains('11.0.0.1')).toBe(false);
  });
  it('trusts nobody with an empty list and everybody with 0.0.0.0/0 + ::/0', () => {
    expect(compileCidrs([]).contains('127.0.0.1')).toBe(false);
    const all = compileCidrs(['0.0.0.0/0', '::/0']);
    expect(all.contains('8.8.8.8')).toBe(true);
    expect(all.contains('2001:db8::1')).toBe(true);
  });
});

describe('cidrProblem: config validation', () => {
  it.each(['10.0.0.0/8', '::1/128', '2001:db8::/32', '1.2.3.4', '::ffff:1.2.3.4', '0.0.0.0/0'])('accepts %s', (c) => {
    expect(cidrProblem(c)).toBeNull();
  });
  it.each([
    ['10.0.0.0/33', /0-32 for IPv4/],
    ['::/129', /0-128 for IPv6/],
    ['10.0.0/8', /not an IPv4 or IPv6 address/],
    ['300.1.1.1', /not an IPv4 or IPv6 address/],
    ['1::2::3', /not an IPv4 or IPv6 address/],
    ['10.0.0.0/x', /prefix length/],
    ['', /not an IPv4 or IPv6 address/],
  ])('refuses %s, saying why', (c, why) => {
    expect(cidrProblem(c)).toMatch(why);
  });
});

describe('parseAddress agrees with node:net on arbitrary input', () => {
  it('never throws, and parses exactly what node:net calls an IP (IPv4 in dotted-decimal, IPv6)', () => {
    const candidate = fc.oneof(
      fc.string({ maxLength: 45 }),
      fc.ipV4(),
      fc.ipV6(),
      fc.ipV4().map((a) => `::ffff:${a}`),
    );
    fc.assert(
      fc.property(candidate, (s) => {
        const parsed = parseAddress(s);
        if (isIP(s) !== 0) expect(parsed).not.toBeNull();
        if (parsed !== null) expect(isIP(s.replace(/^\[(.*)\]$/, '$1'))).not.toBe(0);
      }),
      { numRuns: 3000 },
    );
  });
  it('puts every address inside its own /32 or /128 and inside 0.0.0.0/0 or ::/0', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), (a) => {
        expect(compileCidrs([a]).contains(a)).toBe(true);
        expect(compileCidrs(['0.0.0.0/0', '::/0']).contains(a)).toBe(true);
      }),
    );
  });
});
