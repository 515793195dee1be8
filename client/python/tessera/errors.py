"""errors.py: the one exception of the package. A daemon refusal carries the wire code
(proto/PROTOCOL.md "Errors"); trouble on this side of the socket carries one of the client
codes below. Messages never hold a sid or a token."""

CONNECT = "connect"    # could not connect to the socket
CLOSED = "closed"      # the connection dropped with the call in flight (or the client is closed)
TIMEOUT = "timeout"    # no reply within the call's timeout
PROTOCOL = "protocol"  # the daemon sent something that is not the documented shape
CLIENT_CODES = frozenset({CONNECT, CLOSED, TIMEOUT, PROTOCOL})


class TesseraError(Exception):
    """An error with .code: the wire code, or a client code (CLIENT_CODES)."""

    def __init__(self, code: str, message: str, method: str | None = None):
        super().__init__(message)
        self.code = code
        self.method = method

    @property
    def remote(self) -> bool:
        """True for codes the daemon answers."""
        return self.code not in CLIENT_CODES

    def __repr__(self) -> str:
        return f"TesseraError({self.code!r}, {str(self)!r})"
