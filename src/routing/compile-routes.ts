/**
 * Route compilation: turns the `routes` list of the config into a `RouteTable` — the compiled
 * routes plus a segment trie that `matchRoute` walks on every request and `analyzeRoutes` walks
 * for `scopegate check`. Pure; runs once per config load.
 *
 * @example
 *   const table = compileRoutes(config.routes);      // throws ConfigError on duplicates
 *   matchRoute(table, 'GET', '/v2/room/42');
 */
import { ConfigError, type ConfigIssue } from '../errors.js';
import { EXPLICIT_ONLY_METHODS, HTTP_METHODS, routeParams, routePathProblem, type HttpMethod, type RouteConfig } from '../config/schema.js';
import type { CompiledRoute } from '../types.js';

/** One segment of a route pattern. */
export type PatternSegment =
  | { kind: 'static'; value: string }
  | { kind: 'param'; name: string }
  | { kind: 'wildcard' };

/**
 * The routes that share one path shape (same literals, params and wildcard at the same places,
 * whatever the parameter names), split by the methods they serve. At most one route serves a
 * method here; the only allowed overlap is an explicit HEAD route next to a GET route. A route
 * without `methods` serves every method except TRACE and CONNECT (SPEC §1.8), so routes that
 * list only those may share its shape.
 */
export interface ShapeSlot {
  /** Every route of this shape, in config order. */
  readonly routes: CompiledRoute[];
  /** Method -> route, for methods listed in `methods`. */
  readonly explicit: Map<string, CompiledRoute>;
  /** The GET route, which serves HEAD unless another route lists HEAD. */
  impliedHead: CompiledRoute | undefined;
  /**
   * A route without `methods`: serves every method but TRACE and CONNECT (then the only other
   * routes of the shape list nothing but those).
   */
  any: CompiledRoute | undefined;
}

/** A node of the segment trie: the routes reachable after matching some leading segments. */
export interface TrieNode {
  /** Children for literal segments, keyed by the literal. */
  readonly statics: Map<string, TrieNode>;
  /** Child for a `{param}` segment (all parameter names share it: they are the same shape). */
  param: TrieNode | undefined;
  /** Routes whose pattern ends at this node. */
  end: ShapeSlot | undefined;
  /** Routes whose pattern is this node's prefix followed by `/*`. */
  wildcard: ShapeSlot | undefined;
}

export interface RouteTable {
  routes: readonly CompiledRoute[];
  /** Segment trie over `routes` (internal to src/routing/). */
  readonly root: TrieNode;
}

/** A conflict between two routes (both indexes into the `routes` list). */
export interface RouteConflict {
  kind: 'duplicate' | 'duplicate_id';
  index: number;
  otherIndex: number;
  /** YAML path of the offending field, e.g. `routes[3]` or `routes[3].id`. */
  path: string;
  message: string;
}

/**
 * Compiles the route list. Throws `ConfigError` (one issue per problem, paths like `routes[3]`)
 * when a path is malformed, when two routes serve the same method on the same path shape
 * (`/a/{x}` and `/a/{y}` are one shape; a route without `methods` overlaps every method but
 * TRACE and CONNECT, which only a route listing them serves; an explicit HEAD route next to a
 * GET route is allowed and wins for HEAD), or when two routes share an `id`.
 *
 * @example
 *   const table = compileRoutes([{ path: '/v2/room/{id}', methods: ['GET'], public: false }]);
 *   table.routes[0]!.methods; // Set { 'GET', 'HEAD' }
 */
export function compileRoutes(routes: readonly RouteConfig[]): RouteTable {
  const problems = pathProblems(routes);
  if (problems.length) throw new ConfigError(problems);
  const compiled = routes.map(compileRoute);
  const { root, conflicts } = buildTrie(compiled);
  conflicts.push(...idConflicts(compiled));
  if (conflicts.length) {
    conflicts.sort((a, b) => a.index - b.index);
    throw new ConfigError(conflicts.map((c) => ({ path: c.path, message: c.message })));
  }
  return { routes: compiled, root };
}

/** Malformed route paths (normally already refused by the schema). */
export function pathProblems(routes: readonly RouteConfig[]): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  routes.forEach((r, i) => {
    const problem = typeof r.path === 'string' ? routePathProblem(r.path) : 'must be a string';
    if (problem) issues.push({ path: `routes[${i}].path`, message: problem });
  });
  return issues;
}

export function compileRoute(config: RouteConfig, index: number): CompiledRoute {
  let methods: Set<HttpMethod> | null = null;
  if (config.methods) {
    methods = new Set(config.methods);
    if (methods.has('GET')) methods.add('HEAD');
  }
  return {
    id: config.id ?? config.path,
    config,
    methods,
    params: routeParams(config.path),
    upstream: config.upstream ?? 'default',
    index,
  };
}

/** Splits a well-formed pattern into segments; `/` has none. */
export function parsePattern(path: string): PatternSegment[] {
  if (path === '/') return [];
  return path
    .slice(1)
    .split('/')
    .map((s): PatternSegment => {
      if (s === '*') return { kind: 'wildcard' };
      if (s.startsWith('{') && s.endsWith('}')) return { kind: 'param', name: s.slice(1, -1) };
      return { kind: 'static', value: s };
    });
}

/** The shape of a pattern: parameter names erased (`/a/{x}` and `/a/{y}` -> `/a/{}`). */
export function patternShape(path: string): string {
  return path.replace(/\{[^}/]*\}/g, '{}');
}

/**
 * True for TRACE and CONNECT (`EXPLICIT_ONLY_METHODS`): a route without `methods` does not serve
 * them. Compared case-insensitively so that no spelling of them reaches such a route.
 */
