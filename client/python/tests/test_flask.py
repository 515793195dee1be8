"""test_flask.py: a Flask app behind TesseraWSGI (Werkzeug's test client drives the WSGI app):
the identity reaches the view, a revoked session is refused on the very next request and its
cookie cleared, a fresh login works, a bearer token is checked by the local verifier, rotation
renews the cookie, and an unreachable daemon is 503."""
import time

import flask
import pytest

import tessera
from tessera import Verifier
from tessera.wsgi import TesseraWSGI, identity
from daemon import wait_for


def make_app(client, verifier=None, **options):
    app = flask.Flask("t")

    @app.get("/me")
    def me():
        return flask.jsonify(identity(flask.request.environ))
    app.wsgi_app = TesseraWSGI(app.wsgi_app, client=client, verifier=verifier, **options)
    return app


@pytest.fixture(scope="module")
def verifier(daemon):
    v = Verifier(daemon.socket)
    yield v
    v.close()


def get(app, headers):
    return app.test_client(use_cookies=False).get("/me", headers=headers)  # our Cookie header as sent


def test_session_then_revoked_on_the_very_next_request(client, verifier):
    app = make_app(client, verifier)
    s = client.session_create("alice", client={"ua": "pytest"})
    cookie = {"Cookie": f"__Host-sid={s['sid']}", "User-Agent": "pytest"}
    r = get(app, cookie)
    assert r.status_code == 200 and r.json["sub"] == "alice" and r.json["kind"] == "session"
    client.session_revoke(sid=s["sid"])
    r = get(app, cookie)
    assert r.status_code == 401 and r.json == {"error": "unauthenticated"}
    assert r.headers["Set-Cookie"].startswith("__Host-sid=; Path=/; Max-Age=0")
    fresh = client.session_create("alice")
    assert get(app, {"Cookie": f"__Host-sid={fresh['sid']}"}).status_code == 200


def test_bearer_token_and_no_credential(client, verifier):
    app = make_app(client, verifier)
    assert get(app, {}).status_code == 401
    t = client.token_issue("carol")["token"]
    r = get(app, {"Authorization": f"Bearer {t}"})
    assert r.status_code == 200 and r.json["claims"]["sub"] == "carol"
    client.token_revoke(token=t)
    wait_for(lambda: get(app, {"Authorization": f"Bearer {t}"}).status_code == 401, 1, "the revoked token refused")
    r = get(app, {"Authorization": f"Bearer {t}"})
    assert r.json == {"error": "revoked"} and "invalid_token" in r.headers["WWW-Authenticate"]


def test_rotation_renews_the_cookie(client):
    s = client.session_create("dora")
    cookie = {"Cookie": f"__Host-sid={s['sid']}"}
    assert "Set-Cookie" not in get(make_app(client, rotate_after=3600), cookie).headers
    created = s["expires_at"] - s["expires_in"]
    wait_for(lambda: time.time() >= created + 1, 3, "the session to age a second", every=0.01)
    app = make_app(client, rotate_after=1)
    r = get(app, cookie)
    assert r.status_code == 200
    renewed = r.headers["Set-Cookie"].split(";")[0]
    assert renewed != cookie["Cookie"]
    assert get(app, cookie).status_code == 401
    assert get(app, {"Cookie": renewed}).status_code == 200


def test_optional_and_outage(client, daemon):
    r = get(make_app(client, optional=True), {})
    assert r.status_code == 200 and r.json is None
    gone = tessera.Client(daemon.dir + "/nothing.sock")
    assert get(make_app(gone), {"Cookie": "__Host-sid=abc"}).status_code == 503
