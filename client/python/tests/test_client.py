"""test_client.py: tessera.Client and tessera.aio.Client against the real daemon: helpers,
errors with the wire code and no secret, every method covered, pipelining from many threads
and tasks, reconnect after the daemon restarts; per-call timeouts against a stand-in server
that holds a reply back (deterministic)."""
import asyncio
import socket
import threading
import time

import msgpack

import pytest

import tessera
import tessera.aio
from tessera import METHODS, TesseraError


def test_ping_and_a_session_round_trip(client):
    assert abs(client.sys_ping()["now"] - time.time()) < 5
    s = client.session_create("alice", data={"role": "admin"})
    assert len(s["sid"]) == 43 and s["cookie"].startswith("__Host-sid=")
    v = client.session_validate(s["sid"])
    assert v["sub"] == "alice" and v["data"] == {"role": "admin"}
    assert client.session_revoke(sid=s["sid"]) == {"revoked": 1}
    with pytest.raises(TesseraError) as e:
        client.session_validate(s["sid"])
    assert e.value.code == "unauthenticated"


def test_errors_carry_the_wire_code_and_never_the_secret(client):
    secret = "y" * 43
    with pytest.raises(TesseraError) as e:
        client.session_validate(secret)
    assert e.value.code == "unauthenticated" and secret not in str(e.value) and e.value.remote
    with pytest.raises(TesseraError) as e:
        client.call("no.such")
    assert e.value.code == "unknown_method"
    with pytest.raises(TesseraError) as e:
        client.call("session.create", {"sub": "a", "bogus": 1})
    assert e.value.code == "bad_request"
    with pytest.raises(TypeError):
        client.call("sys.ping", "nope")


def test_every_method_has_a_helper(client):
    wire = sorted(k[7:] for k in client.sys_stats() if k.startswith("method."))
    assert sorted(METHODS.values()) == wire
    for name in METHODS:
        assert callable(getattr(tessera.Client, name)) and callable(getattr(tessera.aio.Client, name))


def test_many_threads_pipeline_on_one_client(client):
    results, errors = {}, []

    def work(i):
        try:
            t = client.token_issue(f"user-{i}", ttl=60)
            results[i] = client.token_verify(t["token"])["claims"]["sub"]
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == {i: f"user-{i}" for i in range(50)}


def stand_in(path):
    """A server that answers "fast" at once and "slow" only after the next "fast"."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen()

    def serve():
        conn, _ = srv.accept()
        unpacker, slow = msgpack.Unpacker(raw=False), None
        try:
            while data := conn.recv(4096):
                unpacker.feed(data)
                for _, msgid, method, _params in unpacker:
                    if method == "slow":
                        slow = msgid
                        continue
                    conn.sendall(msgpack.packb([1, msgid, None, {"method": method}]))
                    if slow is not None:
                        conn.sendall(msgpack.packb([1, slow, None, {"late": True}]))
                        slow = None
        except OSError:
            pass  # the client went away
        conn.close()
        srv.close()
    threading.Thread(target=serve, daemon=True).start()


def test_timeout_then_a_late_reply_is_dropped_and_the_connection_goes_on(daemon):
    path = daemon.dir + "/stand-in.sock"
    stand_in(path)
    with tessera.connect(path) as c:
        with pytest.raises(TesseraError) as e:
            c.call("slow", timeout=0.05)
        assert e.value.code == "timeout" and not e.value.remote
        assert c.call("fast") == {"method": "fast"}
        assert c.call("fast") == {"method": "fast"}

    async def aio_side():
        apath = daemon.dir + "/stand-in-aio.sock"
        stand_in(apath)
        async with tessera.aio.Client(apath) as a:
            with pytest.raises(TesseraError) as e:
                await a.call("slow", timeout=0.05)
            assert e.value.code == "timeout"
            assert await a.call("fast") == {"method": "fast"}
            assert await a.call("fast") == {"method": "fast"}
    asyncio.run(aio_side())


def test_connect_to_a_missing_socket(daemon):
    with pytest.raises(TesseraError) as e:
        tessera.connect(daemon.dir + "/nothing.sock")
    assert e.value.code == "connect"


def test_aio_client_pipelines_and_maps_errors(daemon):
    async def main():
        async with tessera.aio.Client(daemon.socket) as c:
            issued = await asyncio.gather(*(c.token_issue(f"u{i}", ttl=60) for i in range(100)))
            subs = await asyncio.gather(*(c.token_verify(t["token"]) for t in issued))
            assert [s["claims"]["sub"] for s in subs] == [f"u{i}" for i in range(100)]
            with pytest.raises(TesseraError) as e:
                await c.session_validate("z" * 43)
            assert e.value.code == "unauthenticated"
            assert "now" in await c.sys_ping()
    asyncio.run(main())


def test_reconnect_after_the_daemon_restarts(daemon):
    c = tessera.Client(daemon.socket)
    c.sys_ping()
    daemon.stop()
    with pytest.raises(TesseraError) as e:
        c.sys_ping()
    assert e.value.code in ("closed", "connect")
    daemon.launch()
    assert "now" in c.sys_ping()

    async def aio_side():
        a = tessera.aio.Client(daemon.socket)
        await a.sys_ping()
        daemon.stop()
        with pytest.raises(TesseraError):
            await a.sys_ping()
        daemon.launch()
        assert "now" in await a.sys_ping()
        await a.close()
    asyncio.run(aio_side())
    c.close()
