/**
 * Route matching (SPEC.md §1 step 2): method + raw path -> the most specific route serving the
 * method, 405 with the allowed methods, or 404. Runs on every request: one walk of the segment
 * trie built by `compileRoutes`, no regular expression per route.
 *
 * @example
 *   const r = matchRoute(table, 'POST', '/v2/room/My%20Room/notification');
 *   if (r.kind === 'match') r.params.room_id_or_name; // 'My Room'
 */
import type { CompiledRoute, MatchResult } from '../types.js';
import { namedMethods, slotRouteFor, type RouteTable, type ShapeSlot, type TrieNode } from './compile-routes.js';

/**
 * Matches `method` and `rawPath` (the request path before `?`, still percent-encoded, already
 * accepted by `checkPathSafety`) against `table`.
 *
 * - A literal segment matches the request segment with the same text, case-sensitively; a
 *   percent-encoded request segment is compared after decoding (`/v2/%72oom` is `/v2/room`, as most
 *   upstreams would read it, so encoding cannot step around a route).
 * - `{param}` matches one non-empty segment; its value is returned percent-decoded in `params`.
 * - A trailing `*` matches one or more remaining segments, i.e. every path that starts with the
 *   prefix and a `/`: `/v2/admin/*` matches `/v2/admin/` and `/v2/admin/x/y`, not `/v2/admin`.
 * - Most specific wins, segment by segment from the left: literal over `{param}` over `*`; among
 *   the routes matching the path only those serving the method count (an explicit HEAD route
 *   before the GET route for HEAD). If none serves it: `method_not_allowed` with the sorted union
 *   of the methods of the routes matching the path (HEAD included with GET).
 * - A route without `methods` serves every method except TRACE and CONNECT (in any letter case;
 *   SPEC §1.8): those are served only by a route that lists them, else 405. In `allow` such a
 *   route stands for GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS.
 *
 * @example
 *   matchRoute(table, 'DELETE', '/v2/room'); // { kind: 'method_not_allowed', allow: ['GET', 'HEAD', 'POST'] }
 */
export function matchRoute(table: RouteTable, method: string, rawPath: string): MatchResult {
  const segs = rawPath.slice(1).split('/');
  const values: string[] = [];
  let found: CompiledRoute | undefined;
  let foundValues: string[] = [];
  let allow: Set<string> | undefined;

  /** Considers the routes of one path-matching shape; true when one serves the method. */
  const visit = (slot: ShapeSlot): boolean => {
    const route = slotRouteFor(slot, method);
    if (route) {
      found = route;
      foundValues = values.slice();
      return true;
    }
    allow ??= new Set();
    for (const r of slot.routes) for (const m of namedMethods(r)) allow.add(m);
    return false;
  };

  // Depth-first in specificity order (literal, then param, then wildcard at each level), so the
  // first shape that serves the method is the most specific one.
  const walk = (node: TrieNode, i: number): boolean => {
    if (i === segs.length) return node.end !== undefined && visit(node.end);
    const seg = segs[i]!;
    const key = seg.includes('%') ? tryDecode(seg) : seg;
    if (key !== undefined) {
      const child = node.statics.get(key);
      if (child && walk(child, i + 1)) return true;
      if (node.param && key !== '') {
        values.push(key);
        const done = walk(node.param, i + 1);
        values.pop();
        if (done) return true;
      }
    }
    return node.wildcard !== undefined && visit(node.wildcard);
  };

  // "/" splits into one empty segment; the route "/" (no segments) is its exact match.
  if (rawPath === '/' && table.root.end && visit(table.root.end)) return matched(found!, foundValues);
  if (rawPath.startsWith('/') && walk(table.root, 0)) return matched(found!, foundValues);
  if (allow) return { kind: 'method_not_allowed', allow: [...allow].sort() };
  return { kind: 'not_found' };
}

/** Paths longer than this are matched every time, not remembered (the memo stays small). */
export const MEMO_PATH_MAX = 256;
/** Distinct method + path pairs remembered; the memo starts over when it is full. */
export const MEMO_ENTRIES_MAX = 4096;

/**
 * matchRoute for one table, remembering its answers: a request for a method and path seen
 * recently is answered with the same result (its `params` or `allow` frozen, so no caller can
 * change what the next request gets). Bounded by MEMO_ENTRIES_MAX pairs of paths up to MEMO_PATH_MAX
 * characters; a flood of distinct paths only makes the memo start over, each of those requests
 * matched as without it. A table is immutable once compiled, so an answer never goes stale.
 *
 * @example
 *   const match = createRouteMatcher(table);
 *   match('GET', '/v2/room/42'); // as matchRoute(table, 'GET', '/v2/room/42')
 */
export function createRouteMatcher(table: RouteTable): (method: string, rawPath: string) => MatchResult {
  const memo = new Map<string, MatchResult>();
  return (method, rawPath) => {
    if (rawPath.length > MEMO_PATH_MAX) return matchRoute(table, method, rawPath);
    // A method is an HTTP token and the path has passed checkTarget: neither holds a NUL.
    const key = `${method}\u0000${rawPath}`;
    let m = memo.get(key);
    if (m === undefined) {
      m = matchRoute(table, method, rawPath);
      // Shared by every later request for the pair: what a caller could change is frozen.
      if (m.kind === 'match') Object.freeze(m.params);
      else if (m.kind === 'method_not_allowed') Object.freeze(m.allow);
      if (memo.size >= MEMO_ENTRIES_MAX) memo.clear();
      memo.set(key, m);
    }
    return m;
  };
}

function matched(route: CompiledRoute, values: readonly string[]): MatchResult {
  // Null prototype: a parameter may legally be called `__proto__` or `constructor`.
  const params: Record<string, string> = Object.create(null) as Record<string, string>;
  // A plain loop: no closure allocated per request.
  const names = route.params;
  for (let i = 0; i < names.length; i++) params[names[i]!] = values[i] ?? '';
  return { kind: 'match', route, params };
}

function tryDecode(seg: string): string | undefined {
  try {
    return decodeURIComponent(seg);
  } catch {
    return undefined; // malformed encoding matches no literal and no parameter
  }
}
