/**
 * RFC 9110 §5.6.2 `token`: what a field name, an auth scheme or a method consists of. One
 * pattern for every place that checks one.
 *
 * @example
 *   HTTP_TOKEN.test('X-Request-Id') // true
 *   HTTP_TOKEN.test('!:')           // false (':' is not a tchar)
 */
export const HTTP_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
