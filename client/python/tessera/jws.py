"""jws.py: the access-token checks of proto/PROTOCOL.md "tokens", done locally with the rules
of token.verify (proto/jws.c): three segments of canonical base64url, at most 8 KiB, header
alg EdDSA/Ed25519 with the expected typ and a kid and none of jku, x5u, jwk, x5c, crit;
strict UTF-8 JSON objects without duplicate members; a 64-byte Ed25519 signature (PyNaCl,
libsodium: S must be canonical); then the claims: integer exp (required), nbf, iat; iss; aud;
valid while nbf - leeway <= now < exp + leeway and iat <= now + leeway; sub and jti strings.
A refusal is Refusal(code) with code "unauthenticated" or "expired"; nothing echoes the token."""
from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

MAX_TOKEN = 8192
_B64URL = re.compile(r"[A-Za-z0-9_-]*\Z")
_REFUSED_HEADERS = ("jku", "x5u", "jwk", "x5c", "crit")


class Refusal(Exception):
    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def b64url(s: str) -> bytes | None:
    """Canonical base64url without padding, else None."""
    if not _B64URL.match(s) or len(s) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == s else None


def _no_duplicates(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError("duplicate member")
        obj[k] = v
    return obj


def _json_object(raw: bytes) -> dict | None:
    try:
        v = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError):
        return None
    return v if isinstance(v, dict) else None


def parse(token: str, typ: str) -> tuple[str, bytes, bytes, bytes]:
    """(kid, signing input, signature, payload bytes), or raises Refusal."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN or not token.isascii():
        raise Refusal("unauthenticated")
    parts = token.split(".")
    if len(parts) != 3:
        raise Refusal("unauthenticated")
    hb, pb, sig = (b64url(p) for p in parts)
    if hb is None or pb is None or sig is None or len(sig) != 64:
        raise Refusal("unauthenticated")
    header = _json_object(hb)
    if header is None or header.get("alg") not in ("EdDSA", "Ed25519") or header.get("typ") != typ:
        raise Refusal("unauthenticated")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > 128 or any(h in header for h in _REFUSED_HEADERS):
        raise Refusal("unauthenticated")
    signing_input = token[: len(parts[0]) + 1 + len(parts[1])].encode()
    return kid, signing_input, sig, pb


def verify_signature(key: VerifyKey, signing_input: bytes, sig: bytes, payload: bytes) -> dict:
    try:
        key.verify(signing_input, sig)
    except (BadSignatureError, ValueError):
        raise Refusal("unauthenticated") from None
    claims = _json_object(payload)
    if claims is None:
        raise Refusal("unauthenticated")
    return claims


def _int_claim(claims: dict, name: str) -> tuple[bool, int | None]:
    v = claims.get(name)
    if v is None and name not in claims:
        return True, None
    return isinstance(v, int) and not isinstance(v, bool), v


def check_claims(claims: dict, *, now: int, leeway: int, issuer: str | None, audience: str | None) -> None:
    """Raises Refusal unless the claims are valid at now."""
    ok_exp, exp = _int_claim(claims, "exp")
    ok_nbf, nbf = _int_claim(claims, "nbf")
    ok_iat, iat = _int_claim(claims, "iat")
    if not (ok_exp and ok_nbf and ok_iat) or exp is None:
        raise Refusal("unauthenticated")
    if issuer is not None and claims.get("iss") != issuer:
        raise Refusal("unauthenticated")
    if not _aud_ok(claims, audience):
        raise Refusal("unauthenticated")
    if now >= exp + leeway or (nbf is not None and now < nbf - leeway) or (iat is not None and iat > now + leeway):
        raise Refusal("expired")
    if not isinstance(claims.get("sub"), str) or not isinstance(claims.get("jti"), str):
        raise Refusal("unauthenticated")


def _aud_ok(claims: dict, want: str | None) -> bool:
    if want is None:
        return "aud" not in claims
    aud = claims.get("aud")
    if isinstance(aud, str):
        return aud == want
    return isinstance(aud, list) and all(isinstance(a, str) for a in aud) and want in aud


def key_of(jwk: Any) -> VerifyKey | None:
    """A VerifyKey from one JWK of keys.jwks, or None when it is not a usable Ed25519 signing key."""
    if not isinstance(jwk, dict) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        return None
    if not isinstance(jwk.get("kid"), str) or not jwk["kid"]:
        return None
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", "EdDSA") not in ("EdDSA", "Ed25519"):
        return None
    x = b64url(jwk["x"]) if isinstance(jwk.get("x"), str) else None
    if x is None or len(x) != 32:
        return None
    try:
        return VerifyKey(x)
    except Exception:
        return None
