// jws.js: the access-token checks of proto/PROTOCOL.md "tokens", done locally, the same rules
// as token.verify (proto/jws.c): exactly three segments of canonical base64url, at most 8 KiB,
// header alg EdDSA/Ed25519 with the expected typ and a known kid and none of jku, x5u, jwk,
// x5c, crit; strict UTF-8 JSON without duplicate members; a 64-byte Ed25519 signature
// (node:crypto; OpenSSL refuses a non-canonical S); then the claims: integer exp (required),
// nbf, iat; iss; aud; valid while nbf - leeway <= now < exp + leeway and iat <= now + leeway.
// Every refusal is {code} with code 'unauthenticated' or 'expired'; nothing echoes the token.
import crypto from 'node:crypto';

export const MAX_TOKEN = 8192;
const B64URL = /^[A-Za-z0-9_-]*$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });
const REFUSED_HEADERS = ['jku', 'x5u', 'jwk', 'x5c', 'crit'];

export class Refusal {
  constructor(code) {
    this.code = code;
  }
}
const BAD = new Refusal('unauthenticated');
const EXPIRED = new Refusal('expired');

/** Decodes canonical base64url (no padding, no stray bits), else null. */
export function b64url(s) {
  if (!B64URL.test(s) || s.length % 4 === 1) return null;
  const buf = Buffer.from(s, 'base64url');
  return buf.toString('base64url') === s ? buf : null;
}

/** True when the JSON text has an object with the same member twice (any depth). */
export function hasDuplicateMembers(text) {
  const stack = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (expectKey) {
        const key = JSON.parse(text.slice(i, j + 1));
        const seen = stack[stack.length - 1];
        if (seen.has(key)) return true;
        seen.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === '{') {
      stack.push(new Set());
      expectKey = true;
    } else if (c === '[') {
      stack.push(null);
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',') {
      expectKey = stack[stack.length - 1] instanceof Set;
    }
  }
  return false;
}

function parseJson(buf) {
  let text;
  try {
    text = utf8.decode(buf);
  } catch {
    return null;
  }
  let v;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return null;
  return hasDuplicateMembers(text) ? null : v;
}

/** Splits and decodes a compact JWS; returns {header, kid, signingInput, sig, payload} or a Refusal. */
export function parse(token, typ) {
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN) return BAD;
  const parts = token.split('.');
  if (parts.length !== 3) return BAD;
  const hb = b64url(parts[0]);
  const pb = b64url(parts[1]);
  const sig = b64url(parts[2]);
  if (!hb || !pb || !sig || sig.length !== 64) return BAD;
  const header = parseJson(hb);
  if (!header) return BAD;
  if (header.alg !== 'EdDSA' && header.alg !== 'Ed25519') return BAD;
  if (header.typ !== typ) return BAD;
  if (typeof header.kid !== 'string' || header.kid.length === 0 || header.kid.length > 128) return BAD;
  for (const h of REFUSED_HEADERS) if (Object.hasOwn(header, h)) return BAD;
  return { kid: header.kid, signingInput: Buffer.from(token.slice(0, parts[0].length + 1 + parts[1].length)), sig, payload: pb };
}

/** Ed25519 signature check with a KeyObject; then the payload as claims, or a Refusal. */
export function verifySignature(parsed, key) {
  if (!crypto.verify(null, parsed.signingInput, key, parsed.sig)) return BAD;
  return parseJson(parsed.payload) ?? BAD;
}

function intClaim(claims, name) {
  const v = claims[name];
  if (v === undefined) return { ok: true, present: false };
  return { ok: Number.isSafeInteger(v), present: true, v };
}

/** The claim rules; returns null when valid, else a Refusal. */
export function checkClaims(claims, { now, leeway, issuer, audience }) {
  const exp = intClaim(claims, 'exp');
  const nbf = intClaim(claims, 'nbf');
  const iat = intClaim(claims, 'iat');
  if (!exp.ok || !exp.present || !nbf.ok || !iat.ok) return BAD;
  if (issuer != null && claims.iss !== issuer) return BAD;
  if (!audOk(claims.aud, audience)) return BAD;
  if (now >= exp.v + leeway) return EXPIRED;
  if (nbf.present && now < nbf.v - leeway) return EXPIRED;
  if (iat.present && iat.v > now + leeway) return EXPIRED;
  if (typeof claims.sub !== 'string' || typeof claims.jti !== 'string') return BAD;
  return null;
}

function audOk(aud, want) {
  if (want == null) return aud === undefined;
  if (typeof aud === 'string') return aud === want;
  if (!Array.isArray(aud)) return false;
  return aud.every((a) => typeof a === 'string') && aud.includes(want);
}

/** A KeyObject from one JWK of keys.jwks, or null when it is not a usable Ed25519 signing key. */
export function keyOf(jwk) {
  if (!jwk || jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.kid !== 'string' || jwk.kid === '') return null;
  if (jwk.use !== undefined && jwk.use !== 'sig') return null;
  if (jwk.alg !== undefined && jwk.alg !== 'EdDSA' && jwk.alg !== 'Ed25519') return null;
  const x = typeof jwk.x === 'string' ? b64url(jwk.x) : null;
  if (!x || x.length !== 32) return null;
  try {
    return crypto.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, format: 'jwk' });
  } catch {
    return null;
  }
}
