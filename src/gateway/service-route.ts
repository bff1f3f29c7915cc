/**
 * Which requests the token service answers instead of the route table (SPEC §9: its paths are
 * matched before the route table), and what its answer means for the access line — one rule for
 * every door.
 *
 * @example
 *   const svc = serviceFor(gen.tokenService, 'POST', '/v2/oauth/token');   // the service, or undefined
 *   const res = await svc.handle(request, facts); recordServiceOutcome(rec, res);
 */
import { checkTarget } from '../routing/path-safety.js';
import { serviceOutcome, type TokenService } from '../token-service/service.js';
import type { ForwardAuth, ForwardAuthResult } from '../doors/forward-auth/handler.js';
import type { AccessRecord } from './access.js';

/**
 * Whether the gateway answers this request itself — the forward-auth endpoint or a token-service
 * path — instead of deciding it for an upstream. A WebSocket handshake to such a path is the plain
 * request it also is, on every door (the Bun door checks these paths first; the Node door, which
 * Node hands handshakes apart, asks this before it treats one as a tunnel).
 */
export function answeredInPlace(g: { forwardAuth: ForwardAuth | undefined; tokenService: TokenService | undefined }, method: string, target: string): boolean {
  if (g.forwardAuth !== undefined) {
    const q = target.indexOf('?');
    if (g.forwardAuth.matches(q === -1 ? target : target.slice(0, q))) return true;
  }
  return serviceFor(g.tokenService, method, target) !== undefined;
}

/**
 * The service when it answers `target`: its own path, and a target path safety accepts (an unsafe
 * target falls through to the decision, which refuses it with 400 like any other).
 */
export function serviceFor(svc: TokenService | undefined, method: string, target: string): TokenService | undefined {
  if (svc === undefined) return undefined;
  const q = target.indexOf('?');
  const path = q === -1 ? target : target.slice(0, q);
  if (!svc.matches(method, path) || checkTarget(target) !== null) return undefined;
  return svc;
}

/** Fills the access record from a service response: its bounded route id, status and refusal code. */
export function recordServiceOutcome(rec: AccessRecord, res: Response): void {
  const o = serviceOutcome(res);
  rec.routeId = o?.route ?? 'token_service';
  rec.status = res.status;
  rec.reason = o?.reason;
  rec.decision = res.status < 400 ? 'allowed' : 'denied';
}

/** Fills the access record from a forward-auth answer: what was decided, for which route. */
export function recordForwardAuth(rec: AccessRecord, r: ForwardAuthResult): void {
  const d = r.decision;
  rec.route = d?.route ?? null;
  if (!d) rec.routeId = 'forward_auth';
  rec.principal = d?.principal;
  rec.limitKey = d?.limitKey;
  rec.status = r.status;
  rec.reason = r.reason;
  rec.decision = d?.kind === 'answer' ? 'auth_test' : r.status === 200 ? (d?.kind === 'forward' ? d.outcome : 'allowed') : 'denied';
}
