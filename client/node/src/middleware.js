// middleware.js: what the Express and Fastify adapters share: from a request's headers to an
// identity or a refusal, framework-free.
//   - a bearer token (Authorization: Bearer ...) wins; it is checked by the local Verifier when
//     one is given, else by the daemon (token.verify with check_revoked);
//   - else the session cookie (cookieName, default __Host-sid) is validated by the daemon
//     (session.validate with the client's ip and user agent, so binding anomalies show);
//   - with rotateAfter > 0, a session older than that many seconds is rotated
//     (session.rotate) and the renewed cookie is returned to be set;
//   - a refused credential is 401 (and a refused cookie is cleared); a daemon that cannot
//     answer is 503: an outage is never mistaken for a logged-out user.
// The outcome: {identity} | {status, code, headers}. Nothing here logs; no sid or token
// appears in an outcome.

const REFUSED = new Set(['unauthenticated', 'expired', 'revoked', 'reused', 'bad_request']);

/** Options as given to the adapters, checked once. */
export function makeAuthenticator(options = {}) {
  const { client, verifier = null, cookieName = '__Host-sid', rotateAfter = 0, optional = false } = options;
  if (!client || typeof client.call !== 'function') throw new TypeError('options.client must be a tessera Client');
  if (verifier !== null && typeof verifier.verify !== 'function') throw new TypeError('options.verifier must be a tessera Verifier');
  if (typeof cookieName !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(cookieName)) throw new TypeError('options.cookieName must be a cookie name');
  if (!Number.isInteger(rotateAfter) || rotateAfter < 0) throw new TypeError('options.rotateAfter must be an integer >= 0 (seconds)');
  const clearCookie = `${cookieName}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax`;

  async function fromToken(token) {
    if (verifier) {
      const claims = await verifier.verify(token);
      return { kind: 'token', sub: claims.sub, claims };
    }
    const r = await client.tokenVerify({ token, check_revoked: true });
    return { kind: 'token', sub: r.claims.sub, claims: r.claims };
  }

  async function fromSession(sid, req) {
    const clientInfo = {};
    if (typeof req.ip === 'string' && req.ip) clientInfo.ip = req.ip;
    clientInfo.ua = typeof req.ua === 'string' ? req.ua : '';
    const v = await client.sessionValidate({ sid, client: clientInfo });
    const identity = {
      kind: 'session', sub: v.sub, handle: v.handle, data: v.data ?? null, createdAt: v.created_at,
      expiresAt: v.expires_at, idleExpiresAt: v.idle_expires_at, anomalies: v.anomalies ?? [],
    };
    let setCookie = null;
    if (rotateAfter > 0 && v.created_at + rotateAfter <= Math.floor(Date.now() / 1000)) {
      const r = await client.sessionRotate({ sid });
      setCookie = r.cookie;
      identity.createdAt = Math.floor(Date.now() / 1000);
      identity.expiresAt = r.expires_at;
    }
    return { identity, setCookie };
  }

  /**
   * @param {{authorization?: string, cookie?: string, ip?: string, ua?: string}} req
   * @returns {Promise<{identity: object|null, setCookie?: string|null} | {status: number, code: string, headers: object}>}
   */
  return async function authenticate(req) {
    const auth = req.authorization;
    const bearer = typeof auth === 'string' && /^Bearer\s+/i.test(auth) ? auth.replace(/^Bearer\s+/i, '').trim() : null;
    const sid = bearer === null ? readCookie(req.cookie, cookieName) : null;
    if (bearer === null && sid === null) {
      if (optional) return { identity: null };
      return { status: 401, code: 'unauthenticated', headers: { 'www-authenticate': 'Bearer' } };
    }
    try {
      if (bearer !== null) return { identity: await fromToken(bearer) };
      return await fromSession(sid, req);
    } catch (err) {
      const code = typeof err?.code === 'string' ? err.code : 'internal';
      if (!REFUSED.has(code)) return { status: 503, code: 'unavailable', headers: { 'retry-after': '1' } };
      const headers = bearer !== null
        ? { 'www-authenticate': `Bearer error="invalid_token"` }
        : { 'set-cookie': clearCookie };
      if (optional) return { identity: null, setCookie: headers['set-cookie'] ?? null };
      return { status: 401, code, headers };
    }
  };
}

/** The value of cookie name in a Cookie header, or null. */
export function readCookie(header, name) {
  if (typeof header !== 'string') return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) {
      let v = part.slice(eq + 1).trim();
      if (v.length >= 2 && v[0] === '"' && v[v.length - 1] === '"') v = v.slice(1, -1);
      return v;
    }
  }
  return null;
}
