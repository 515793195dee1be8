"""test_fastapi.py: a FastAPI app behind TesseraASGI (Starlette's TestClient runs it on its
own event loop): the identity on request.state, a revoked session refused on the very next
request and a fresh one accepted, a bearer token checked locally, 401 without a credential."""
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from tessera import Verifier
from tessera.asgi import TesseraASGI


@pytest.fixture(scope="module")
def http(daemon):
    v = Verifier(daemon.socket)
    app = FastAPI()
    app.add_middleware(TesseraASGI, socket_path=daemon.socket, verifier=v)

    @app.get("/me")
    def me(request: Request):
        return request.state.tessera
    with TestClient(app) as tc:
        yield tc
    v.close()


def test_session_then_revoked_on_the_very_next_request(client, http):
    s = client.session_create("alice")
    cookies = {"cookie": f"__Host-sid={s['sid']}"}
    r = http.get("/me", headers=cookies)
    assert r.status_code == 200 and r.json()["sub"] == "alice"
    client.session_revoke(handle=s["handle"])
    r = http.get("/me", headers=cookies)
    assert r.status_code == 401 and r.json() == {"error": "unauthenticated"}
    assert r.headers["set-cookie"].startswith("__Host-sid=; Path=/; Max-Age=0")
    fresh = client.session_create("alice")
    assert http.get("/me", headers={"cookie": f"__Host-sid={fresh['sid']}"}).status_code == 200


def test_bearer_and_none(client, http):
    t = client.token_issue("bob")["token"]
    r = http.get("/me", headers={"authorization": f"Bearer {t}"})
    assert r.status_code == 200 and r.json()["claims"]["sub"] == "bob"
    assert http.get("/me").status_code == 401
    assert http.get("/me", headers={"authorization": "Bearer nope"}).status_code == 401
