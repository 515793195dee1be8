"""conftest.py: one real tesserad per test module (tests/daemon.py), a connected client."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import tessera  # noqa: E402
from daemon import Daemon  # noqa: E402


@pytest.fixture(scope="module")
def daemon():
    d = Daemon()
    d.launch()
    yield d
    d.cleanup()


@pytest.fixture(scope="module")
def client(daemon):
    c = tessera.connect(daemon.socket)
    yield c
    c.close()
