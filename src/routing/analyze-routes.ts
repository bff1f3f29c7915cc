/**
 * Route-table review for `scopegate check`: finds what `compileRoutes` refuses (as errors, all of
 * them instead of the first throw) and what it accepts but is probably a mistake (warnings):
 * routes that can never be chosen, non-public routes without scopes, `room_param` or
 * `flood_control.param` naming a parameter the path lacks, auth settings on public routes.
 *
 * @example
 *   for (const f of analyzeRoutes(config.routes, { fallback: config.fallback })) {
 *     console.log(`${f.severity} routes[${f.index}] ${f.code}: ${f.message}`);
 *   }
 */
import { HTTP_METHODS, type RouteConfig } from '../config/schema.js';
import type { CompiledRoute } from '../types.js';
import {
  buildTrie,
  compileRoute,
  idConflicts,
  IMPLICIT_METHODS,
  parsePattern,
  pathProblems,
  slotRouteFor,
  type PatternSegment,
  type ShapeSlot,
  type TrieNode,
} from './compile-routes.js';

export type RouteFindingCode =
  | 'invalid_path'
  | 'duplicate'
  | 'duplicate_id'
  | 'shadowed'
  | 'method_shadowed'
  | 'no_scopes'
  | 'room_param_missing'
  | 'flood_param_missing'
  | 'public_with_auth'
  | 'semicolon_literal'
  /** The token service answers this route's path before the route table (SPEC §9). */
  | 'service_shadowed';

export interface RouteFinding {
  /** `error`: `compileRoutes` refuses the table (check exits 1). `warning`: accepted, but look. */
  severity: 'error' | 'warning';
  code: RouteFindingCode;
  /** The route's id (its path unless named). */
  route: string;
  /** Position in the `routes` list. */
  index: number;
  message: string;
}

export interface AnalyzeOptions {
  /** The config's `fallback`; only changes the wording of `no_scopes`. Default `deny`. */
  fallback?: 'deny' | 'authenticated';
}

/** Stands for every method outside HTTP_METHODS, which only routes without `methods` serve. */
const OTHER = '\0other';

/**
 * The methods of a route in words, for `check`'s listing: its own list (GET implying HEAD), or
 * for a route without `methods` `* (not TRACE, CONNECT)` — every method except those two, which
 * only a route listing them serves (SPEC §1.8).
 *
 * @example
 *   methodsLabel(null);                        // '* (not TRACE, CONNECT)'
 *   methodsLabel(new Set(['GET', 'HEAD']));    // 'GET,HEAD'
 */
export function methodsLabel(methods: ReadonlySet<string> | readonly string[] | null): string {
  if (methods === null) return `* (not ${HTTP_METHODS.filter((m) => !IMPLICIT_METHODS.includes(m)).join(', ')})`;
  return [...methods].join(',');
}

/**
 * Reviews a route list. Errors: `invalid_path`, `duplicate` (same method and path shape),
 * `duplicate_id`. Warnings: `shadowed` (the route is never chosen, or only for paths ending in
 * "/"), `method_shadowed` (never chosen for some of its methods), `no_scopes`,
 * `room_param_missing`, `flood_param_missing`, `public_with_auth`, `semicolon_literal` (a literal
 * with `;`, which requests can only spell `%3B`: a raw `;` is refused). Sorted by route index, errors
 * first. An empty array means the table is clean.
 *
 * @example
 *   analyzeRoutes([{ path: '/a', methods: ['GET'], public: false }]);
 *   // [{ severity: 'warning', code: 'no_scopes', route: '/a', index: 0, message: 'Route "/a" (routes[0]) ...' }]
 */
export function analyzeRoutes(routes: readonly RouteConfig[], opts: AnalyzeOptions = {}): RouteFinding[] {
  const findings: RouteFinding[] = [];
  const invalid = new Set<number>();
  for (const issue of pathProblems(routes)) {
    const index = Number(/\[(\d+)\]/.exec(issue.path)?.[1]);
    invalid.add(index);
    const r = routes[index]!;
    findings.push({
      severity: 'error',
      code: 'invalid_path',
      route: r.id ?? String(r.path),
      index,
      message: `Route ${index} has an invalid path "${String(r.path)}": ${issue.message}.`,
    });
  }

  const compiled = routes.flatMap((r, i) => (invalid.has(i) ? [] : [compileRoute(r, i)]));
  const { root, conflicts } = buildTrie(compiled);
  const conflicted = new Set<number>();
  for (const c of [...conflicts, ...idConflicts(compiled)]) {
    conflicted.add(c.index);
    const r = compiled.find((x) => x.index === c.index)!;
    findings.push({ severity: 'error', code: c.kind, route: r.id, index: c.index, message: `${name(r)}: ${c.message}.` });
  }

  for (const r of compiled) {
    if (!conflicted.has(r.index)) {
      const f = shadowFinding(root, r);
      if (f) findings.push(f);
    }
    findings.push(...settingFindings(r, opts));
  }

  const rank = (f: RouteFinding) => (f.severity === 'error' ? 0 : 1);
  return findings.sort((a, b) => a.index - b.index || rank(a) - rank(b));
}

