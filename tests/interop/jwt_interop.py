#!/usr/bin/python3
"""tests/interop/jwt_interop.py: tesserad's tokens are ordinary JWTs (RFC 7519, RFC 8037).

Both directions, with PyJWT (Debian's python3-jwt) as the other side and nothing of ours in
between: the msgpack-rpc calls are built with msgpack-python (through the bare connection of
rpc_interop.py, beside this file).
  - Tokens tesserad issues verify in PyJWT with the key PyJWT builds from the published JWKS
    (jwt.PyJWK, and jwt.algorithms.OKPAlgorithm.from_jwk), algorithms=["EdDSA"], issuer and
    audience checked; kids are the RFC 7638 thumbprints PyJWT's side computes; after
    keys.rotate old and new tokens still verify.
  - Tokens PyJWT signs (cryptography's Ed25519 key written as a JWK with d into the key
    directory, mode 0600, typ "at+jwt", kid = the thumbprint, iss "tessera") verify in
    tesserad (token.verify, and the CLI reading the token from stdin); a PyJWT purpose token is
    consumed exactly once; PyJWT tokens with a wrong iss, a wrong typ or HS256 keyed with the
    public key are refused. The key reaches a running daemon by SIGHUP; a second daemon starts
    on a directory holding only that key (unmanaged: it signs with it, and cannot rotate).

Usage: /usr/bin/python3 tests/interop/jwt_interop.py path/to/tesserad [path/to/tessera]
Output: `ok - name` / `not ok - name: why` per check, then `# N passed, M failed` and the TAP plan `1..N`; exit status
1 when any check failed. Temporary directories are removed when every check passed and kept
(paths printed) otherwise, or always with TT_KEEP=1.
"""

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # importing rpc_interop must not leave __pycache__ in the tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jwt  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from jwt.algorithms import OKPAlgorithm  # noqa: E402

from rpc_interop import CheckFailed, Conn, Daemon, Report, expect, usage_error  # noqa: E402

ISSUER = "tessera"
RELOAD_TIMEOUT = 10.0  # seconds for a SIGHUP reload to show in keys.jwks
CLI_TIMEOUT = 30.0


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def thumbprint(x):
    """RFC 7638 thumbprint of an OKP/Ed25519 key: SHA-256 of the required members, sorted."""
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"),
                           sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


class PyKey:
    """An Ed25519 key made by cryptography, as PyJWT and the key directory want it."""

    def __init__(self):
        self.private = Ed25519PrivateKey.generate()
        self.public = self.private.public_key()
        raw_pub = self.public.public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
        raw_priv = self.private.private_bytes(serialization.Encoding.Raw,
                                              serialization.PrivateFormat.Raw,
                                              serialization.NoEncryption())
        self.x = b64url(raw_pub)
        self.d = b64url(raw_priv)
        self.raw_pub = raw_pub
        self.kid = thumbprint(self.x)

    def write_jwk(self, directory):
        """Writes directory/<kid>.jwk, mode 0600, with the private part."""
        os.makedirs(directory, mode=0o700, exist_ok=True)
        path = os.path.join(directory, self.kid + ".jwk")
        text = json.dumps({"kty": "OKP", "crv": "Ed25519", "x": self.x, "d": self.d,
                           "kid": self.kid, "use": "sig", "alg": "EdDSA"})
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, text.encode("ascii"))
        finally:
            os.close(fd)
        expect(os.stat(path).st_mode & 0o777 == 0o600, "%s is not mode 0600" % path)
        return path

    def sign(self, claims, typ="at+jwt", kid=None):
        return jwt.encode(claims, self.private, algorithm="EdDSA",
                          headers={"typ": typ, "kid": kid or self.kid})


def std_claims(sub="py-user", ttl=300, **extra):
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": sub, "iat": now, "nbf": now, "exp": now + ttl,
              "jti": b64url(os.urandom(16))}
    claims.update(extra)
    return claims


# ---------------------------------------------------------------------------------------------
# Talking to tesserad


