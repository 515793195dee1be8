// jws.test.js: the local token rules of jws.js on tokens this test signs with its own Ed25519
// key (no daemon): every refusal PROTOCOL.md "tokens" lists, and the claim time rules.
import test from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { parse, verifySignature, checkClaims, keyOf, b64url, hasDuplicateMembers, Refusal } from '../src/jws.js';

const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519');
const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'k1', use: 'sig', alg: 'EdDSA' };
const key = keyOf(jwk);
const now = 1_800_000_000;
const rules = { now, leeway: 60, issuer: 'tessera', audience: null };
const enc = (s) => Buffer.from(s).toString('base64url');

function sign(headerText, claimsText) {
  const input = `${enc(headerText)}.${enc(claimsText)}`;
  return `${input}.${crypto.sign(null, Buffer.from(input), privateKey).toString('base64url')}`;
}
const H = '{"alg":"EdDSA","typ":"at+jwt","kid":"k1"}';
const C = { iss: 'tessera', sub: 'alice', jti: 'j1', iat: now, nbf: now, exp: now + 900 };
const claimsOf = (o) => JSON.stringify({ ...C, ...o });

/** 'ok' or the refusal code of the whole local check. */
function check(token, r = rules) {
  const p = parse(token, 'at+jwt');
  if (p instanceof Refusal) return p.code;
  const claims = verifySignature(p, key);
  if (claims instanceof Refusal) return claims.code;
  return checkClaims(claims, r)?.code ?? 'ok';
}

test('a well-formed token passes', () => {
  assert.equal(check(sign(H, claimsOf({}))), 'ok');
  assert.equal(check(sign('{"alg":"Ed25519","typ":"at+jwt","kid":"k1"}', claimsOf({}))), 'ok');
});

test('headers: alg, typ, kid, and key-carrying or crit members are refused', () => {
  for (const h of ['{"alg":"none","typ":"at+jwt","kid":"k1"}', '{"alg":"HS256","typ":"at+jwt","kid":"k1"}',
    '{"alg":"EdDSA","typ":"rt+jwt","kid":"k1"}', '{"alg":"EdDSA","kid":"k1"}', '{"alg":"EdDSA","typ":"at+jwt"}',
    '{"alg":"EdDSA","typ":"at+jwt","kid":"k1","jku":"http://x"}', '{"alg":"EdDSA","typ":"at+jwt","kid":"k1","crit":["x"]}',
    '{"alg":"EdDSA","typ":"at+jwt","kid":"k1","jwk":{}}', '{"alg":"EdDSA","typ":"at+jwt","kid":"k1","x5c":[]}',
    '{"alg":"EdDSA","typ":"at+jwt","kid":"k1","x5u":"x"}', '{"alg":"EdDSA","alg":"EdDSA","typ":"at+jwt","kid":"k1"}'])
    assert.equal(check(sign(h, claimsOf({}))), 'unauthenticated', h);
});

test('encoding: segments, canonical base64url, UTF-8, size, signature length', () => {
  const t = sign(H, claimsOf({}));
  const [h, p, s] = t.split('.');
  assert.equal(check(`${h}.${p}`), 'unauthenticated');
  assert.equal(check(`${t}.`), 'unauthenticated');
  assert.equal(check(`${h}=.${p}.${s}`), 'unauthenticated');
  assert.equal(check(`${h}.${p}.${s.slice(0, -1)}${s.at(-1) === 'A' ? 'B' : 'A'}`), 'unauthenticated');
  assert.equal(check(`${h}.${p}.${s.slice(0, 40)}`), 'unauthenticated');
  assert.deepEqual(b64url('QQ'), Buffer.from('A'));
  assert.equal(b64url('QR'), null, 'stray bits after the last byte');
  const bad = `${enc(H)}.${Buffer.from([0x7b, 0xff, 0x7d]).toString('base64url')}`;
  assert.equal(check(`${bad}.${crypto.sign(null, Buffer.from(bad), privateKey).toString('base64url')}`), 'unauthenticated');
  assert.equal(check(sign(H, claimsOf({ pad: 'x'.repeat(9000) }))), 'unauthenticated');
});

test('claims: duplicate members, iss, aud, types, sub and jti', () => {
  assert.equal(check(sign(H, '{"sub":"a","sub":"b","jti":"j","iss":"tessera","exp":1900000000}')), 'unauthenticated');
  assert.equal(hasDuplicateMembers('{"a":{"b":1,"c":[{"b":2}]},"b":"\\"a\\""}'), false);
  assert.equal(hasDuplicateMembers('{"a":{"b":1,"b":2}}'), true);
  assert.equal(check(sign(H, claimsOf({ iss: 'other' }))), 'unauthenticated');
  assert.equal(check(sign(H, claimsOf({ aud: 'shop' }))), 'unauthenticated');
  assert.equal(check(sign(H, claimsOf({ aud: ['shop', 'billing'] })), { ...rules, audience: 'billing' }), 'ok');
  assert.equal(check(sign(H, claimsOf({})), { ...rules, audience: 'billing' }), 'unauthenticated');
  assert.equal(check(sign(H, claimsOf({ exp: 'soon' }))), 'unauthenticated');
  assert.equal(check(sign(H, claimsOf({ exp: undefined }))), 'unauthenticated');
  assert.equal(check(sign(H, claimsOf({ sub: 7 }))), 'unauthenticated');
  assert.equal(check(sign(H, claimsOf({ jti: undefined }))), 'unauthenticated');
});

test('time: valid while nbf - leeway <= now < exp + leeway and iat <= now + leeway', () => {
  assert.equal(check(sign(H, claimsOf({ exp: now - 60 }))), 'expired');
  assert.equal(check(sign(H, claimsOf({ exp: now - 59 }))), 'ok');
  assert.equal(check(sign(H, claimsOf({ nbf: now + 61 }))), 'expired');
  assert.equal(check(sign(H, claimsOf({ nbf: now + 60 }))), 'ok');
  assert.equal(check(sign(H, claimsOf({ iat: now + 61 }))), 'expired');
  assert.equal(check(sign(H, claimsOf({ exp: now })), { ...rules, leeway: 0 }), 'expired');
});

test('keys: only OKP Ed25519 signing keys with a kid are taken', () => {
  assert.ok(keyOf(jwk));
  assert.equal(keyOf({ ...jwk, kty: 'EC' }), null);
  assert.equal(keyOf({ ...jwk, use: 'enc' }), null);
  assert.equal(keyOf({ ...jwk, kid: '' }), null);
  assert.equal(keyOf({ ...jwk, x: 'AAAA' }), null);
});
