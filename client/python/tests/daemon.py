"""daemon.py (tests): the real tesserad on a temporary socket and data dir, as the C tests
start it (tests/lib/daemon.c), ready when it sends READY=1 on $NOTIFY_SOCKET. The binary:
$TESSERAD, else the gcc build of ./tests/run (build/test/sidecar/tesserad)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TESSERAD = os.environ.get("TESSERAD") or str(ROOT / "build/test/sidecar/tesserad")
CASES = ROOT / "tests/cases/clients.json"


def wait_for(cond, timeout: float = 5.0, what: str = "condition", every: float = 0.002):
    """Returns cond()'s first truthy value; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


class Daemon:
    def __init__(self, flags: list[str] | None = None):
        self.dir = tempfile.mkdtemp(prefix="tessera-py-")
        self.socket = os.path.join(self.dir, "run/tesserad.sock")
        self.data = os.path.join(self.dir, "data")
        self.flags = flags or []
        self.proc: subprocess.Popen | None = None

    def launch(self) -> None:
        npath = os.path.join(self.dir, "notify.sock")
        n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        n.bind(npath)
        n.settimeout(0.2)
        try:
            with open(os.path.join(self.dir, "tesserad.log"), "ab") as log:
                self.proc = subprocess.Popen(
                    [TESSERAD, "--socket", self.socket, "--data", self.data, "--keys",
                     os.path.join(self.dir, "keys"), "--log-level", "debug", *self.flags],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                    env=dict(os.environ, NOTIFY_SOCKET=npath))
            deadline = time.monotonic() + 10
            while True:
                try:
                    if b"READY=1" in n.recv(256):
                        return
                except socket.timeout:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"tesserad did not become ready:\n{self.log()}")
        finally:
            n.close()
            os.unlink(npath)

    def swap_data(self) -> None:
        """The next launch uses a fresh data dir (same keys): the feed cannot resume there."""
        self.data = os.path.join(self.dir, f"data-{time.time_ns()}")

    def log(self) -> str:
        with open(os.path.join(self.dir, "tesserad.log"), errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
