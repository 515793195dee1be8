"""test_verifier.py: tessera.Verifier against the real daemon: valid tokens and the cache,
every refusal with its code, revocations (jti, family, user) refused once the feed brings
them (a generous 5 s deadline: speed is a benchmark's business), also after a feed reconnect;
the replay of what was revoked while the feed was
down; fail-closed and ask-daemon; the feed reset."""
import base64
import json

import pytest

from tessera import TesseraError, Verifier
from daemon import wait_for


def iat(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["iat"]


def outcome(v, token):
    try:
        v.verify(token)
        return "ok"
    except TesseraError as e:
        return e.code


def refused_soon(v, token, revoke):
    revoke()
    wait_for(lambda: outcome(v, token) == "revoked", 5.0, "the revocation to reach the verifier")


@pytest.fixture
def verifier(daemon):
    v = Verifier(daemon.socket)
    yield v
    v.close()


def test_valid_token_then_cache(client, verifier):
    t = client.token_issue("alice", scope="read", claims={"org": "acme"})
    claims = verifier.verify(t["token"])
    assert claims["sub"] == "alice" and claims["org"] == "acme"
    claims["sub"] = "mallory"  # the caller's own copy
    assert verifier.verify(t["token"])["sub"] == "alice"
    st = verifier.stats()
    assert st["signature_checks"] == 1 and st["cache_hits"] == 1 and st["feed_up"]


def test_refusals_carry_token_verify_codes(client, daemon):
    with Verifier(daemon.socket, leeway=0) as v:
        t = client.token_issue("bob")["token"]
        h, p, s = t.split(".")
        flip = lambda x: ("B" if x[0] == "A" else "A") + x[1:]  # noqa: E731
        assert outcome(v, f"{h}.{flip(p)}.{s}") == "unauthenticated"
        assert outcome(v, f"{h}.{p}.{flip(s)}") == "unauthenticated"
        assert outcome(v, f"{h}.{p}") == "unauthenticated"
        assert outcome(v, "") == "unauthenticated"
        assert outcome(v, "a" * 9000) == "unauthenticated"
        assert outcome(v, client.token_pair("bob")["refresh_token"]) == "unauthenticated"
        with_aud = client.token_issue("bob", aud="billing")["token"]
        assert outcome(v, with_aud) == "unauthenticated"
        with Verifier(daemon.socket, audience="billing", subscribe=False) as va:
            assert outcome(va, with_aud) == "ok"
            assert outcome(va, t) == "unauthenticated"
        short = client.token_issue("bob", ttl=1)["token"]
        wait_for(lambda: outcome(v, short) == "expired", 3, "the 1 s token to expire", every=0.02)
        with pytest.raises(TypeError):
            v.verify(42)


def test_revoked_access_token_is_refused(client, verifier):
    t = client.token_issue("carol")
    assert outcome(verifier, t["token"]) == "ok"
    refused_soon(verifier, t["token"], lambda: client.token_revoke(token=t["token"]))
    f = client.token_issue("carol")
    refused_soon(verifier, f["token"], lambda: client.token_revoke(jti=f["jti"], exp=f["expires_at"]))


def test_family_and_user_cut_off(client, verifier):
    pair = client.token_pair("dave")
    assert outcome(verifier, pair["access_token"]) == "ok"
    refused_soon(verifier, pair["access_token"], lambda: client.token_revoke(token=pair["refresh_token"]))
    t = client.token_issue("erin")
    assert outcome(verifier, t["token"]) == "ok"
    refused_soon(verifier, t["token"], lambda: client.user_revoke("erin"))
    assert outcome(verifier, client.token_issue("erin")["token"]) == "ok"


def test_after_a_feed_reconnect(client, daemon, verifier):
    missed = client.token_issue("frank")
    assert outcome(verifier, missed["token"]) == "ok"
    connects = verifier.stats()["feed_connects"]
    daemon.stop()
    wait_for(lambda: not verifier.stats()["feed_up"], 2, "the feed to notice")
    daemon.launch()
    wait_for(lambda: verifier.stats()["feed_connects"] > connects, 10, "the feed to resubscribe")
    t = client.token_issue("frank")
    assert outcome(verifier, t["token"]) == "ok"
    refused_soon(verifier, t["token"], lambda: client.token_revoke(token=t["token"]))
    # Revoked while the feed is down: the resubscribe from the cursor replays it.
    up = verifier.stats()["feed_connects"]
    verifier._feed.disconnect()
    client.token_revoke(token=missed["token"])
    wait_for(lambda: verifier.stats()["feed_connects"] > up, 10, "the feed to resubscribe")
    assert outcome(verifier, missed["token"]) == "revoked"


@pytest.mark.parametrize("policy", ["fail-closed", "ask-daemon"])
def test_feed_down_policy_with_the_daemon_gone(client, daemon, policy):
    with Verifier(daemon.socket, feed_stale=0.05, feed_down_policy=policy) as v:
        t = client.token_issue("gina")["token"]
        assert outcome(v, t) == "ok"
        daemon.stop()
        wait_for(lambda: outcome(v, t) == "unavailable", 3, "no verdict", every=0.01)
        daemon.launch()
        wait_for(lambda: outcome(v, t) == "ok", 10, "the feed to come back", every=0.01)


def test_reset(client, daemon):
    with Verifier(daemon.socket) as v, Verifier(daemon.socket, feed_down_policy="ask-daemon") as asks:
        old = client.token_issue("ivy")["token"]
        client.token_revoke(token=client.token_issue("ivy")["token"])
        wait_for(lambda: v.stats()["revocations_applied"] > 0, 2, "the revocation")
        assert outcome(v, old) == "ok"
        daemon.stop()
        daemon.swap_data()
        daemon.launch()
        wait_for(lambda: v.stats()["feed_resets"] == 1 and asks.stats()["feed_resets"] == 1, 10, "the reset")
        assert outcome(v, old) == "unavailable"
        assert outcome(asks, old) == "ok" and asks.stats()["daemon_fallbacks"] == 1
        # A token the daemon issued after the reset second (its clock, not ours: iat is its).
        fresh = wait_for(lambda: (lambda t: t if iat(t) > v._reset_at else None)(client.token_issue("ivy")["token"]),
                         3, "a token issued after the reset second", every=0.01)
        assert outcome(v, fresh) == "ok"


def test_keys_rotate(client, verifier):
    before = verifier.stats()
    r = client.keys_rotate()
    t = client.token_issue("jack")["token"]
    assert outcome(verifier, t) == "ok"  # the next key was published before it signed
    wait_for(lambda: verifier.stats()["keys_version"] == r["keys_version"], 2, "the new key set")
    assert verifier.stats()["keys_notifications"] > before["keys_notifications"]
    assert verifier.stats()["unknown_kid_refused"] == 0
