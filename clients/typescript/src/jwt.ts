/**
 * The `exp` of a JWT in Unix milliseconds, read without verifying anything (the
 * client only uses it to refresh a token before connecting with it); 0 when the
 * token has none or is not a JWT.
 */
export function jwtExpiresAtMs(token: string): number {
  const part = token.split('.')[1];
  if (!part) return 0;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const json = JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4))) as { exp?: unknown };
    return typeof json.exp === 'number' && Number.isFinite(json.exp) ? Math.floor(json.exp * 1000) : 0;
  } catch {
    return 0;
  }
}
