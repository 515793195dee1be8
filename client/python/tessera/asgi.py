"""asgi.py: ASGI middleware (Starlette, FastAPI, any ASGI app) over _auth.Authenticator.

    app.add_middleware(TesseraASGI, socket_path=path, verifier=v)     # FastAPI / Starlette

For every HTTP request it puts the identity in scope["tessera"] and scope["state"]["tessera"]
(request.state.tessera in Starlette), answers 401/503 itself with {"error": code}, and adds
renewed or cleared session cookies to the response. It talks to the daemon with a
tessera.aio.Client made on first use inside the app's event loop (or the one given as client).
Other scopes (lifespan, websocket) pass through untouched."""
from __future__ import annotations

from typing import Any

from . import aio
from ._auth import Authenticator, Request


class TesseraASGI:
    def __init__(self, app: Any, *, socket_path: str | None = None, client: aio.Client | None = None,
                 verifier: Any = None, cookie_name: str = "__Host-sid", rotate_after: int = 0,
                 optional: bool = False):
        self.app = app
        self._client = client
        self.socket_path = socket_path
        self.auth = Authenticator(client or aio.Client(socket_path), verifier, cookie_name, rotate_after, optional)
        # The aio client binds to the loop of its first call: the app's.

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {}
        for k, v in scope.get("headers") or []:
            headers.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
        peer = scope.get("client")
        out = await self.auth.aauthenticate(Request(
            authorization=headers.get("authorization"), cookie=headers.get("cookie"),
            ip=peer[0] if peer else None, ua=headers.get("user-agent")))
        if out.status:
            body = out.body()
            raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            raw += [(k.lower().encode(), v.encode()) for k, v in out.headers]
            await send({"type": "http.response.start", "status": out.status, "headers": raw})
            await send({"type": "http.response.body", "body": body})
            return
        scope["tessera"] = out.identity
        scope.setdefault("state", {})["tessera"] = out.identity
        extra = [(k.lower().encode(), v.encode()) for k, v in out.headers]
        if not extra:
            await self.app(scope, receive, send)
            return

        async def send_with_cookies(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = dict(message, headers=list(message.get("headers") or []) + extra)
            await send(message)
        await self.app(scope, receive, send_with_cookies)