function name(r: CompiledRoute): string {
  return r.id === r.config.path
    ? `Route "${r.id}" (routes[${r.index}])`
    : `Route "${r.id}" (routes[${r.index}], path ${r.config.path})`;
}

function finding(r: CompiledRoute, code: RouteFindingCode, message: string): RouteFinding {
  return { severity: 'warning', code, route: r.id, index: r.index, message };
}

function settingFindings(r: CompiledRoute, opts: AnalyzeOptions): RouteFinding[] {
  const c = r.config;
  const out: RouteFinding[] = [];
  const semi = parsePattern(c.path).find((s) => s.kind === 'static' && s.value.includes(';'));
  if (semi?.kind === 'static') {
    out.push(
      finding(r, 'semicolon_literal', `${name(r)} has ";" in the literal segment "${semi.value}". Requests with a raw ";" in the path are refused (Tomcat, Jetty and Spring read it as a path parameter), so only clients that send it as %3B ("${semi.value.replaceAll(';', '%3B')}") reach this route. Rename the segment, or use a {param}.`),
    );
  }
  const paramList = r.params.length ? `its path parameters are ${r.params.map((p) => `{${p}}`).join(', ')}` : 'its path has no parameters';
  if (c.public) {
    const extra = (['scopes', 'scopes_all', 'client_types', 'room_param', 'flood_control', 'rate_limit'] as const).filter((k) => c[k] !== undefined);
    if (extra.length) {
      out.push(
        finding(r, 'public_with_auth', `${name(r)} is public, so no token is checked and ${extra.join(', ')} ${extra.length > 1 ? 'have' : 'has'} no effect. Remove ${extra.length > 1 ? 'them' : 'it'}, or remove \`public: true\`.`),
      );
    }
    return out;
  }
  if (!c.scopes && !c.scopes_all) {
    const types = c.client_types ? ` of an allowed client type (${c.client_types.join(', ')})` : '';
    const fallback =
      opts.fallback === 'authenticated'
        ? ' (that is also what fallback: authenticated gives every path no route matches)'
        : '';
    out.push(
      finding(r, 'no_scopes', `${name(r)} is not public but lists no scopes: any valid token${types} can call it${fallback}. Add \`scopes\` (any one required) or \`scopes_all\` (every one required), or mark it \`public: true\` if no token is needed.`),
    );
  }
  if (c.room_param !== undefined && !r.params.includes(c.room_param)) {
    out.push(
      finding(r, 'room_param_missing', `${name(r)} has room_param "${c.room_param}", but ${paramList}. Room-bound tokens (room clients, or tokens with a room claim) will always be refused here with room_forbidden. Set room_param to the parameter that holds the room id or name.`),
    );
  }
  if (c.flood_control && !r.params.includes(c.flood_control.param)) {
    out.push(
      finding(r, 'flood_param_missing', `${name(r)} has flood_control.param "${c.flood_control.param}", but ${paramList}, so flood control cannot tell recipients apart. Set it to the parameter that names the recipient.`),
    );
  }
  return out;
}

/*
 * Shadow analysis.
 *
 * A route R is chosen for method m and path p when R matches p, serves m, and no route that is
 * more specific than R (segment kinds compared left to right: literal < {param} < *; for the same
 * shape, an explicit HEAD route beats the GET route for HEAD) also matches p and serves m. So R is
 * dead for m exactly when every path R matches is also matched by some more specific route
 * serving m, and dead altogether when that holds for every method it serves.
 *
 * `covered` decides that by walking R's pattern and the trie side by side. It keeps the set of
 * trie nodes whose prefix matches the same paths' prefix, each flagged `ahead` once the node's
 * prefix is already more specific than R's (only those can win; a node less specific at an
 * earlier segment never can, and a node equal so far is R's own shape). At each segment of R:
 *  - R ends: covered iff an `ahead` node has a route ending there that serves m;
 *  - R goes on, and an `ahead` node has a wildcard route serving m: that route matches every
 *    remaining path, so covered;
 *  - R has literal L: continue with the nodes' L children and, when `ahead`, their param children
 *    (a param is less specific than L, so it only wins if already ahead);
 *  - R has {param}: the segment can be any non-empty value. A value equal to no literal is the
 *    hardest case — literal values only add candidates — so continue with the param children only;
 *  - R has *: the path may stop here with an empty last segment ("/a/" for "/a/*"), which only a
 *    wildcard can match, so it is uncovered. Otherwise it goes on with one non-empty segment and
 *    either ends or continues with another *; both continuations are checked the same way, with
 *    every node now `ahead` (anything is more specific than R's *). The trie is finite, so this ends.
 * With `ignoreTrailingSlash` the empty-last-segment paths are left out; a route covered only then
 * is reported as used only for paths ending in "/" (e.g. "/a/*" next to "/a/{x}" and "/a/{x}/*").
 *
 * Consequence worth knowing: since the order is lexicographic, a route always wins the paths where
 * its own segments take values no literal sibling names, except where its `*` meets a trailing
 * "/". So in practice only wildcard routes are ever (almost) shadowed, and a route is dead
 * outright only for a method that another route of the same shape takes (an explicit HEAD).
 * The randomised test in analyze-routes.test.ts checks this analysis against `matchRoute` itself.
 */