class Rpc:
    def __init__(self, daemon):
        self.conn = Conn(daemon.socket)
        self.msgid = 0

    def close(self):
        self.conn.close()

    def call(self, method, params=None):
        """Returns (error, result): error None or [code, message]."""
        self.msgid += 1
        reply = self.conn.call(self.msgid, method, [params] if params is not None else [])
        return reply[2], reply[3]

    def ok(self, method, params=None):
        err, res = self.call(method, params)
        expect(err is None, "%s %r failed: %r" % (method, _shown(params), err))
        return res

    def code(self, method, params=None):
        err, _ = self.call(method, params)
        return None if err is None else err[0]


def _shown(params):
    """params for a message, with any token cut short."""
    if not isinstance(params, dict):
        return params
    return {k: (v[:24] + "..." if k == "token" and isinstance(v, str) else v)
            for k, v in params.items()}


def jwks_set(rpc):
    res = rpc.ok("keys.jwks", {})
    expect(isinstance(res.get("keys"), list) and res["keys"], "keys.jwks: %r" % (res,))
    return res


def pyjwk_for(jwks, kid):
    """The PyJWK of kid in a JWK Set (via PyJWKSet, as an application would load it)."""
    keyset = jwt.PyJWKSet.from_dict({"keys": jwks["keys"]})
    for k in keyset.keys:
        if k.key_id == kid:
            return k
    raise CheckFailed("kid %s is not in keys.jwks (%s)" % (kid, [k.key_id for k in keyset.keys]))


def pyjwt_verify(token, jwks, audience=None, typ="at+jwt"):
    """Verifies token with PyJWT and the published key of its kid; returns the claims."""
    header = jwt.get_unverified_header(token)
    expect(header.get("alg") == "EdDSA", "header alg %r" % (header,))
    expect(header.get("typ") == typ, "header typ %r, expected %s" % (header, typ))
    key = pyjwk_for(jwks, header.get("kid"))
    kwargs = {"audience": audience} if audience else {}
    claims = jwt.decode(token, key.key, algorithms=["EdDSA"], issuer=ISSUER,
                        options={"require": ["exp", "iat", "nbf", "iss", "sub", "jti"]}, **kwargs)
    # The same key built the other documented way.
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    okp = OKPAlgorithm.from_jwk(json.dumps(jwk))
    again = jwt.decode(token, okp, algorithms=["EdDSA"], issuer=ISSUER, **kwargs)
    expect(again == claims, "OKPAlgorithm.from_jwk gave other claims")
    return claims


def issue(rpc, params):
    res = rpc.ok("token.issue", params)
    expect(isinstance(res.get("token"), str), "token.issue: %r" % (res,))
    return res


def sighup_and_await_keys(daemon):
    """SIGHUP, then waits for the [2, "keys", [{keys_version}]] notification an
    events.subscribe connection gets when the reload changed the key set (the reload itself
    answers nothing). Returns the new keys_version."""
    feed = Rpc(daemon)
    try:
        feed.ok("events.subscribe", {})
        daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + RELOAD_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CheckFailed("no \"keys\" notification %.0f s after SIGHUP" % RELOAD_TIMEOUT)
            msg = feed.conn.recv(left)
            expect(isinstance(msg, list) and len(msg) == 3 and msg[0] == 2,
                   "not a notification: %r" % (msg,))
            if msg[1] == "keys":
                expect(isinstance(msg[2], list) and len(msg[2]) == 1
                       and isinstance(msg[2][0].get("keys_version"), int),
                       "keys notification %r" % (msg,))
                return msg[2][0]["keys_version"]
    finally:
        feed.close()


