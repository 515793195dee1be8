"""client.py: tessera.Client, one MessagePack-RPC connection to tesserad, synchronous and
thread-safe (proto/PROTOCOL.md "Framing").

Any number of threads may call at once: a request is written under a lock with the next uint32
msgid, and one reader thread per connection matches replies by msgid to waiting futures, so
requests pipeline. Each call waits at most its timeout (the client's default, or per call);
a late reply is dropped. Notifications go to on_notification(method, args), called on the
reader thread. When the connection drops, calls in flight fail with code "closed" (nothing is
retried behind the caller's back) and the next call connects again."""
from __future__ import annotations

import os
import socket
import threading
from concurrent.futures import Future, TimeoutError as FutureTimeout
from typing import Any, Callable

import msgpack

from .errors import CLOSED, CONNECT, PROTOCOL, TIMEOUT, TesseraError
from .methods import Methods

MAX_MSGID = 0xFFFFFFFF


def default_socket() -> str:
    return os.environ.get("TESSERA_SOCKET") or "/run/tessera/tesserad.sock"


def check_call(method: Any, params: Any) -> dict:
    if not isinstance(method, str) or not method:
        raise TypeError("method must be a non-empty string")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise TypeError("params must be a dict")
    return params


def reply_error(method: str, error: Any) -> TesseraError:
    if isinstance(error, (list, tuple)) and error and isinstance(error[0], str):
        msg = error[1] if len(error) > 1 and isinstance(error[1], str) else error[0]
        return TesseraError(error[0], f"{method}: {msg}", method)
    return TesseraError(PROTOCOL, f"{method}: malformed error reply", method)


class _Conn:
    """One socket and its reader thread."""

    def __init__(self, sock: socket.socket, on_notification):
        self.sock = sock
        self.pending: dict[int, tuple[Future, str]] = {}
        self.lock = threading.Lock()
        self.alive = True
        self.closed = threading.Event()
        self.on_notification = on_notification
        self.reader = threading.Thread(target=self._read, name="tessera-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                unpacker.feed(data)
                for msg in unpacker:
                    self._dispatch(msg)
        except Exception:  # a reset, or a malformed stream: the connection is unusable
            pass
        self.shutdown("connection to tesserad lost")

    def _dispatch(self, msg: Any) -> None:
        if not isinstance(msg, list):
            return
        if len(msg) == 4 and msg[0] == 1:
            with self.lock:
                entry = self.pending.pop(msg[1], None)
            if entry is None:
                return
            fut, method = entry
            if msg[2] is None:
                fut.set_result(msg[3] if msg[3] is not None else {})
            else:
                fut.set_exception(reply_error(method, msg[2]))
        elif len(msg) == 3 and msg[0] == 2 and isinstance(msg[1], str) and self.on_notification:
            self.on_notification(msg[1], msg[2] if isinstance(msg[2], list) else [])

    def shutdown(self, why: str) -> None:
        with self.lock:
            self.alive = False
            pending, self.pending = self.pending, {}
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        for fut, method in pending.values():
            if not fut.done():
                fut.set_exception(TesseraError(CLOSED, f"{method}: {why}", method))
        if threading.current_thread() is self.reader:
            self.sock.close()
        self.closed.set()


class Client(Methods):
    def __init__(self, socket_path: str | None = None, *, timeout: float | None = 2.0,
                 connect_timeout: float = 2.0,
                 on_notification: Callable[[str, list], None] | None = None):
        socket_path = default_socket() if socket_path is None else socket_path
        if not isinstance(socket_path, str) or not socket_path:
            raise TypeError("socket_path must be a non-empty string")
        self.socket_path = socket_path
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.on_notification = on_notification
        self._lock = threading.Lock()  # the connection and msgid; held while writing
        self._conn: _Conn | None = None
        self._next_id = 0
        self._closed = False

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> "Client":
        """Connects now (calls connect on demand anyway)."""
        with self._lock:
            self._ensure()
        return self

    @property
    def connected(self) -> bool:
        c = self._conn
        return c is not None and c.alive

    def _ensure(self) -> _Conn:
        if self._closed:
            raise TesseraError(CLOSED, "client closed")
        if self._conn is not None and self._conn.alive:
            return self._conn
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.connect_timeout)
        try:
            sock.connect(self.socket_path)
        except OSError as e:
            sock.close()
            raise TesseraError(CONNECT, f"connect {self.socket_path}: {e.strerror or e}") from None
        sock.settimeout(None)
        self._conn = _Conn(sock, self.on_notification)
        return self._conn

    def call(self, method: str, params: dict | None = None, *, timeout: float | None = None) -> Any:
        """Calls method; returns the result map or raises TesseraError (.code: the wire code)."""
        params = check_call(method, params)
        with self._lock:
            for attempt in (1, 2):
                fut: Future = Future()
                conn = self._ensure()
                msgid = self._next_id
                self._next_id = 0 if msgid == MAX_MSGID else msgid + 1
                data = msgpack.packb([0, msgid, method, [params]], use_bin_type=True)
                with conn.lock:
                    conn.pending[msgid] = (fut, method)
                try:
                    conn.sock.sendall(data)
                    break
                except OSError:
                    # An idle connection the daemon had closed: nothing was delivered, so one
                    # retry on a new connection is safe.
                    conn.shutdown("connection to tesserad lost")
                    if attempt == 2:
                        break
                    fut.exception()  # settled by shutdown
        wait = self.timeout if timeout is None else timeout
        try:
            return fut.result(timeout=wait)
        except FutureTimeout:
            with conn.lock:
                conn.pending.pop(msgid, None)
            raise TesseraError(TIMEOUT, f"{method}: no reply within {wait} s", method) from None

    def disconnect(self) -> None:
        """Drops the connection now (the next call reconnects)."""
        conn = self._conn
        if conn is not None:
            conn.shutdown("disconnected")

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Blocks until the current connection is gone; True if it is."""
        conn = self._conn
        return True if conn is None else conn.closed.wait(timeout)

    def close(self) -> None:
        self._closed = True
        self.disconnect()
