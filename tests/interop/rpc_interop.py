#!/usr/bin/python3
"""tests/interop/rpc_interop.py: tesserad speaks standard MessagePack-RPC.

Every message here is built by hand with msgpack-python's packb and read back with its
Unpacker: no code of ours on the client side, so what passes here works with any msgpack-rpc
library (pynvim, msgpack-rpc-python, Neovim's Lua client, ...). The checks follow
PROTOCOL.md ("Transport and framing", "Limits") and SECURITY.md ("Wire and transport").

Usage: /usr/bin/python3 tests/interop/rpc_interop.py path/to/tesserad
Needs Debian's python3-msgpack (no pip). Output: one line per check, `ok - name` or
`not ok - name: why`, then `# N passed, M failed` and the TAP plan `1..N`; exit status 1 when any check failed.
The temporary directory (socket, data, keys, tesserad.log) is removed when every check
passed and kept (its path printed) otherwise, or always with TT_KEEP=1 in the environment.
"""

import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import msgpack

READY_TIMEOUT = 30.0  # seconds for the daemon to signal READY=1
REPLY_TIMEOUT = 10.0  # seconds for any one reply
# A connection closed "at once" must be closed well before the 10 s message timeout could have
# done it, so that a daemon which merely waits for the rest of a bogus message fails the check.
CLOSE_TIMEOUT = 5.0
STOP_TIMEOUT = 30.0  # seconds for a graceful SIGTERM exit


class CheckFailed(Exception):
    pass


def expect(cond, why):
    if not cond:
        raise CheckFailed(why)


# ---------------------------------------------------------------------------------------------
# The daemon