interface Alive {
  node: TrieNode;
  ahead: boolean;
}

interface Walk {
  method: string;
  ignoreTrailingSlash: boolean;
  /** Routes that won some of R's paths (for the message). */
  winners: Set<CompiledRoute>;
}

function wins(slot: ShapeSlot | undefined, w: Walk): boolean {
  const q = slot && slotRouteFor(slot, w.method);
  if (!q) return false;
  w.winners.add(q);
  return true;
}

/** Returns null when covered, else an example uncovered path (params shown as `{name}`). */
function covered(pattern: readonly PatternSegment[], i: number, alive: readonly Alive[], w: Walk, at: string): string | null {
  const seg = pattern[i];
  if (seg === undefined) return alive.some((a) => a.ahead && wins(a.node.end, w)) ? null : at || '/';
  // At least one segment remains, so a wildcard route here matches every remaining path.
  if (alive.some((a) => a.ahead && wins(a.node.wildcard, w))) return null;
  if (seg.kind === 'static') {
    const next: Alive[] = [];
    for (const a of alive) {
      const child = a.node.statics.get(seg.value);
      if (child) next.push({ node: child, ahead: a.ahead });
      if (a.ahead && a.node.param) next.push({ node: a.node.param, ahead: true });
    }
    return covered(pattern, i + 1, next, w, `${at}/${seg.value}`);
  }
  if (seg.kind === 'param') {
    const next = alive.flatMap((a) => (a.node.param ? [{ node: a.node.param, ahead: a.ahead }] : []));
    return covered(pattern, i + 1, next, w, `${at}/{${seg.name}}`);
  }
  if (!w.ignoreTrailingSlash) return `${at}/`;
  const next = alive.flatMap((a) => (a.node.param ? [{ node: a.node.param, ahead: true }] : []));
  const more = `${at}/{anything}`;
  return covered([], 0, next, w, more) ?? covered([{ kind: 'wildcard' }], 0, next, w, more);
}

function slotOf(root: TrieNode, pattern: readonly PatternSegment[]): ShapeSlot {
  let node = root;
  for (const seg of pattern) {
    if (seg.kind === 'wildcard') return node.wildcard!;
    node = seg.kind === 'param' ? node.param! : node.statics.get(seg.value)!;
  }
  return node.end!;
}

function shadowFinding(root: TrieNode, r: CompiledRoute): RouteFinding | null {
  const pattern = parsePattern(r.config.path);
  const slot = slotOf(root, pattern);
  const listed: string[] = r.config.methods ? [...new Set(r.config.methods)] : [...IMPLICIT_METHODS];
  const served = r.config.methods ? [...(r.methods ?? [])] : [...IMPLICIT_METHODS, OTHER];
  const winners = new Set<CompiledRoute>();
  const dead = new Set<string>();
  const trailing = new Map<string, string>();
  for (const method of served) {
    const own = slotRouteFor(slot, method);
    if (own !== r) {
      if (own) winners.add(own);
      dead.add(method);
      continue;
    }
    const start: Alive[] = [{ node: root, ahead: false }];
    const relaxed: Walk = { method, ignoreTrailingSlash: true, winners: new Set() };
    if (covered(pattern, 0, start, relaxed, '') !== null) continue;
    const precise: Walk = { method, ignoreTrailingSlash: false, winners: new Set() };
    const example = covered(pattern, 0, start, precise, '');
    for (const q of relaxed.winners) winners.add(q);
    if (example === null) dead.add(method);
    else trailing.set(method, example);
  }
  winners.delete(r);
  const by = [...winners].sort((a, b) => a.index - b.index).map((q) => `"${q.id}" (routes[${q.index}])`).join(', ');
  const example = [...trailing.values()][0];
  const methodsText = (ms: readonly string[]) => ms.filter((m) => m !== OTHER).join(', ');

  if (served.every((m) => dead.has(m))) {
    const what = r.config.methods ? `${methodsText(listed)} request` : 'request';
    return finding(r, 'shadowed', `${name(r)} is never used: every ${what} it matches goes to a more specific route instead: ${by}. Remove it, or change its path or methods.`);
  }
  if (served.every((m) => dead.has(m) || trailing.has(m))) {
    return finding(r, 'shadowed', `${name(r)} is only used for paths ending in "/" (such as "${example}"): every other request it matches goes to a more specific route instead: ${by}. Remove it, or change its path or methods.`);
  }
  const lost = listed.filter((m) => dead.has(m) || trailing.has(m));
  if (lost.length === 0) return null;
  const except = lost.some((m) => trailing.has(m)) ? ` (except paths ending in "/", such as "${example}")` : '';
  return finding(r, 'method_shadowed', `${name(r)} never handles ${methodsText(lost)}${except}: those requests go to a more specific route instead: ${by}. Remove ${lost.length > 1 ? 'those methods' : 'that method'} from it, or change its path.`);
}
