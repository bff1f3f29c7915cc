/**
 * CIDR lists (SPEC §5 `trusted_proxies`): parse once at config load, match a peer address per
 * request. Pure, no `node:` import, so every door (Node, Bun, a Hono app on another runtime) can
 * use it. IPv4, IPv6 (with `::` compression and embedded IPv4) and IPv4-mapped IPv6 peers
 * (`::ffff:127.0.0.1`, as a dual-stack Node socket reports an IPv4 client) are understood.
 *
 * @example
 *   const trusted = compileCidrs(['127.0.0.0/8', '::1/128', '10.0.0.0/8']);
 *   trusted.contains('::ffff:10.1.2.3'); // true
 *   trusted.contains('192.168.0.1');     // false
 *   cidrProblem('10.0.0.0/33');          // 'prefix length must be 0-32 for IPv4'
 */

/** A parsed address: 4 or 16 bytes. */
type Bytes = number[];

function parseV4(s: string): Bytes | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  const out: Bytes = [];
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out.push(n);
  }
  return out;
}

function parseV6(input: string): Bytes | null {
  let s = input;
  const zone = s.indexOf('%');
  if (zone !== -1) s = s.slice(0, zone);
  if (s === '' || !/^[0-9A-Fa-f:.]+$/.test(s)) return null;
  let tail: Bytes = [];
  const lastColon = s.lastIndexOf(':');
  if (s.includes('.')) {
    const v4 = parseV4(s.slice(lastColon + 1));
    if (!v4) return null;
    tail = v4;
    s = `${s.slice(0, lastColon + 1)}0:0`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const groups = (h: string): number[] | null => {
    if (h === '') return [];
    const out: number[] = [];
    for (const g of h.split(':')) {
      if (!/^[0-9A-Fa-f]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = groups(halves[0]!);
  const rest = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !rest) return null;
  let all: number[];
  if (halves.length === 2) {
    const fill = 8 - head.length - rest.length;
    if (fill < 1) return null;
    all = [...head, ...Array<number>(fill).fill(0), ...rest];
  } else {
    all = head;
  }
  if (all.length !== 8) return null;
  const bytes: Bytes = [];
  for (const g of all) bytes.push(g >> 8, g & 0xff);
  if (tail.length) bytes.splice(12, 4, ...tail);
  return bytes;
}

/** An address as bytes; an IPv4-mapped IPv6 address becomes its IPv4 form. */
export function parseAddress(s: string): Bytes | null {
  const v4 = parseV4(s);
  if (v4) return v4;
  const v6 = parseV6(s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : s);
  if (!v6) return null;
  const mapped = v6.slice(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff;
  return mapped ? v6.slice(12) : v6;
}

interface Block {
  bytes: Bytes;
  bits: number;
}

function parseCidr(s: string): Block | string {
  const slash = s.indexOf('/');
  const addr = slash === -1 ? s : s.slice(0, slash);
  const bytes = parseV4(addr) ?? parseV6(addr);
  if (!bytes) return `"${addr.slice(0, 64)}" is not an IPv4 or IPv6 address`;
  const max = bytes.length * 8;
  if (slash === -1) return { bytes, bits: max };
  const len = s.slice(slash + 1);
  if (!/^[0-9]{1,3}$/.test(len) || Number(len) > max) return `prefix length must be 0-${max} for ${max === 32 ? 'IPv4' : 'IPv6'}`;
  return { bytes, bits: Number(len) };
}

/** A message when `s` is not a CIDR or an address, else null. */
export function cidrProblem(s: string): string | null {
  const r = parseCidr(s);
  return typeof r === 'string' ? r : null;
}

function inBlock(addr: Bytes, b: Block): boolean {
  if (addr.length !== b.bytes.length) return false;
  let bits = b.bits;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((addr[i]! & mask) !== (b.bytes[i]! & mask)) return false;
  }
  return true;
}

export interface CidrList {
  /** True when `address` (as a socket reports it) lies in one of the blocks. Unparseable → false. */
  contains(address: string | undefined): boolean;
}

/** Compiles a validated list (config load has rejected bad entries; a bad one here throws TypeError). */
export function compileCidrs(list: readonly string[]): CidrList {
  const blocks: Block[] = list.map((s) => {
    const r = parseCidr(s);
    if (typeof r === 'string') throw new TypeError(`trusted_proxies: ${r}`);
    // An IPv4-mapped IPv6 block is matched against mapped peers, which parseAddress turns into IPv4.
    const mapped = r.bytes.length === 16 && r.bytes.slice(0, 10).every((b) => b === 0) && r.bytes[10] === 0xff && r.bytes[11] === 0xff && r.bits >= 96;
    return mapped ? { bytes: r.bytes.slice(12), bits: r.bits - 96 } : r;
  });
  const seen = new Map<string, boolean>();
  return {
    contains(address) {
      if (!address) return false;
      const hit = seen.get(address);
      if (hit !== undefined) return hit;
      const bytes = parseAddress(address);
      const ok = bytes !== null && blocks.some((b) => inBlock(bytes, b));
      // Peers are few (proxies, load balancers); bound the memo so a scan of addresses cannot grow it.
      if (seen.size < 4096) seen.set(address, ok);
      return ok;
    },
  };
}
