import { secretsEqual } from './access-token.js';
import { checkFileSignature, type FileOperation } from './signature.js';

export type AuthDecision = { allowed: true } | { allowed: false; message: string };

const denied: AuthDecision = {
  allowed: false,
  message: 'unauthorized access, please provide a valid access token or method signing if supported',
};

/**
 * The access-token rule of E2B's envd for one request, once /init set a token. /health and /init
 * are exempt (the caller does not ask for them); /files also accepts a URL signature instead of the
 * header, which is how download/upload URLs handed to browsers work.
 */
export function authorize(
  accessToken: string | undefined,
  presentedToken: string | undefined,
  fileAccess?: { operation: FileOperation; query: URLSearchParams },
): AuthDecision {
  if (accessToken === undefined) return { allowed: true };
  if (secretsEqual(presentedToken, accessToken)) return { allowed: true };
  if (!fileAccess) return denied;
  const q = fileAccess.query;
  if (q.get('signature') === null) return denied;
  const check = checkFileSignature(
    {
      path: q.get('path') ?? '',
      operation: fileAccess.operation,
      username: q.get('username') ?? '',
      signature: q.get('signature'),
      expiration: q.get('signature_expiration'),
    },
    accessToken,
  );
  return check.valid ? { allowed: true } : { allowed: false, message: check.reason };
}
