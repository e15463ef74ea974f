// HS256 JWTs for the tests, signed with node:crypto.
import { createHmac } from 'node:crypto';

const b64url = (data: Buffer | string) => Buffer.from(data).toString('base64url');

/** A token for `sub`, expiring `ttlMs` from now (exp is in whole seconds, rounded up). */
export function signJwt(secret: string, sub: string, ttlMs: number, extra: Record<string, unknown> = {}): string {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const exp = Math.ceil((Date.now() + ttlMs) / 1000);
  const payload = b64url(JSON.stringify({ sub, exp, ...extra }));
  const sig = createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
  return `${header}.${payload}.${sig}`;
}
