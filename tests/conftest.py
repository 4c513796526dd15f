import os
import signal
import sys
import threading
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
# Tests are not benchmarks: one BLAS thread per process keeps the suite's timing steady when
# tests start worker processes of their own (rollouts) and results the same from run to run.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run_all.py at the top level


@pytest.fixture
def bomb_png():
    """bomb_png(path): write a tiny PNG whose header claims 60000 x 60000 pixels (a
    decompression bomb: a few bytes that would take gigabytes to decode)."""
    import zlib

    from PIL import Image

    def write(path):
        Image.new("L", (1, 1)).save(path)
        bomb = bytearray(path.read_bytes())
        bomb[16:24] = (60000).to_bytes(4, "big") * 2  # the IHDR's width and height
        bomb[29:33] = zlib.crc32(bytes(bomb[12:29])).to_bytes(4, "big")
        path.write_bytes(bytes(bomb))
        return path

    return write


@pytest.fixture
def web_server():
    """web_server(colour, examples=(), **options) -> port of a minimal.app.webapp server running in
    this process on a free loopback port; every one started is shut down after the test."""
    from minimal.app import webapp
    servers = []

    def start(colour, examples=(), **options):
        server = webapp.make_server(colour, examples, host="127.0.0.1", port=0, quiet=True,
                                    **options)
        # a short poll keeps shutdown() (at teardown) quick
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def interruptible():
    """preexec_fn for a child process that a test stops with SIGINT (Ctrl-C). A test run
    started in the background (nohup, `&` in a script) ignores SIGINT, children inherit the
    ignoring, and Python then never raises KeyboardInterrupt; this gives the child the default
    back, so that Python installs its handler as in a terminal."""
    return _sigint_default
