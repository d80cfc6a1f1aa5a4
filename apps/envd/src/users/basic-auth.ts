/**
 * The username of an HTTP Basic `Authorization` header, which is how E2B clients pick the Linux user
 * of a request (the password is empty and ignored). Undefined when there is no usable header.
 */
export function usernameFromBasicAuth(header: string | null | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^\s*basic\s+(\S+)\s*$/i.exec(header);
  if (!match?.[1]) return undefined;
  const decoded = Buffer.from(match[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const name = colon === -1 ? decoded : decoded.slice(0, colon);
  return name === '' ? undefined : name;
}