export function isExplicitOnly(method: string): boolean {
  if (method.length !== 5 && method.length !== 7) return false;
  const m = method === 'TRACE' || method === 'CONNECT' ? method : method.toUpperCase();
  return (EXPLICIT_ONLY_METHODS as readonly string[]).includes(m);
}

/** What a route without `methods` serves by name, for `Allow` and `check`: HTTP_METHODS minus TRACE and CONNECT. */
export const IMPLICIT_METHODS: readonly HttpMethod[] = HTTP_METHODS.filter((m) => !isExplicitOnly(m));

function newNode(): TrieNode {
  return { statics: new Map(), param: undefined, end: undefined, wildcard: undefined };
}

function newSlot(): ShapeSlot {
  return { routes: [], explicit: new Map(), impliedHead: undefined, any: undefined };
}

/**
 * Builds the trie. A route that conflicts with an earlier one of the same shape is reported and
 * keeps only the methods nobody else claimed, so the first route in file order stays in force
 * (that only matters to `analyzeRoutes`, which goes on after a conflict).
 */
export function buildTrie(routes: readonly CompiledRoute[]): { root: TrieNode; conflicts: RouteConflict[] } {
  const root = newNode();
  const conflicts: RouteConflict[] = [];
  for (const route of routes) {
    let node = root;
    let slotKey: 'end' | 'wildcard' = 'end';
    for (const seg of parsePattern(route.config.path)) {
      if (seg.kind === 'wildcard') {
        slotKey = 'wildcard';
        break;
      }
      if (seg.kind === 'param') {
        node = node.param ??= newNode();
      } else {
        let next = node.statics.get(seg.value);
        if (!next) node.statics.set(seg.value, (next = newNode()));
        node = next;
      }
    }
    const slot = (node[slotKey] ??= newSlot());
    conflicts.push(...addToSlot(slot, route));
  }
  return { root, conflicts };
}

function addToSlot(slot: ShapeSlot, route: CompiledRoute): RouteConflict[] {
  const clashes = new Map<CompiledRoute, string[]>();
  const clash = (other: CompiledRoute, what: string) => {
    const list = clashes.get(other) ?? [];
    if (!list.includes(what)) list.push(what);
    clashes.set(other, list);
  };
  const listed = route.config.methods ? [...new Set(route.config.methods)] : null;
  if (listed === null) {
    let free = true;
    for (const other of slot.routes) {
      const overlap = other.config.methods ? [...new Set(other.config.methods)].filter((m) => !isExplicitOnly(m)) : null;
      if (overlap === null || overlap.length > 0) {
        clash(other, overlap ? overlap.join(', ') : 'every method but TRACE and CONNECT');
        free = false;
      }
    }
    if (free) slot.any = route;
  } else {
    const overlap = listed.filter((m) => !isExplicitOnly(m));
    if (slot.any && overlap.length > 0) clash(slot.any, overlap.join(', '));
    for (const m of listed) {
      const other = slot.explicit.get(m);
      if (other) clash(other, m);
      else if (!slot.any || isExplicitOnly(m)) slot.explicit.set(m, route);
    }
    if (listed.includes('GET') && !slot.impliedHead && !slot.any && slot.explicit.get('GET') === route) slot.impliedHead = route;
  }
  slot.routes.push(route);
  return [...clashes].map(([other, methods]) => ({
    kind: 'duplicate',
    index: route.index,
    otherIndex: other.index,
    path: `routes[${route.index}]`,
    message: duplicateMessage(route, other, methods),
  }));
}

function duplicateMessage(route: CompiledRoute, other: CompiledRoute, methods: string[]): string {
  const a = route.config.path;
  const b = other.config.path;
  const shape = a === b ? `path "${a}"` : `path "${a}" (the same shape as "${b}": only the parameter names differ)`;
  return (
    `route "${route.id}" serves ${methods.join(', ')} on ${shape}, which route "${other.id}" ` +
    `(routes[${other.index}]) already serves; one method and path may have only one route, ` +
    `otherwise file order would decide (to answer HEAD differently from GET, list HEAD in its own route)`
  );
}

/** Two routes may share an id only when both use their (equal) path as the default id. */
export function idConflicts(routes: readonly CompiledRoute[]): RouteConflict[] {
  const named = (r: CompiledRoute) => r.config.id !== undefined && r.config.id !== r.config.path;
  const byId = new Map<string, CompiledRoute[]>();
  const out: RouteConflict[] = [];
  for (const r of routes) {
    const seen = byId.get(r.id) ?? [];
    const other = seen.find((o) => named(o) || named(r));
    if (other) {
      out.push({
        kind: 'duplicate_id',
        index: r.index,
        otherIndex: other.index,
        path: `routes[${r.index}].${r.config.id !== undefined ? 'id' : 'path'}`,
        message:
          `id "${r.id}" is already the id of routes[${other.index}] (path "${other.config.path}"); ` +
          `ids name routes in metrics, logs and \`explain\` and must be unique`,
      });
    }
    seen.push(r);
    byId.set(r.id, seen);
  }
  return out;
}

/**
 * The route of `slot` that serves `method`, if any: explicit listing, then GET for HEAD, then
 * `any` (never for TRACE or CONNECT).
 */
export function slotRouteFor(slot: ShapeSlot, method: string): CompiledRoute | undefined {
  return slot.explicit.get(method) ?? (method === 'HEAD' ? slot.impliedHead : undefined) ?? (slot.any && !isExplicitOnly(method) ? slot.any : undefined);
}

/** The methods a compiled route serves by name (for `Allow`): its own, or IMPLICIT_METHODS. */
export function namedMethods(route: CompiledRoute): Iterable<string> {
  return route.methods ?? IMPLICIT_METHODS;
}
