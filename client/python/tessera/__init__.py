"""tessera: the Python client of tesserad (proto/PROTOCOL.md).

    tessera.Client       sync, thread-safe, pipelined (client.py); tessera.aio.Client for asyncio
    tessera.Verifier     the local access-token verifier with the revocation feed (verifier.py)
    tessera.TesseraError every error, with .code (errors.py)
    tessera.wsgi / tessera.asgi  middleware for Flask/Django and Starlette/FastAPI"""
from .client import Client, default_socket
from .errors import CLIENT_CODES, TesseraError
from .methods import METHODS
from .verifier import Verifier

__all__ = ["Client", "Verifier", "TesseraError", "CLIENT_CODES", "METHODS", "default_socket", "connect"]
__version__ = "0.1.0"


def connect(socket_path: str | None = None, **options) -> Client:
    """A connected tessera.Client (raises TesseraError "connect" when the socket is not there)."""
    return Client(socket_path, **options).connect()
