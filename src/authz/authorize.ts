/**
 * Authorization (SPEC §1.5), pure: client type, then scopes, then room binding.
 * Returns the refusal, or null when the principal may call the route.
 * Room binding compares exact strings; a numeric path value is compared with the room id only.
 *
 * @example
 *   const denied = authorize(route, principal, { room_id_or_name: '42' });
 *   if (denied) throw denied;
 */
import { CLIENT_TYPES } from '../config/schema.js';
import { GatewayError } from '../errors.js';
import type { CompiledRoute, Principal } from '../types.js';
import { clip } from '../clip.js';

/** Expands a route's client_types (`oauth` = any of group, room, user); absent = any. */
export function allowedClientTypes(route: CompiledRoute): readonly string[] {
  const listed = route.config.client_types;
  if (!listed || listed.includes('oauth')) return CLIENT_TYPES;
  return listed;
}

/** A token is bound to a room when it is a room client or carries a room claim. */
export function isRoomBound(p: Principal): boolean {
  return p.clientType === 'room' || p.room !== undefined || p.roomName !== undefined;
}

export function authorize(route: CompiledRoute, p: Principal, params: Readonly<Record<string, string>>): GatewayError | null {
  const cfg = route.config;
  const allowed = allowedClientTypes(route);
  if (!allowed.includes(p.clientType)) {
    return new GatewayError('client_type_forbidden', {
      clientType: p.clientType || '(none)',
      allowedClientTypes: allowed,
      why: `client type "${p.clientType || '(none)'}" not in [${allowed.join(', ')}]`,
    });
  }
  if (cfg.scopes && !cfg.scopes.some((s) => p.scopes.includes(s))) {
    return new GatewayError('scope_insufficient', { scopes: cfg.scopes, why: `token scopes [${p.scopes.join(' ')}] hold none of [${cfg.scopes.join(' ')}]` });
  }
  if (cfg.scopes_all && !cfg.scopes_all.every((s) => p.scopes.includes(s))) {
    const missing = cfg.scopes_all.filter((s) => !p.scopes.includes(s));
    return new GatewayError('scope_insufficient', { scopes: cfg.scopes_all, allScopes: true, why: `token lacks [${missing.join(' ')}]` });
  }
  if (cfg.room_param && isRoomBound(p)) {
    const room = params[cfg.room_param] ?? '';
    if (!roomMatches(p, room)) {
      return new GatewayError('room_forbidden', {
        room,
        why: `token bound to room ${p.room === undefined ? '(none)' : `"${clip(p.room, 64)}"`}${p.roomName !== undefined ? ` / "${clip(p.roomName, 64)}"` : ''}, path names "${clip(room, 128)}"${
          isNumericPathValue(room) && room === p.roomName ? ' (a numeric path value is compared with the room id only)' : ''
        }`,
      });
    }
  }
  return null;
}

/**
 * A path value an upstream could read as a number (`42`, `042`, `+42`, ` 42`, `4_2`, `４２`:
 * Python's int() takes all of these): it names a room by id, so it is compared with the room id
 * claim only, never with the room name (SPEC §3). A room named "42" is reached by its id.
 */
export function isNumericPathValue(value: string): boolean {
  return NUMERIC.test(value);
}

const NUMERIC = /^\s*[+-]?\p{Nd}+(?:_\p{Nd}+)*\s*$/u;

/** The path's room value names the token's room: equal to its room id, or (when not numeric) its room name. */
export function roomMatches(p: Principal, room: string): boolean {
  if (p.room !== undefined && room === p.room) return true;
  return p.roomName !== undefined && room === p.roomName && !isNumericPathValue(room);
}

