/**
 * application/x-www-form-urlencoded decoding of one query name or value: `+` is a space, then
 * percent-decoding. A malformed escape (`%zz`) is returned as written: it can never equal one of
 * the plain parameter names the gateway looks for (`auth_token`, `auth_test`).
 *
 * @example formDecode('auth%5Ftoken') // 'auth_token'
 */
export function formDecode(raw: string): string {
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return raw;
  }
}