class Daemon:
    def __init__(self, binary):
        self.binary = os.path.abspath(binary)
        self.dir = tempfile.mkdtemp(prefix="tessera-interop.")
        self.socket = os.path.join(self.dir, "run", "tesserad.sock")
        self.data = os.path.join(self.dir, "data")
        self.keys = os.path.join(self.dir, "keys")
        self.log = os.path.join(self.dir, "tesserad.log")
        self.notify_path = os.path.join(self.dir, "notify.sock")
        self.proc = None

    def start(self):
        """Starts tesserad and waits for its READY=1 datagram. Returns None or why it failed."""
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(self.notify_path)
        env = dict(os.environ)
        env["NOTIFY_SOCKET"] = self.notify_path
        argv = [self.binary, "--socket", self.socket, "--data", self.data, "--keys", self.keys,
                "--log-level", "debug"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, close_fds=True)
        try:
            return self._wait_ready(notify)
        finally:
            notify.close()
            try:
                os.unlink(self.notify_path)
            except OSError:
                pass

    def _wait_ready(self, notify):
        # Wake on a datagram or on the daemon's death: a pidfd where the kernel has one,
        # else a short select timeout to look at the process between datagrams.
        pidfd = None
        if hasattr(os, "pidfd_open"):
            try:
                pidfd = os.pidfd_open(self.proc.pid)
            except OSError:
                pidfd = None
        deadline = time.monotonic() + READY_TIMEOUT
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return "no READY=1 on NOTIFY_SOCKET within %d s" % READY_TIMEOUT
                fds = [notify] + ([pidfd] if pidfd is not None else [])
                ready, _, _ = select.select(fds, [], [], left if pidfd is not None
                                            else min(left, 0.25))
                if notify in ready:
                    data = notify.recv(4096)
                    if b"READY=1" in data.split(b"\n"):
                        return None
                    continue
                if self.proc.poll() is not None:
                    return "tesserad exited with status %d before READY=1" % self.proc.returncode
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM and wait. Returns the exit status (negative: killed by that signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines=30):
        try:
            with open(self.log, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return []
        return text.splitlines()[-lines:]

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# A bare msgpack-rpc connection


class Closed(Exception):
    pass


class Conn:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(REPLY_TIMEOUT)
        self.sock.connect(path)
        self.unpacker = msgpack.Unpacker(raw=False)

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def request(self, msgid, method, params):
        self.send(msgpack.packb([0, msgid, method, params]))

    def recv(self, timeout=REPLY_TIMEOUT):
        """The next whole message. Raises Closed on EOF, CheckFailed on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return next(self.unpacker)
            except StopIteration:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                raise CheckFailed("no reply within %.0f s" % timeout)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise CheckFailed("no reply within %.0f s" % timeout)
            except (ConnectionResetError, BrokenPipeError):
                raise Closed()
            if not chunk:
                raise Closed()
            self.unpacker.feed(chunk)

    def call(self, msgid, method, params):
        self.request(msgid, method, params)
        reply = self.recv()
        check_response_shape(reply)
        expect(reply[1] == msgid, "reply to msgid %d carries msgid %r" % (msgid, reply[1]))
        return reply

    def expect_closed(self, timeout=CLOSE_TIMEOUT):
        """Raises CheckFailed unless the server closes the connection within timeout, without
        sending anything first."""
        try:
            msg = self.recv(timeout)
        except Closed:
            return
        except CheckFailed:
            raise CheckFailed("connection still open after %.0f s" % timeout)
        raise CheckFailed("got %r instead of the connection being closed" % (msg,))


def check_response_shape(reply):
    """[1, msgid, error, result]: error nil and any result, or [code, message] and nil."""
    expect(isinstance(reply, list), "reply is not an array: %r" % (reply,))
    expect(len(reply) == 4 and reply[0] == 1, "not a response [1, msgid, error, result]: %r"
           % (reply,))
    expect(isinstance(reply[1], int) and not isinstance(reply[1], bool)
           and 0 <= reply[1] <= 0xFFFFFFFF, "msgid is not a uint32: %r" % (reply,))
    err = reply[2]
    if err is not None:
        expect(isinstance(err, list) and len(err) == 2 and isinstance(err[0], str)
               and isinstance(err[1], str), "error is not [code, message] (both str): %r" % (err,))
        expect(reply[3] is None, "result is not nil on error: %r" % (reply,))


def check_ping_result(reply):
    expect(reply[2] is None, "sys.ping failed: %r" % (reply[2],))
    res = reply[3]
    expect(isinstance(res, dict), "sys.ping result is not a map: %r" % (res,))
    expect(isinstance(res.get("version"), str) and res["version"],
           "sys.ping version is not a non-empty str: %r" % (res,))
    now = res.get("now")
    expect(isinstance(now, int) and not isinstance(now, bool),
           "sys.ping now is not an int: %r" % (res,))
    expect(abs(now - time.time()) < 300, "sys.ping now %r is not the current time" % (now,))


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


# ---------------------------------------------------------------------------------------------
# The checks


def check_ping_empty_params(d):
    c = Conn(d.socket)
    try:
        reply = c.call(1, "sys.ping", [])
        expect(reply[:3] == [1, 1, None], "expected [1, 1, None, {...}], got %r" % (reply,))
        check_ping_result(reply)
    finally:
        c.close()


def check_ping_map_params(d):
    c = Conn(d.socket)
    try:
        reply = c.call(1, "sys.ping", [{}])
        expect(reply[:3] == [1, 1, None], "expected [1, 1, None, {...}], got %r" % (reply,))
        check_ping_result(reply)
    finally:
        c.close()


def check_ping_exact_bytes(d):
    # The literal bytes a generic client writes, and one stream of two requests in one write.
    c = Conn(d.socket)
    try:
        c.send(bytes.fromhex("9400 01 a8 7379732e70696e67 90".replace(" ", ""))
               + bytes.fromhex("9400 02 a8 7379732e70696e67 91 80".replace(" ", "")))
        got = {}
        for _ in range(2):
            reply = c.recv()
            check_response_shape(reply)
            got[reply[1]] = reply
        expect(sorted(got) == [1, 2], "replies for msgids %r, expected 1 and 2" % (sorted(got),))
        for r in got.values():
            check_ping_result(r)
    finally:
        c.close()


def check_stats(d):
    c = Conn(d.socket)
    try:
        reply = c.call(5, "sys.stats", [{}])
        expect(reply[2] is None, "sys.stats failed: %r" % (reply[2],))
        res = reply[3]
        expect(isinstance(res, dict), "sys.stats result is not a map: %r" % (res,))
        for key in ("uptime", "connections", "requests"):
            expect(key in res, "sys.stats has no %r: %r" % (key, sorted(res)))
            expect(is_int(res[key]) and res[key] >= 0, "sys.stats %s = %r" % (key, res[key]))
        expect(res["connections"] >= 1, "sys.stats connections = %r while this one is open"
               % (res["connections"],))
        expect(res["requests"] >= 1, "sys.stats requests = %r after requests were answered"
               % (res["requests"],))
        # Also with [] params, and the request counter moves.
        reply2 = c.call(6, "sys.stats", [])
        expect(reply2[2] is None, "sys.stats with [] failed: %r" % (reply2[2],))
        expect(reply2[3]["requests"] > res["requests"],
               "requests did not grow: %r then %r" % (res["requests"], reply2[3]["requests"]))
    finally:
        c.close()


def check_pipelined(d):
    # Many requests in one write, msgids in shuffled order; replies matched by msgid only.
    rnd = random.Random(20240601)
    ids = rnd.sample(range(1, 1 << 31), 200) + [0, 0xFFFFFFFF]
    rnd.shuffle(ids)
    kinds = {}
    stream = bytearray()
    for i, msgid in enumerate(ids):
        kind = ("ping", "stats", "unknown", "bogus")[i % 4]
        kinds[msgid] = kind
        if kind == "ping":
            stream += msgpack.packb([0, msgid, "sys.ping", [{}] if i % 8 else []])
        elif kind == "stats":
            stream += msgpack.packb([0, msgid, "sys.stats", []])
        elif kind == "unknown":
            stream += msgpack.packb([0, msgid, "no.such.method", []])
        else:
            stream += msgpack.packb([0, msgid, "sys.ping", [{"bogus": i}]])
    c = Conn(d.socket)
    try:
        c.send(bytes(stream))
        seen = {}
        for _ in ids:
            reply = c.recv()
            check_response_shape(reply)
            msgid = reply[1]
            expect(msgid in kinds, "reply for msgid %r that was never sent" % (msgid,))
            expect(msgid not in seen, "two replies for msgid %r" % (msgid,))
            seen[msgid] = reply
        for msgid, kind in kinds.items():
            r = seen[msgid]
            if kind == "ping":
                check_ping_result(r)
            elif kind == "stats":
                expect(r[2] is None and "requests" in r[3], "msgid %d: %r" % (msgid, r))
            elif kind == "unknown":
                expect(r[2] is not None and r[2][0] == "unknown_method", "msgid %d: %r"
                       % (msgid, r))
            else:
                expect(r[2] is not None and r[2][0] == "bad_request", "msgid %d: %r" % (msgid, r))
        # Still usable afterwards.
        check_ping_result(c.call(7, "sys.ping", []))
    finally:
        c.close()


def check_unknown_method(d):
    c = Conn(d.socket)
    try:
        reply = c.call(11, "no.such", [])
        expect(reply[2] is not None, "unknown method succeeded: %r" % (reply,))
        expect(reply[2][0] == "unknown_method", "error code %r, expected unknown_method"
               % (reply[2][0],))
        expect(reply[2][1] != "", "empty error message")
        expect(reply[3] is None, "result not nil: %r" % (reply,))
        # The connection stays usable.
        check_ping_result(c.call(12, "sys.ping", []))
    finally:
        c.close()


def check_bogus_param(d):
    c = Conn(d.socket)
    try:
        reply = c.call(13, "sys.ping", [{"bogus": 1}])
        expect(reply[2] is not None, "sys.ping {bogus: 1} succeeded: %r" % (reply,))
        expect(reply[2][0] == "bad_request", "error code %r, expected bad_request"
               % (reply[2][0],))
        expect("bogus" in reply[2][1], "message %r does not name the key" % (reply[2][1],))
        expect(reply[3] is None, "result not nil: %r" % (reply,))
        check_ping_result(c.call(14, "sys.ping", []))
    finally:
        c.close()


def check_client_notification_ignored(d):
    # pynvim opens with a notification (nvim_set_client_info); it gets no reply and the
    # requests after it work.
    c = Conn(d.socket)
    try:
        c.send(msgpack.packb([2, "x", []]))
        c.send(msgpack.packb([2, "nvim_set_client_info",
                              ["python3-client", {"major": 0}, "remote", {}, {}]]))
        reply = c.call(21, "sys.ping", [])
        expect(reply[1] == 21, "first message back is %r, not the reply to 21" % (reply,))
        check_ping_result(reply)
        # Notification and request glued in one write.
        c.send(msgpack.packb([2, "x", []]) + msgpack.packb([0, 22, "sys.ping", [{}]]))
        reply = c.recv()
        check_response_shape(reply)
        expect(reply[1] == 22, "got %r, expected the reply to 22" % (reply,))
    finally:
        c.close()


def check_msgid_over_32_bits(d):
    c = Conn(d.socket)
    try:
        c.request(2 ** 32, "sys.ping", [])
        c.expect_closed()
    finally:
        c.close()


def check_ext_closes_others_live(d):
    a = Conn(d.socket)
    b = Conn(d.socket)
    try:
        check_ping_result(a.call(31, "sys.ping", []))
        check_ping_result(b.call(32, "sys.ping", []))
        b.send(msgpack.packb([0, 33, "sys.ping", [{"k": msgpack.ExtType(5, b"abcd")}]]))
        b.expect_closed()
        check_ping_result(a.call(34, "sys.ping", []))
        # And a new connection is served too.
        c = Conn(d.socket)
        try:
            check_ping_result(c.call(35, "sys.ping", []))
        finally:
            c.close()
    finally:
        a.close()
        b.close()


def check_hostile_length_header(d):
    # An array32 header announcing 4 billion items: closed before any more bytes are sent.
    a = Conn(d.socket)
    c = Conn(d.socket)
    try:
        check_ping_result(a.call(41, "sys.ping", []))
        c.send(b"\xdd\xff\xff\xff\xff")
        c.expect_closed()
        check_ping_result(a.call(42, "sys.ping", []))
    finally:
        a.close()
        c.close()


def check_daemon_still_serving(d):
    expect(d.alive(), "tesserad is no longer running")
    c = Conn(d.socket)
    try:
        check_ping_result(c.call(99, "sys.ping", []))
    finally:
        c.close()


CHECKS = [
    ("sys.ping with [] params", check_ping_empty_params),
    ("sys.ping with [{}] params", check_ping_map_params),
    ("literal request bytes, two in one write", check_ping_exact_bytes),
    ("sys.stats has uptime, connections, requests", check_stats),
    ("pipelined requests matched by msgid", check_pipelined),
    ("unknown method is unknown_method with nil result", check_unknown_method),
    ("unknown param key is bad_request naming the key", check_bogus_param),
    ("client notification is ignored", check_client_notification_ignored),
    ("msgid 2**32 closes the connection", check_msgid_over_32_bits),
    ("ext type closes that connection only", check_ext_closes_others_live),
    ("DD FF FF FF FF closes the connection at once", check_hostile_length_header),
    ("daemon still serving", check_daemon_still_serving),
]


class Report:
    """TAP lines for the checks: `ok - name` / `not ok - name: why`, then `# N passed, M failed`
    and the plan `1..N` (jwt_interop.py reports through this too)."""

    def __init__(self):
        self.passed = self.failed = 0

    def __call__(self, name, why):
        if why is None:
            self.passed += 1
            print("ok - %s" % name, flush=True)
        else:
            self.failed += 1
            print("not ok - %s: %s" % (name, why), flush=True)

    def run(self, checks, arg):
        """Runs each (name, fn(arg)) check; an exception fails that check only."""
        for name, fn in checks:
            try:
                fn(arg)
                self(name, None)
            except CheckFailed as e:
                self(name, str(e))
            except Closed:
                self(name, "connection closed unexpectedly")
            except Exception as e:  # a socket, unpack or PyJWT error: a failure, not a crash
                self(name, "%s: %s" % (type(e).__name__, e))

    def stop(self, d):
        """SIGTERM must end d with status 0."""
        try:
            status = d.stop()
            self("SIGTERM exits with status 0", None if status == 0 else "exit status %r" % (status,))
        except subprocess.TimeoutExpired:
            self("SIGTERM exits with status 0", "still running %d s after SIGTERM; killed"
                 % STOP_TIMEOUT)

    def finish(self, daemons):
        """Kills what is left, shows the logs of a failed run (kept with TT_KEEP too), prints the
        summary and the plan; returns the exit status."""
        for d in daemons:
            d.kill()
            if self.failed:
                print("# tesserad log: %s" % d.log)
                for line in d.log_tail():
                    print("#   %s" % line)
            if self.failed or os.environ.get("TT_KEEP"):
                print("# kept %s" % d.dir)
            else:
                d.cleanup()
        print("# %d passed, %d failed" % (self.passed, self.failed))
        print("1..%d" % (self.passed + self.failed))  # TAP's plan, last (meson test reads TAP)
        return 1 if self.failed else 0


def usage_error(argv):
    """None when argv names an executable tesserad; else the exit status after saying why."""
    if len(argv) < 2:
        print("usage: %s path/to/tesserad [path/to/tessera]" % argv[0], file=sys.stderr)
        return 2
    if not os.access(argv[1], os.X_OK):
        print("not ok - tesserad starts: %s is not an executable" % argv[1])
        print("# 0 passed, 1 failed")
        print("1..1")
        return 1
    return None


def main(argv):
    bad = usage_error(argv)
    if bad is not None:
        return bad
    d = Daemon(argv[1])
    report = Report()
    try:
        why = d.start()
        report("tesserad starts and sends READY=1", why)
        if why is None:
            report.run(CHECKS, d)
            report.stop(d)
    finally:
        status = report.finish([d])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
