/**
 * The one `clip`: bounds text taken from a request or a token before it goes into a log line, an
 * error message or an `explain` trace (SPEC §6: such fields are clipped to 256 bytes). Counts
 * UTF-8 bytes, cuts on a character boundary and marks the cut with `…`, so a clipped value can
 * never be mistaken for the whole one. Pure; no `node:` import.
 *
 * @example
 *   clip('a'.repeat(300));        // 'aaaa…' (256 bytes of 'a' then '…')
 *   clip('room', 256);            // 'room'
 *   clip('ééé', 4);               // 'éé…'
 */
const encoder = new TextEncoder();

/** Default bound for request- and token-derived fields, bytes. */
export const CLIP_BYTES = 256;

export function clip(s: string, maxBytes: number = CLIP_BYTES): string {
  // Fast path: every UTF-16 unit is at most 3 UTF-8 bytes.
  if (s.length * 3 <= maxBytes) return s;
  if (encoder.encode(s).length <= maxBytes) return s;
  let bytes = 0;
  let end = 0;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    const n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (bytes + n > maxBytes) break;
    bytes += n;
    end += ch.length;
  }
  return `${s.slice(0, end)}…`;
}
