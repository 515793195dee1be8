"""wsgi.py: WSGI middleware (Flask, Django, any WSGI app) over _auth.Authenticator.

    app.wsgi_app = TesseraWSGI(app.wsgi_app, client=tessera.Client(path), verifier=v)

puts the identity in environ["tessera.identity"] ({"kind": "session"|"token", "sub", ...};
None when optional and absent; tessera.wsgi.identity(environ) reads it), answers 401/503
itself with a JSON body {"error": code}, and adds renewed or cleared session cookies to the
app's response. client is a sync tessera.Client (thread-safe: one for every worker thread)."""
from __future__ import annotations

from typing import Any, Callable, Iterable

from ._auth import Authenticator, Request

ENVIRON_KEY = "tessera.identity"


def identity(environ: dict) -> dict | None:
    return environ.get(ENVIRON_KEY)


class TesseraWSGI:
    def __init__(self, app: Callable, *, client: Any, verifier: Any = None, cookie_name: str = "__Host-sid",
                 rotate_after: int = 0, optional: bool = False):
        self.app = app
        self.auth = Authenticator(client, verifier, cookie_name, rotate_after, optional)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        out = self.auth.authenticate(Request(
            authorization=environ.get("HTTP_AUTHORIZATION"), cookie=environ.get("HTTP_COOKIE"),
            ip=environ.get("REMOTE_ADDR"), ua=environ.get("HTTP_USER_AGENT")))
        if out.status:
            body = out.body()
            reason = {401: "Unauthorized", 503: "Service Unavailable"}.get(out.status, "Error")
            start_response(f"{out.status} {reason}", [("Content-Type", "application/json"),
                                                     ("Content-Length", str(len(body))), *out.headers])
            return [body]
        environ[ENVIRON_KEY] = out.identity
        if not out.headers:
            return self.app(environ, start_response)

        def start(status, headers, exc_info=None):
            return start_response(status, list(headers) + out.headers, exc_info)
        return self.app(environ, start)
