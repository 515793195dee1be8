"""bench/verify.py: local verification of a cached token, in microseconds per verify (printed,
never asserted). Starts its own tesserad (tests/daemon.py) unless TESSERA_SOCKET is set.
    /usr/bin/python3 client/python/bench/verify.py [N]"""
import os
import sys
import time
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path[:0] = [str(here.parent), str(here.parent / "tests")]

import tessera  # noqa: E402
from daemon import Daemon  # noqa: E402

n = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
d = None
socket_path = os.environ.get("TESSERA_SOCKET")
if not socket_path:
    d = Daemon()
    d.launch()
    socket_path = d.socket
try:
    with tessera.connect(socket_path) as c, tessera.Verifier(socket_path) as v:
        token = c.token_issue("bench")["token"]
        for _ in range(10000):
            v.verify(token)
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter_ns()
            for _ in range(n):
                v.verify(token)
            best = min(best, (time.perf_counter_ns() - t0) / 1000 / n)
        print(f"python: local verify of a cached token: {best:.3f} us (best of 5 x {n}; goal < 20 us)")
finally:
    if d:
        d.cleanup()
