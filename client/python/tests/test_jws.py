"""test_jws.py: the local token rules of tessera/jws.py on tokens this test signs with its own
Ed25519 key (no daemon): every refusal PROTOCOL.md "tokens" lists, and the claim time rules."""
import base64
import json

import pytest
from nacl.signing import SigningKey

from tessera.jws import Refusal, b64url, check_claims, key_of, parse, verify_signature

SK = SigningKey.generate()
JWK = {"kty": "OKP", "crv": "Ed25519", "kid": "k1", "use": "sig", "alg": "EdDSA",
       "x": base64.urlsafe_b64encode(bytes(SK.verify_key)).rstrip(b"=").decode()}
KEY = key_of(JWK)
NOW = 1_800_000_000
H = '{"alg":"EdDSA","typ":"at+jwt","kid":"k1"}'
C = {"iss": "tessera", "sub": "alice", "jti": "j1", "iat": NOW, "nbf": NOW, "exp": NOW + 900}


def enc(b):
    return base64.urlsafe_b64encode(b if isinstance(b, bytes) else b.encode()).rstrip(b"=").decode()


def sign(header, claims):
    signing_input = f"{enc(header)}.{enc(claims)}"
    return f"{signing_input}.{enc(SK.sign(signing_input.encode()).signature)}"


def claims(**kw):
    return json.dumps({k: v for k, v in dict(C, **kw).items() if v is not None})


def check(token, now=NOW, leeway=60, audience=None):
    try:
        kid, si, sig, payload = parse(token, "at+jwt")
        cl = verify_signature(KEY, si, sig, payload)
        check_claims(cl, now=now, leeway=leeway, issuer="tessera", audience=audience)
        return "ok"
    except Refusal as r:
        return r.code


def test_well_formed():
    assert check(sign(H, claims())) == "ok"
    assert check(sign('{"alg":"Ed25519","typ":"at+jwt","kid":"k1"}', claims())) == "ok"


@pytest.mark.parametrize("header", [
    '{"alg":"none","typ":"at+jwt","kid":"k1"}', '{"alg":"HS256","typ":"at+jwt","kid":"k1"}',
    '{"alg":"EdDSA","typ":"rt+jwt","kid":"k1"}', '{"alg":"EdDSA","kid":"k1"}', '{"alg":"EdDSA","typ":"at+jwt"}',
    '{"alg":"EdDSA","typ":"at+jwt","kid":"k1","jku":"http://x"}', '{"alg":"EdDSA","typ":"at+jwt","kid":"k1","crit":["x"]}',
    '{"alg":"EdDSA","typ":"at+jwt","kid":"k1","jwk":{}}', '{"alg":"EdDSA","typ":"at+jwt","kid":"k1","x5c":[]}',
    '{"alg":"EdDSA","typ":"at+jwt","kid":"k1","x5u":"x"}', '{"alg":"EdDSA","alg":"EdDSA","typ":"at+jwt","kid":"k1"}'])
def test_headers_refused(header):
    assert check(sign(header, claims())) == "unauthenticated"


def test_encoding():
    t = sign(H, claims())
    h, p, s = t.split(".")
    assert check(f"{h}.{p}") == "unauthenticated"
    assert check(t + ".") == "unauthenticated"
    assert check(f"{h}=.{p}.{s}") == "unauthenticated"
    assert check(f"{h}.{p}.{s[:-1]}{'B' if s[-1] == 'A' else 'A'}") == "unauthenticated"
    assert check(f"{h}.{p}.{s[:40]}") == "unauthenticated"
    assert b64url("QQ") == b"A" and b64url("QR") is None
    bad = f"{enc(H)}.{enc(bytes([0x7B, 0xFF, 0x7D]))}"
    assert check(f"{bad}.{enc(SK.sign(bad.encode()).signature)}") == "unauthenticated"
    assert check(sign(H, claims(pad="x" * 9000))) == "unauthenticated"


def test_claims():
    assert check(sign(H, '{"sub":"a","sub":"b","jti":"j","iss":"tessera","exp":1900000000}')) == "unauthenticated"
    assert check(sign(H, claims(iss="other"))) == "unauthenticated"
    assert check(sign(H, claims(aud="shop"))) == "unauthenticated"
    assert check(sign(H, claims(aud=["shop", "billing"])), audience="billing") == "ok"
    assert check(sign(H, claims()), audience="billing") == "unauthenticated"
    assert check(sign(H, claims(exp="soon"))) == "unauthenticated"
    assert check(sign(H, '{"iss":"tessera","sub":"a","jti":"j","exp":1900000000.0}')) == "unauthenticated"
    assert check(sign(H, claims(exp=True))) == "unauthenticated"
    assert check(sign(H, json.dumps({k: v for k, v in C.items() if k != "exp"}))) == "unauthenticated"
    assert check(sign(H, claims(sub=7))) == "unauthenticated"


def test_time_rules():
    assert check(sign(H, claims(exp=NOW - 60))) == "expired"
    assert check(sign(H, claims(exp=NOW - 59))) == "ok"
    assert check(sign(H, claims(nbf=NOW + 61))) == "expired"
    assert check(sign(H, claims(nbf=NOW + 60))) == "ok"
    assert check(sign(H, claims(iat=NOW + 61))) == "expired"
    assert check(sign(H, claims(exp=NOW)), leeway=0) == "expired"


def test_keys():
    assert KEY is not None
    assert key_of(dict(JWK, kty="EC")) is None
    assert key_of(dict(JWK, use="enc")) is None
    assert key_of(dict(JWK, kid="")) is None
    assert key_of(dict(JWK, x="AAAA")) is None
