"""verifier.py: tessera.Verifier, the local verifier, libtessera's (tessera/verifier.h) in
Python; thread-safe (one lock around the shared state, never held across I/O or a signature
check).
  keys    fetched at start, refetched once older than max_age (the old set stays if that
          fails), on a "keys" notification with another keys_version, and once for an unknown
          kid (at most once per refetch_cooldown). A set that drops a kid empties the cache.
  cache   verified tokens until exp + leeway (FIFO eviction at cache_entries); every hit is
          checked against the revocation set again.
  feed    (subscribe, the default) a thread with its own connection on events.subscribe,
          resumed from the cursor of the last entry applied ("0" at first); "revoked" jti,
          family and sub entries are held until their `until`; "reset" empties the cache and
          every token issued at or before it gets the feed-down policy; after a disconnect it
          reconnects with jittered backoff (50 ms doubling to 5 s), resubscribes from its
          cursor and refetches the keys.
  policy  once the feed has been down feed_stale seconds: "fail-closed" refuses every verify
          (code "unavailable"); "ask-daemon" asks token.verify with check_revoked.
verify() returns the claims (a fresh dict) or raises TesseraError with code "unauthenticated",
"expired", "revoked" (as token.verify answers) or "unavailable"."""
from __future__ import annotations

import random
import threading
import time
from typing import Any

from .client import Client, default_socket
from .errors import TesseraError
from .jws import MAX_TOKEN, Refusal, check_claims, key_of, parse, verify_signature

BACKOFF_MIN = 0.05
BACKOFF_MAX = 5.0
BACKOFF_RESET = 10.0
PRUNE_EVERY = 30.0
MAX_AGE_CAP = 86400
MAX_AGE_DEFAULT = 300
POLICIES = ("fail-closed", "ask-daemon")
_MESSAGES = {"unauthenticated": "token not valid", "expired": "token expired or not yet valid",
             "revoked": "token revoked"}


def _refuse(code: str) -> TesseraError:
    return TesseraError(code, _MESSAGES[code])


def _unavailable(why: str) -> TesseraError:
    return TesseraError("unavailable", why)


