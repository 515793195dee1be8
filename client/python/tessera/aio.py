"""aio.py: tessera.aio.Client, the asyncio client: one connection, one reader task matching
replies by msgid (pipelined), per-call timeouts, reconnect on the next call after a drop
(calls in flight fail with "closed"), the same helpers as tessera.Client (awaitables).
Use it from one event loop."""
from __future__ import annotations

import asyncio
from typing import Any, Callable

import msgpack

from .client import MAX_MSGID, check_call, default_socket, reply_error
from .errors import CLOSED, CONNECT, TIMEOUT, TesseraError
from .methods import Methods


class Client(Methods):
    def __init__(self, socket_path: str | None = None, *, timeout: float | None = 2.0,
                 connect_timeout: float = 2.0,
                 on_notification: Callable[[str, list], None] | None = None):
        self.socket_path = default_socket() if socket_path is None else socket_path
        if not isinstance(self.socket_path, str) or not self.socket_path:
            raise TypeError("socket_path must be a non-empty string")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.on_notification = on_notification
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        self._pending: dict[int, tuple[asyncio.Future, str]] = {}
        self._connecting: asyncio.Lock | None = None
        self._next_id = 0
        self._closed = False

    async def __aenter__(self) -> "Client":
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def connect(self) -> "Client":
        await self._ensure()
        return self

    async def _ensure(self) -> asyncio.StreamWriter:
        if self._closed:
            raise TesseraError(CLOSED, "client closed")
        if self._writer is not None:
            return self._writer
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._writer is not None:
                return self._writer
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_unix_connection(self.socket_path), self.connect_timeout)
            except (OSError, asyncio.TimeoutError) as e:
                raise TesseraError(CONNECT, f"connect {self.socket_path}: {getattr(e, 'strerror', None) or 'timed out'}") from None
            self._writer = writer
            self._reader_task = asyncio.get_running_loop().create_task(self._read(reader, writer))
            return writer

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                unpacker.feed(data)
                for msg in unpacker:
                    self._dispatch(msg)
        except Exception:
            pass
        self._lost(writer, "connection to tesserad lost")

    def _dispatch(self, msg: Any) -> None:
        if not isinstance(msg, list):
            return
        if len(msg) == 4 and msg[0] == 1:
            entry = self._pending.pop(msg[1], None)
            if entry is None or entry[0].done():
                return
            fut, method = entry
            if msg[2] is None:
                fut.set_result(msg[3] if msg[3] is not None else {})
            else:
                fut.set_exception(reply_error(method, msg[2]))
        elif len(msg) == 3 and msg[0] == 2 and isinstance(msg[1], str) and self.on_notification:
            self.on_notification(msg[1], msg[2] if isinstance(msg[2], list) else [])

    def _lost(self, writer: asyncio.StreamWriter, why: str) -> None:
        if self._writer is writer:
            self._writer = None
        writer.close()
        pending, self._pending = self._pending, {}
        for fut, method in pending.values():
            if not fut.done():
                fut.set_exception(TesseraError(CLOSED, f"{method}: {why}", method))

    async def call(self, method: str, params: dict | None = None, *, timeout: float | None = None) -> Any:
        params = check_call(method, params)
        writer = await self._ensure()
        msgid = self._next_id
        self._next_id = 0 if msgid == MAX_MSGID else msgid + 1
        fut = asyncio.get_running_loop().create_future()
        self._pending[msgid] = (fut, method)
        writer.write(msgpack.packb([0, msgid, method, [params]], use_bin_type=True))
        wait = self.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(fut, wait)
        except asyncio.TimeoutError:
            self._pending.pop(msgid, None)
            raise TesseraError(TIMEOUT, f"{method}: no reply within {wait} s", method) from None

    async def close(self) -> None:
        self._closed = True
        if self._writer is not None:
            self._lost(self._writer, "client closed")
        if self._reader_task is not None:
            self._reader_task.cancel()
            try:
                await self._reader_task
            except BaseException:
                pass
