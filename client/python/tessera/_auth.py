"""_auth.py: what the WSGI and ASGI middleware share: from a request's headers to an identity
or a refusal, the same rules as the Node middleware (client/node/src/middleware.js):
  - a bearer token (Authorization: Bearer ...) wins; it is checked by the local Verifier when
    one is given, else by the daemon (token.verify with check_revoked);
  - else the session cookie (cookie_name, default __Host-sid) is validated by the daemon
    (session.validate with the client's ip and user agent);
  - with rotate_after > 0, a session older than that many seconds is rotated and the renewed
    cookie is set;
  - a refused credential is 401 (a refused cookie is cleared); a daemon that cannot answer is
    503, never mistaken for a logged-out user.
The sync and async paths differ only in how the daemon is called (authenticate / aauthenticate).
Nothing here logs; no sid or token appears in an outcome."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import TesseraError

REFUSED = {"unauthenticated", "expired", "revoked", "reused", "bad_request"}
_BEARER = re.compile(r"Bearer\s+(\S+)\s*\Z", re.I)
_COOKIE_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")


@dataclass
class Outcome:
    identity: dict | None = None
    status: int = 0  # 0: hand over to the app
    code: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)  # Set-Cookie and friends

    def body(self) -> bytes:
        return ('{"error":"%s"}' % self.code).encode()


@dataclass
class Request:
    authorization: str | None
    cookie: str | None
    ip: str | None
    ua: str | None


class Authenticator:
    def __init__(self, client: Any, verifier: Any = None, cookie_name: str = "__Host-sid",
                 rotate_after: int = 0, optional: bool = False):
        if client is None or not hasattr(client, "call"):
            raise TypeError("client must be a tessera Client")
        if verifier is not None and not hasattr(verifier, "verify"):
            raise TypeError("verifier must be a tessera Verifier")
        if not isinstance(cookie_name, str) or not _COOKIE_NAME.match(cookie_name):
            raise ValueError("cookie_name must be a cookie name")
        if not isinstance(rotate_after, int) or rotate_after < 0:
            raise ValueError("rotate_after must be an integer >= 0 (seconds)")
        self.client, self.verifier, self.cookie_name = client, verifier, cookie_name
        self.rotate_after, self.optional = rotate_after, optional
        self.clear_cookie = f"{cookie_name}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Lax"

    # ---- the steps both paths share ----

    def _credentials(self, req: Request) -> tuple[str | None, str | None]:
        m = _BEARER.match(req.authorization or "")
        if m:
            return m.group(1), None
        return None, read_cookie(req.cookie, self.cookie_name)

    def _missing(self) -> Outcome:
        if self.optional:
            return Outcome()
        return Outcome(status=401, code="unauthenticated", headers=[("WWW-Authenticate", "Bearer")])

    def _failed(self, err: Exception, bearer: bool) -> Outcome:
        code = getattr(err, "code", "internal")
        if code not in REFUSED:
            return Outcome(status=503, code="unavailable", headers=[("Retry-After", "1")])
        headers = [("WWW-Authenticate", 'Bearer error="invalid_token"')] if bearer else \
            [("Set-Cookie", self.clear_cookie)]
        if self.optional:
            return Outcome(headers=[h for h in headers if h[0] == "Set-Cookie"])
        return Outcome(status=401, code=code, headers=headers)

    @staticmethod
    def _client_info(req: Request) -> dict:
        info = {"ua": req.ua or ""}
        if req.ip:
            info["ip"] = req.ip
        return info

    @staticmethod
    def _session_identity(v: dict) -> dict:
        return {"kind": "session", "sub": v["sub"], "handle": v["handle"], "data": v.get("data"),
                "created_at": v["created_at"], "expires_at": v["expires_at"],
                "idle_expires_at": v["idle_expires_at"], "anomalies": v.get("anomalies") or []}

    def _due(self, v: dict) -> bool:
        return self.rotate_after > 0 and v["created_at"] + self.rotate_after <= int(time.time())

    # ---- sync (WSGI) ----

    def authenticate(self, req: Request) -> Outcome:
        token, sid = self._credentials(req)
        if token is None and sid is None:
            return self._missing()
        try:
            if token is not None:
                claims = self.verifier.verify(token) if self.verifier else \
                    self.client.token_verify(token, check_revoked=True)["claims"]
                return Outcome(identity={"kind": "token", "sub": claims["sub"], "claims": claims})
            v = self.client.session_validate(sid, client=self._client_info(req))
            out = Outcome(identity=self._session_identity(v))
            if self._due(v):
                out.headers.append(("Set-Cookie", self.client.session_rotate(sid)["cookie"]))
            return out
        except (TesseraError, KeyError, TypeError) as e:
            return self._failed(e, token is not None)

    # ---- async (ASGI; client is a tessera.aio.Client) ----

    async def aauthenticate(self, req: Request) -> Outcome:
        token, sid = self._credentials(req)
        if token is None and sid is None:
            return self._missing()
        try:
            if token is not None:
                claims = self.verifier.verify(token) if self.verifier else \
                    (await self.client.token_verify(token, check_revoked=True))["claims"]
                return Outcome(identity={"kind": "token", "sub": claims["sub"], "claims": claims})
            v = await self.client.session_validate(sid, client=self._client_info(req))
            out = Outcome(identity=self._session_identity(v))
            if self._due(v):
                out.headers.append(("Set-Cookie", (await self.client.session_rotate(sid))["cookie"]))
            return out
        except (TesseraError, KeyError, TypeError) as e:
            return self._failed(e, token is not None)


def read_cookie(header: str | None, name: str) -> str | None:
    """The value of cookie name in a Cookie header, or None."""
    if not header:
        return None
    for part in header.split(";"):
        k, eq, v = part.partition("=")
        if eq and k.strip() == name:
            v = v.strip()
            return v[1:-1] if len(v) >= 2 and v[0] == v[-1] == '"' else v
    return None
