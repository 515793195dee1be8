"""methods.py: one typed helper per method of proto/PROTOCOL.md, shared by the sync and the
asyncio client (a mixin over self.call). `session.create` is client.session_create(...);
keyword arguments are the params, None values are left out. The async client's helpers return
awaitables (its call is a coroutine function)."""
from typing import Any

METHODS = {
    "sys_ping": "sys.ping",
    "sys_stats": "sys.stats",
    "keys_jwks": "keys.jwks",
    "keys_rotate": "keys.rotate",
    "session_create": "session.create",
    "session_validate": "session.validate",
    "session_rotate": "session.rotate",
    "session_revoke": "session.revoke",
    "session_list": "session.list",
    "session_revoke_all": "session.revoke_all",
    "session_exchange": "session.exchange",
    "token_issue": "token.issue",
    "token_verify": "token.verify",
    "token_consume": "token.consume",
    "token_pair": "token.pair",
    "token_refresh": "token.refresh",
    "token_revoke": "token.revoke",
    "user_revoke": "user.revoke",
    "events_subscribe": "events.subscribe",
}


def _p(**kw: Any) -> dict:
    return {k: v for k, v in kw.items() if v is not None}


class Methods:
    """Typed helpers; subclasses define call(method, params, timeout=None)."""

    def call(self, method: str, params: dict | None = None, *, timeout: float | None = None) -> Any:
        raise NotImplementedError

    def sys_ping(self, *, timeout=None):
        return self.call("sys.ping", {}, timeout=timeout)

    def sys_stats(self, *, timeout=None):
        return self.call("sys.stats", {}, timeout=timeout)

    def keys_jwks(self, *, timeout=None):
        return self.call("keys.jwks", {}, timeout=timeout)

    def keys_rotate(self, *, timeout=None):
        return self.call("keys.rotate", {}, timeout=timeout)

    def session_create(self, sub: str, *, ttl: int | None = None, idle_ttl: int | None = None,
                       data: Any = None, client: dict | None = None, timeout=None):
        return self.call("session.create", _p(sub=sub, ttl=ttl, idle_ttl=idle_ttl, data=data, client=client),
                         timeout=timeout)

    def session_validate(self, sid: str, *, client: dict | None = None, timeout=None):
        return self.call("session.validate", _p(sid=sid, client=client), timeout=timeout)

    def session_rotate(self, sid: str, *, timeout=None):
        return self.call("session.rotate", {"sid": sid}, timeout=timeout)

    def session_revoke(self, *, sid: str | None = None, handle: str | None = None, timeout=None):
        return self.call("session.revoke", _p(sid=sid, handle=handle), timeout=timeout)

    def session_list(self, sub: str, *, limit: int | None = None, after: str | None = None, timeout=None):
        return self.call("session.list", _p(sub=sub, limit=limit, after=after), timeout=timeout)

    def session_revoke_all(self, sub: str, *, except_: str | None = None, timeout=None):
        return self.call("session.revoke_all", _p(sub=sub, **{"except": except_}), timeout=timeout)

    def session_exchange(self, token: str, purpose: str, *, timeout=None):
        return self.call("session.exchange", {"token": token, "purpose": purpose}, timeout=timeout)

    def token_issue(self, sub: str, *, ttl: int | None = None, aud: str | list | None = None,
                    scope: str | None = None, claims: dict | None = None, purpose: str | None = None,
                    timeout=None):
        return self.call("token.issue", _p(sub=sub, ttl=ttl, aud=aud, scope=scope, claims=claims, purpose=purpose),
                         timeout=timeout)

    def token_verify(self, token: str, *, aud: str | None = None, purpose: str | None = None,
                     check_revoked: bool | None = None, timeout=None):
        return self.call("token.verify", _p(token=token, aud=aud, purpose=purpose, check_revoked=check_revoked),
                         timeout=timeout)

    def token_consume(self, token: str, purpose: str, *, timeout=None):
        return self.call("token.consume", {"token": token, "purpose": purpose}, timeout=timeout)

    def token_pair(self, sub: str, *, aud: str | list | None = None, scope: str | None = None,
                   claims: dict | None = None, access_ttl: int | None = None, refresh_ttl: int | None = None,
                   timeout=None):
        return self.call("token.pair", _p(sub=sub, aud=aud, scope=scope, claims=claims, access_ttl=access_ttl,
                                          refresh_ttl=refresh_ttl), timeout=timeout)

    def token_refresh(self, refresh_token: str, *, timeout=None):
        return self.call("token.refresh", {"refresh_token": refresh_token}, timeout=timeout)

    def token_revoke(self, *, token: str | None = None, family: str | None = None, jti: str | None = None,
                     exp: int | None = None, timeout=None):
        return self.call("token.revoke", _p(token=token, family=family, jti=jti, exp=exp), timeout=timeout)

    def user_revoke(self, sub: str, *, timeout=None):
        return self.call("user.revoke", {"sub": sub}, timeout=timeout)

    def events_subscribe(self, *, since: str | None = None, timeout=None):
        return self.call("events.subscribe", _p(since=since), timeout=timeout)