def run_cli(cli, daemon, args, stdin_text):
    proc = subprocess.run([cli, "--socket", daemon.socket] + args, input=stdin_text.encode(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=CLI_TIMEOUT)
    return proc.returncode, proc.stdout.decode("utf-8", "replace"), \
        proc.stderr.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# The checks. Each takes the shared state; state["a"] is the managed daemon.


def check_jwks_in_pyjwt(st):
    rpc = st["rpc"]
    jwks = jwks_set(rpc)
    expect(len(jwks["keys"]) == 2, "a managed set holds the active and the next key: %r"
           % ([k.get("kid") for k in jwks["keys"]],))
    expect(isinstance(jwks.get("max_age"), int) and jwks["max_age"] > 0,
           "max_age %r" % (jwks.get("max_age"),))
    keyset = jwt.PyJWKSet.from_dict({"keys": jwks["keys"]})
    expect(len(keyset.keys) == len(jwks["keys"]), "PyJWKSet dropped keys")
    for jwk, pk in zip(jwks["keys"], keyset.keys):
        expect(set(jwk) == {"kty", "crv", "x", "kid", "use", "alg"},
               "JWK members %r" % (sorted(jwk),))
        expect(jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" and jwk["use"] == "sig"
               and jwk["alg"] == "EdDSA", "JWK %r" % (jwk,))
        expect(pk.key_type == "OKP" and pk.key_id == jwk["kid"], "PyJWK %r" % (pk.key_id,))
        expect(jwk["kid"] == thumbprint(jwk["x"]), "kid %s is not the RFC 7638 thumbprint %s"
               % (jwk["kid"], thumbprint(jwk["x"])))
        expect(len(b64url_decode(jwk["x"])) == 32, "x is not 32 bytes")


def check_access_token_in_pyjwt(st):
    rpc = st["rpc"]
    res = issue(rpc, {"sub": "alice", "aud": "api", "scope": "read write",
                      "claims": {"role": "admin", "n": 7}})
    jwks = jwks_set(rpc)
    claims = pyjwt_verify(res["token"], jwks, audience="api")
    expect(claims["sub"] == "alice" and claims["aud"] == "api"
           and claims["scope"] == "read write" and claims["role"] == "admin"
           and claims["n"] == 7 and claims["jti"] == res["jti"]
           and claims["exp"] == res["expires_at"], "claims %r" % (claims,))
    # And tesserad agrees on what it issued.
    v = rpc.ok("token.verify", {"token": res["token"], "aud": "api"})
    expect(v["claims"] == claims, "tesserad's claims %r, PyJWT's %r" % (v["claims"], claims))
    st["alice"] = res["token"]


def check_pyjwt_refuses_wrong(st):
    token = st["alice"]
    jwks = jwks_set(st["rpc"])
    key = pyjwk_for(jwks, jwt.get_unverified_header(token)["kid"])
    h, p, s = token.split(".")
    sig = bytearray(b64url_decode(s))
    sig[0] ^= 1
    for name, bad, kwargs, exc in (
            ("flipped signature bit", "%s.%s.%s" % (h, p, b64url(bytes(sig))),
             {"audience": "api"}, jwt.InvalidSignatureError),
            ("another issuer expected", token, {"audience": "api", "issuer": "other"},
             jwt.InvalidIssuerError),
            ("another audience expected", token, {"audience": "web"}, jwt.InvalidAudienceError)):
        kwargs.setdefault("issuer", ISSUER)
        try:
            jwt.decode(bad, key.key, algorithms=["EdDSA"], **kwargs)
        except exc:
            continue
        except jwt.PyJWTError as e:
            raise CheckFailed("%s: PyJWT raised %s, expected %s" % (name, type(e).__name__,
                                                                     exc.__name__))
        raise CheckFailed("%s: PyJWT accepted it" % name)


def check_purpose_token_in_pyjwt(st):
    rpc = st["rpc"]
    res = issue(rpc, {"sub": "bob", "purpose": "email"})
    claims = pyjwt_verify(res["token"], jwks_set(rpc), typ="pt+jwt")
    expect(claims["purpose"] == "email" and claims["exp"] - claims["iat"] == 86400,
           "claims %r" % (claims,))


def check_rotation_in_pyjwt(st):
    rpc = st["rpc"]
    old = st["alice"]
    old_kid = jwt.get_unverified_header(old)["kid"]
    rot = rpc.ok("keys.rotate", {})
    expect(rot.get("previous") == old_kid, "keys.rotate %r, previous signer %s" % (rot, old_kid))
    new = issue(rpc, {"sub": "carol"})["token"]
    new_kid = jwt.get_unverified_header(new)["kid"]
    expect(new_kid == rot["kid"] and new_kid != old_kid, "new token kid %s, rotate said %s"
           % (new_kid, rot["kid"]))
    jwks = jwks_set(rpc)
    pyjwt_verify(old, jwks, audience="api")
    pyjwt_verify(new, jwks)


def check_pyjwt_token_in_tesserad(st):
    d, rpc, key = st["a"], st["rpc"], st["pykey"]
    key.write_jwk(d.keys)
    version = sighup_and_await_keys(d)
    jwks = jwks_set(rpc)
    expect(jwks.get("keys_version") == version, "keys_version %r, notified %r"
           % (jwks.get("keys_version"), version))
    expect(any(k["kid"] == key.kid for k in jwks["keys"]), "kid %s not published after SIGHUP"
           % key.kid)
    # The daemon publishes exactly the key PyJWT holds.
    jwk = next(k for k in jwks["keys"] if k["kid"] == key.kid)
    expect(jwk["x"] == key.x, "published x %s, ours %s" % (jwk["x"], key.x))
    claims = std_claims(sub="py-user", aud="api", scope="read", team="blue")
    token = key.sign(claims)
    res = rpc.ok("token.verify", {"token": token, "aud": "api", "check_revoked": True})
    expect(res.get("kid") == key.kid, "verified with kid %r, expected %s" % (res.get("kid"),
                                                                            key.kid))
    expect(res.get("claims") == claims, "claims %r, signed %r" % (res.get("claims"), claims))
    st["py_token"] = token


def check_pyjwt_token_via_cli(st):
    if not st["cli"]:
        raise CheckFailed("no tessera CLI path given")
    rc, out, err = run_cli(st["cli"], st["a"], ["token", "verify", "-", "--aud", "api"],
                           st["py_token"] + "\n")
    expect(rc == 0, "tessera token verify -: exit %d: %s" % (rc, err.strip()))
    res = json.loads(out)
    expect(res["kid"] == st["pykey"].kid and res["claims"]["sub"] == "py-user",
           "CLI printed %r" % (res,))
    rc, out, err = run_cli(st["cli"], st["a"], ["token", "decode", "-"], st["py_token"])
    expect(rc == 0 and "NOT verified" in err, "token decode: exit %d: %s" % (rc, err.strip()))
    dec = json.loads(out)
    expect(dec["header"] == jwt.get_unverified_header(st["py_token"]),
           "decoded header %r" % (dec["header"],))


def check_pyjwt_purpose_consumed_once(st):
    rpc, key = st["rpc"], st["pykey"]
    token = key.sign(std_claims(sub="py-user", purpose="email"), typ="pt+jwt")
    res = rpc.ok("token.consume", {"token": token, "purpose": "email"})
    expect(res["claims"]["sub"] == "py-user", "consume: %r" % (res,))
    code = rpc.code("token.consume", {"token": token, "purpose": "email"})
    expect(code == "revoked", "second consume: %r, expected revoked" % (code,))
    token2 = key.sign(std_claims(sub="py-user", purpose="email"), typ="pt+jwt")
    s = rpc.ok("session.exchange", {"token": token2, "purpose": "email"})
    v = rpc.ok("session.validate", {"sid": s["sid"]})
    expect(v["sub"] == "py-user", "the session's sub %r" % (v.get("sub"),))
    code = rpc.code("session.exchange", {"token": token2, "purpose": "email"})
    expect(code == "revoked", "second exchange: %r, expected revoked" % (code,))


def check_tesserad_refuses_bad_pyjwt(st):
    rpc, key = st["rpc"], st["pykey"]
    now = int(time.time())
    cases = [
        ("iss other", key.sign(std_claims(iss="other")), {}, "unauthenticated"),
        ("typ JWT", key.sign(std_claims(), typ="JWT"), {}, "unauthenticated"),
        ("purpose token as access", key.sign(std_claims(purpose="p"), typ="pt+jwt"), {},
         "unauthenticated"),
        ("aud api, none expected", key.sign(std_claims(aud="api")), {}, "unauthenticated"),
        ("expired", key.sign(std_claims(exp=now - 3600)), {}, "expired"),
        ("nbf in an hour", key.sign(std_claims(nbf=now + 3600)), {}, "expired"),
        ("HS256 keyed with the raw public key",
         jwt.encode(std_claims(), key.raw_pub, algorithm="HS256",
                    headers={"typ": "at+jwt", "kid": key.kid}), {}, "unauthenticated"),
        ("HS256 keyed with x",
         jwt.encode(std_claims(), key.x, algorithm="HS256",
                    headers={"typ": "at+jwt", "kid": key.kid}), {}, "unauthenticated"),
        ("alg none",
         jwt.encode(std_claims(), None, algorithm="none",
                    headers={"typ": "at+jwt", "kid": key.kid}), {}, "unauthenticated"),
    ]
    stranger = PyKey()
    cases.append(("a key tesserad does not hold", stranger.sign(std_claims()), {},
                  "unauthenticated"))
    cases.append(("a stranger's signature under our kid", stranger.sign(std_claims(),
                                                                         kid=key.kid), {},
                  "unauthenticated"))
    for name, token, extra, want in cases:
        params = {"token": token}
        params.update(extra)
        code = rpc.code("token.verify", params)
        expect(code == want, "%s: token.verify answered %r, expected %s" % (name, code, want))


def check_unmanaged_dir_signs_with_pyjwt_key(st):
    key = PyKey()
    d = Daemon(st["tesserad"])
    st["daemons"].append(d)
    key.write_jwk(d.keys)
    why = d.start()
    expect(why is None, "tesserad on a directory holding only the PyJWT key: %s" % (why,))
    rpc = Rpc(d)
    try:
        jwks = jwks_set(rpc)
        expect([k["kid"] for k in jwks["keys"]] == [key.kid],
               "published %r, expected only %s" % ([k["kid"] for k in jwks["keys"]], key.kid))
        res = issue(rpc, {"sub": "dora", "aud": "api"})
        header = jwt.get_unverified_header(res["token"])
        expect(header == {"alg": "EdDSA", "typ": "at+jwt", "kid": key.kid}, "header %r"
               % (header,))
        # PyJWT verifies it with the key it made itself, no JWKS involved.
        claims = jwt.decode(res["token"], key.public, algorithms=["EdDSA"], issuer=ISSUER,
                            audience="api")
        expect(claims["sub"] == "dora", "claims %r" % (claims,))
        code = rpc.code("keys.rotate", {})
        expect(code == "unavailable", "keys.rotate on keys managed outside: %r" % (code,))
        expect(not os.path.exists(os.path.join(d.keys, "keys.json")),
               "tesserad wrote keys.json into a directory it does not manage")
    finally:
        rpc.close()
    status = d.stop()
    expect(status == 0, "SIGTERM: exit status %r" % (status,))


CHECKS = [
    ("keys.jwks loads in PyJWT; kids are RFC 7638 thumbprints", check_jwks_in_pyjwt),
    ("tesserad access token verifies in PyJWT (EdDSA, iss, aud)", check_access_token_in_pyjwt),
    ("PyJWT refuses a tampered signature, another iss or aud", check_pyjwt_refuses_wrong),
    ("tesserad purpose token verifies in PyJWT", check_purpose_token_in_pyjwt),
    ("after keys.rotate old and new tokens verify in PyJWT", check_rotation_in_pyjwt),
    ("PyJWT-signed token verifies in tesserad (key added, SIGHUP)", check_pyjwt_token_in_tesserad),
    ("PyJWT-signed token verifies through the CLI from stdin", check_pyjwt_token_via_cli),
    ("PyJWT-signed purpose token is used exactly once", check_pyjwt_purpose_consumed_once),
    ("tesserad refuses wrong PyJWT tokens with the right codes", check_tesserad_refuses_bad_pyjwt),
    ("unmanaged dir with only a PyJWT key: tesserad signs with it",
     check_unmanaged_dir_signs_with_pyjwt_key),
]


def main(argv):
    bad = usage_error(argv)
    if bad is not None:
        return bad
    cli = os.path.abspath(argv[2]) if len(argv) > 2 and os.access(argv[2], os.X_OK) else None
    report = Report()
    a = Daemon(argv[1])
    st = {"a": a, "tesserad": argv[1], "cli": cli, "pykey": PyKey(), "daemons": [a], "rpc": None}
    try:
        why = a.start()
        report("tesserad starts (managed key dir) and sends READY=1", why)
        if why is None:
            st["rpc"] = Rpc(a)
            report.run(CHECKS, st)
            st["rpc"].close()
            report.stop(a)
    finally:
        status = report.finish(st["daemons"])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