class Verifier:
    def __init__(self, socket_path: str | None = None, *, issuer: str = "tessera",
                 audience: str | None = None, leeway: int = 60, cache_entries: int = 10000,
                 refetch_cooldown: float = 1.0, timeout: float = 2.0, subscribe: bool = True,
                 feed_down_policy: str = "fail-closed", feed_stale: float = 5.0):
        """Connects, fetches the keys and (with subscribe) subscribes before returning, so a
        verifier that exists has keys and a live feed. Raises TesseraError when it cannot."""
        for name, v in (("leeway", leeway), ("cache_entries", cache_entries)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0")
        if feed_down_policy not in POLICIES:
            raise ValueError(f"feed_down_policy must be one of {', '.join(POLICIES)}")
        if not isinstance(issuer, str) or not issuer:
            raise ValueError("issuer must be a non-empty string")
        if audience is not None and (not isinstance(audience, str) or not audience):
            raise ValueError("audience must be a non-empty string or None")
        self.socket_path = default_socket() if socket_path is None else socket_path
        self.issuer, self.audience, self.leeway = issuer, audience, leeway
        self.cache_entries, self.cooldown, self.timeout = cache_entries, refetch_cooldown, timeout
        self.subscribe, self.policy, self.stale = subscribe, feed_down_policy, feed_stale

        self._mu = threading.Lock()
        self._fetch_mu = threading.Lock()
        self._fed = threading.Condition(self._mu)
        self._call = Client(self.socket_path, timeout=timeout)
        self._keys: dict = {}
        self._keys_version: int | None = None
        self._keys_fetched = float("-inf")
        self._max_age = float(MAX_AGE_DEFAULT)
        self._last_kid_fetch = float("-inf")
        self._last_stale_try = float("-inf")
        self._cache: dict[str, tuple[dict, int]] = {}
        self._rev_jti: dict[str, int] = {}
        self._rev_fam: dict[str, int] = {}
        self._rev_sub: dict[str, tuple[int, int]] = {}
        self._feed: Client | None = None
        self._feed_up = False
        self._feed_down_since = time.monotonic()
        self._cursor = "0"
        self._reset_at = 0
        self._stop = threading.Event()
        self._st = dict(verifies=0, accepted=0, cache_hits=0, signature_checks=0, jwks_fetches=0,
                        jwks_fetch_failures=0, unknown_kid_refused=0, revocations_applied=0,
                        keys_notifications=0, feed_connects=0, feed_disconnects=0, feed_events=0,
                        feed_resets=0, daemon_fallbacks=0)
        try:
            if subscribe:
                feed = self._feed_connect()
                self._thread = threading.Thread(target=self._feed_loop, args=(feed,), name="tessera-feed",
                                                daemon=True)
                self._thread.start()
            else:
                self._thread = None
                self._fetch_keys(self._call)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Verifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the verify path ----

    def verify(self, token: str) -> dict:
        if not isinstance(token, str):
            raise TypeError("token must be a str")
        mode = self._feed_mode()
        now = int(time.time())
        with self._mu:
            self._st["verifies"] += 1
            if mode == "fail-closed":
                raise _unavailable("the revocation feed is down (fail-closed policy)")
            hit = self._cache.get(token)
            claims = None
            if hit is not None:
                if now >= hit[1]:
                    del self._cache[token]
                elif self._revoked(hit[0], now):
                    del self._cache[token]
                    raise _refuse("revoked")
                else:
                    self._st["cache_hits"] += 1
                    claims = hit[0]
            reset_at = self._reset_at
        if claims is None:
            if len(token) > MAX_TOKEN:
                raise _refuse("unauthenticated")
            claims = self._fresh(token, now)
        if mode == "ok" and reset_at and (claims.get("iat") or 0) <= reset_at:
            mode = self.policy
        if mode == "fail-closed":
            raise _unavailable("issued before the revocation feed was reset (fail-closed policy)")
        if mode == "ask-daemon":
            self._ask_daemon(token)
        with self._mu:
            self._st["accepted"] += 1
        return dict(claims)

    def stats(self) -> dict:
        with self._mu:
            return dict(self._st, cached_tokens=len(self._cache),
                        revocation_entries=len(self._rev_jti) + len(self._rev_fam) + len(self._rev_sub),
                        keys_version=self._keys_version, feed_up=self._feed_up)

    def wait_feed(self, seen: int, timeout: float = 5.0) -> bool:
        """Blocks until stats()["feed_events"] exceeds seen; False after timeout."""
        with self._fed:
            return self._fed.wait_for(lambda: self._st["feed_events"] > seen, timeout)

    def close(self) -> None:
        self._stop.set()
        if self._feed is not None:
            self._feed.close()
        self._call.close()
        t = getattr(self, "_thread", None)
        if t is not None and t is not threading.current_thread():
            t.join(timeout=10)

    def _feed_mode(self) -> str:
        if not self.subscribe or self._feed_up:
            return "ok"
        return self.policy if time.monotonic() - self._feed_down_since >= self.stale else "ok"

    def _revoked(self, c: dict, now: int) -> bool:
        """Under _mu."""
        if not (self._rev_jti or self._rev_fam or self._rev_sub):
            return False
        until = self._rev_jti.get(c.get("jti"))
        if until is not None and now <= until:
            return True
        until = self._rev_fam.get(c.get("fam")) if "fam" in c else None
        if until is not None and now <= until:
            return True
        s = self._rev_sub.get(c.get("sub"))
        return s is not None and now <= s[0] and (c.get("iat") or 0) <= s[1]

    def _fresh(self, token: str, now: int) -> dict:
        mono = time.monotonic()
        if mono - self._keys_fetched >= self._max_age and mono - self._last_stale_try >= 1.0:
            self._last_stale_try = mono
            try:
                self._refetch()
            except TesseraError:
                pass  # the old set stays in use
        try:
            kid, signing_input, sig, payload = parse(token, "at+jwt")
            key = self._keys.get(kid)
            if key is None:
                self._refetch_for(kid)
                key = self._keys.get(kid)
                if key is None:
                    raise Refusal("unauthenticated")
            with self._mu:
                self._st["signature_checks"] += 1
            claims = verify_signature(key, signing_input, sig, payload)
            check_claims(claims, now=now, leeway=self.leeway, issuer=self.issuer, audience=self.audience)
        except Refusal as r:
            raise _refuse(r.code) from None
        with self._mu:
            if self._revoked(claims, now):
                raise _refuse("revoked")
            if self.cache_entries:
                while len(self._cache) >= self.cache_entries:
                    del self._cache[next(iter(self._cache))]
                self._cache[token] = (claims, claims["exp"] + self.leeway)
        return claims

    def _refetch_for(self, kid: str) -> None:
        with self._fetch_mu:
            if kid in self._keys:
                return
            if time.monotonic() - self._last_kid_fetch < self.cooldown:
                with self._mu:
                    self._st["unknown_kid_refused"] += 1
                return
            self._last_kid_fetch = time.monotonic()
            try:
                self._fetch_keys_locked(self._call)
            except TesseraError:
                raise _unavailable("unknown kid and the key set could not be refetched") from None

    def _ask_daemon(self, token: str) -> None:
        with self._mu:
            self._st["daemon_fallbacks"] += 1
        try:
            self._call.token_verify(token, aud=self.audience, check_revoked=True)
        except TesseraError as e:
            if e.code in _MESSAGES:
                raise _refuse(e.code) from None
            raise _unavailable("the revocation feed is down and tesserad could not be asked") from None

    # ---- keys ----

    def _refetch(self) -> None:
        with self._fetch_mu:
            self._fetch_keys_locked(self._call)

    def _fetch_keys(self, client: Client) -> None:
        with self._fetch_mu:
            self._fetch_keys_locked(client)

    def _fetch_keys_locked(self, client: Client) -> None:
        with self._mu:
            self._st["jwks_fetches"] += 1
        try:
            r = client.keys_jwks()
            keys = {j["kid"]: k for j in (r.get("keys") or []) if (k := key_of(j)) is not None}
            version = r.get("keys_version")
            if not keys or not isinstance(version, int):
                raise TesseraError("protocol", "keys.jwks: no usable key in the set")
        except (TesseraError, AttributeError, TypeError) as e:
            with self._mu:
                self._st["jwks_fetch_failures"] += 1
            raise e if isinstance(e, TesseraError) else TesseraError("protocol", "keys.jwks: malformed reply")
        max_age = r.get("max_age")
        with self._mu:
            if any(kid not in keys for kid in self._keys):
                self._cache.clear()
            self._keys = keys
            self._keys_version = version
            self._max_age = float(min(max_age, MAX_AGE_CAP) if isinstance(max_age, int) and max_age >= 0
                                  else MAX_AGE_DEFAULT)
            self._keys_fetched = time.monotonic()

    # ---- the feed ----

    def _fed_event(self, counter: str | None, n: int = 1) -> None:
        """Under _mu."""
        if n:
            if counter:
                self._st[counter] += n
            self._st["feed_events"] += n
            self._fed.notify_all()

    def _feed_connect(self) -> Client:
        feed = Client(self.socket_path, timeout=min(self.timeout, 10.0) if self.timeout else 10.0)
        feed.on_notification = lambda m, a: self._on_notification(feed, m, a)
        self._feed = feed
        try:
            r = feed.events_subscribe(since=self._cursor)
            if not isinstance(r, dict) or r.get("subscribed") is not True:
                raise TesseraError("protocol", "events.subscribe: unexpected reply")
            self._fetch_keys(feed)
        except BaseException:
            feed.close()
            raise
        with self._mu:
            self._feed_up = True
            self._fed_event("feed_connects")
        return feed

    def _feed_loop(self, feed: Client | None) -> None:
        backoff = BACKOFF_MIN
        next_prune = time.monotonic() + PRUNE_EVERY
        while not self._stop.is_set():
            if feed is not None:
                up = time.monotonic()
                while not feed.wait_closed(1.0) and not self._stop.is_set():
                    if time.monotonic() >= next_prune:
                        self._prune()
                        next_prune = time.monotonic() + PRUNE_EVERY
                feed.close()
                with self._mu:
                    self._feed_up = False
                    self._feed_down_since = time.monotonic()
                    self._fed_event("feed_disconnects")
                if time.monotonic() - up >= BACKOFF_RESET:
                    backoff = BACKOFF_MIN
                feed = None
            if self._stop.wait(backoff / 2 + random.random() * backoff / 2):
                break
            backoff = min(backoff * 2, BACKOFF_MAX)
            try:
                feed = self._feed_connect()
            except TesseraError:
                feed = None

    def _on_notification(self, feed: Client, method: str, args: list) -> None:
        """On the feed connection's reader thread, one notification at a time."""
        if feed is not self._feed or self._stop.is_set():
            return
        if method == "revoked":
            self._on_revoked(args)
        elif method == "reset":
            c = args[0].get("cursor") if args and isinstance(args[0], dict) else None
            with self._mu:
                self._cursor = c if isinstance(c, str) and 1 <= len(c) <= 64 else "0"
                self._cache.clear()
                self._reset_at = int(time.time())
                self._fed_event("feed_resets")
        elif method == "keys":
            ver = args[0].get("keys_version") if args and isinstance(args[0], dict) else None
            with self._mu:
                self._st["keys_notifications"] += 1
                have = isinstance(ver, int) and ver == self._keys_version
            if not have:
                # Not on this (the reader) thread: the reply would have to come through it.
                threading.Thread(target=self._keys_changed, args=(feed,), daemon=True).start()
            else:
                with self._mu:
                    self._fed_event(None)

    def _keys_changed(self, feed: Client) -> None:
        try:
            self._fetch_keys(feed)
            with self._mu:
                self._fed_event(None)
        except TesseraError:
            feed.disconnect()  # the reconnect refetches

    def _on_revoked(self, entries: list) -> None:
        now = int(time.time())
        applied = 0
        with self._mu:
            for e in entries:
                if not isinstance(e, dict):
                    continue
                kind, ident, until = e.get("kind"), e.get("id"), e.get("until")
                ok = isinstance(ident, str) and isinstance(until, int)
                if ok and kind in ("jti", "family", "sub"):
                    if until >= now:
                        if kind == "jti":
                            self._rev_jti[ident] = max(until, self._rev_jti.get(ident, 0))
                        elif kind == "family":
                            self._rev_fam[ident] = max(until, self._rev_fam.get(ident, 0))
                        elif isinstance(e.get("before"), int):
                            old = self._rev_sub.get(ident, (0, 0))
                            self._rev_sub[ident] = (max(until, old[0]), max(e["before"], old[1]))
                    applied += 1
                cur = e.get("cursor")
                if isinstance(cur, str) and 1 <= len(cur) <= 64:
                    self._cursor = cur
            self._fed_event("revocations_applied", applied)

    def _prune(self) -> None:
        now = int(time.time())
        with self._mu:
            for m in (self._rev_jti, self._rev_fam):
                for k in [k for k, u in m.items() if u < now]:
                    del m[k]
            for k in [k for k, s in self._rev_sub.items() if s[0] < now]:
                del self._rev_sub[k]
