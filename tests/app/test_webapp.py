"""minimal.app.webapp: an in-process server on a free port with small callbacks. A PNG in gives
a PNG of the same size out with the callback's exact pixels; every bad request gets its status and a
message; no path reaches a file outside the page's folder; concurrent requests never enter the
callback together and give the same bytes as one at a time; Ctrl-C stops the server cleanly."""

import http.client
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minimal.app import webapp
from minimal.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "minimal" / "app" / "static" / "colorize"


def invert(line, hint):
    """A callback with a known answer: the negative, tinted by the hint's mean colour."""
    tint = 1.0 if hint is None else hint.mean(axis=(0, 1))
    return (1 - line) * tint


@pytest.fixture
def start(web_server):
    """start(callback, **options) -> port of a running server (conftest's web_server)."""
    def start(colour=invert, examples=(), **options):
        return web_server(colour, examples, **options)

    return start


def png(image, mode=None) -> bytes:
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def form(**fields) -> tuple[bytes, str]:
    """A multipart/form-data body with one file per field."""
    boundary = "----minimal-test-7f3a"
    body = b""
    for name, content in fields.items():
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                 f"filename=\"{name}.png\"\r\nContent-Type: image/png\r\n\r\n").encode()
        body += content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def request(port, method, path, body=None, headers=None):
    """(status, headers, body) of one request."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def post(port, **fields):
    body, content_type = form(**fields)
    return request(port, "POST", "/api/colour", body, {"Content-Type": content_type})


def raw(port, data: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (no client-side normalising of the path); (status, whole reply)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1]), reply


def decode(body: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(body)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"), np.float32) / 255


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with a few bytes of data: the shape of
    a decompression bomb, without building one."""
    def chunk(kind, payload):
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload)))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


# ===== the colouring ========================================================================

def test_png_in_gives_a_png_of_the_same_size_with_the_callbacks_pixels(start):
    port = start()
    rng = np.random.default_rng(0)
    line = rng.uniform(0, 1, (23, 37, 3))
    status, headers, body = post(port, line=png(line))
    assert status == 200 and headers["Content-Type"] == "image/png"
    expected = np.round((1 - np.round(line * 255) / 255) * 255) / 255
    np.testing.assert_allclose(decode(body), expected, atol=1e-6)

    # grey + alpha: transparency is white paper (-> black in the negative); the hint arrives at
    # its own size (red here) and tints the answer
    alpha = np.zeros((23, 37, 2))
    alpha[5:10, 5:10] = [0.0, 1.0]  # one black square, transparent around it
    hint = np.zeros((4, 6, 3))
    hint[..., 0] = 1
    status, _, body = post(port, line=png(alpha, "LA"), hint=png(hint))
    result = decode(body)
    assert status == 200 and result.shape == (23, 37, 3)
    assert np.all(result[5:10, 5:10] == [1, 0, 0])  # the black square, inverted, tinted red
    outside = np.ones((23, 37), bool)
    outside[5:10, 5:10] = False
    assert np.all(result[outside] == 0)


def test_concurrent_requests_never_share_the_callback_and_give_the_same_bytes(start):
    inside, most = [0], [0]
    guard = threading.Lock()

    def slow(line, hint):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.15)  # long enough for the other request to arrive meanwhile
        with guard:
            inside[0] -= 1
        return invert(line, hint)

    port = start(slow)
    lines = [np.random.default_rng(seed).uniform(0, 1, (31, 17, 3)) for seed in (1, 2)]
    alone = [post(port, line=png(line))[2] for line in lines]
    assert most[0] == 1
    answers = [None, None]

    def ask(index):
        answers[index] = post(port, line=png(lines[index]))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [answer[0] for answer in answers] == [200, 200]
    assert [answer[2] for answer in answers] == alone
    assert most[0] == 1  # the lock kept the two requests out of the callback at the same time


def test_a_users_error_in_the_callback_is_a_400_and_a_bug_a_500_and_serving_goes_on(start):
    def picky(line, hint):
        if line.shape[0] == 3:
            raise DataError("three rows is too few to colour")
        if line.shape[0] == 4:
            raise RuntimeError("a bug")
        if line.shape[0] == 5:
            return line[:2]  # the wrong size
        return line

    port = start(picky)
    status, _, body = post(port, line=png(np.ones((3, 8, 3))))
    assert status == 400 and b"three rows" in body
    assert post(port, line=png(np.ones((4, 8, 3))))[0] == 500
    assert post(port, line=png(np.ones((5, 8, 3))))[0] == 500
    assert post(port, line=png(np.ones((6, 8, 3))))[0] == 200


# ===== bad requests =========================================================================

def bad_uploads():
    grey = png(np.ones((8, 8, 3)))
    noise = png(np.random.default_rng(0).uniform(0, 1, (64, 64, 3)))
    truncated = noise[:len(noise) // 2]  # the header is whole, the pixels are cut off
    body_no_line, type_no_line = form(picture=grey)
    body_empty, type_empty = form(line=b"")
    return {
        "not an image": (form(line=b"hello, I am a text file\n" * 3), 400, "not a picture"),
        "zero bytes in the line field": ((body_empty, type_empty), 400, "empty (0 bytes)"),
        "a hint that is not an image": (form(line=grey, hint=b"GIF89a nonsense"), 400,
                                        "hint: not a picture"),
        "a decompression bomb (header only)": (form(line=png_header_only(40_000, 40_000)), 400,
                                               "decompression bomb"),
        "over the pixel limit": (form(line=png_header_only(3000, 3000)), 400,
                                 "claims 3000 x 3000 = 9,000,000 pixels"),
        "a truncated PNG": (form(line=truncated), 400, "cannot be decoded"),
        "no line field": ((body_no_line, type_no_line), 400, "needs a 'line' field"),
        "not a form": ((grey, "image/png"), 415, "multipart/form-data"),
    }


@pytest.mark.parametrize("case", list(bad_uploads()))
def test_each_bad_upload_gets_its_status_and_a_message(start, case):
    (body, content_type), status, message = bad_uploads()[case]
    calls = []
    port = start(lambda line, hint: calls.append(1) or line, max_pixels=1_000_000)
    got, headers, reply = request(port, "POST", "/api/colour", body,
                                  {"Content-Type": content_type})
    assert got == status and headers["Content-Type"].startswith("text/plain")
    assert message in reply.decode(), reply
    assert calls == []  # nothing bad reaches the model


def test_a_real_small_bomb_is_refused_before_it_is_decoded(start):
    # 4000 x 4000 black pixels compress to about 16 KB: 16 million pixels from a small file
    buffer = io.BytesIO()
    Image.new("L", (4000, 4000)).save(buffer, format="PNG")
    bomb = buffer.getvalue()
    assert len(bomb) < 100_000
    port = start(max_pixels=1_000_000)
    status, _, reply = post(port, line=bomb)
    assert status == 400 and b"4000 x 4000" in reply


def test_size_limits_empty_bodies_and_missing_lengths(start):
    port = start(max_bytes=100_000)
    body, content_type = form(line=os.urandom(150_000))
    status, _, reply = request(port, "POST", "/api/colour", body,
                                     {"Content-Type": content_type})
    assert status == 413 and b"over the limit of 100,000" in reply
    status, _, reply = request(port, "POST", "/api/colour", b"",
                               {"Content-Type": "multipart/form-data; boundary=x"})
    assert status == 400 and b"empty (0 bytes)" in reply
    status, reply = raw(port, b"POST /api/colour HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Type: multipart/form-data; boundary=x\r\n\r\n")
    assert status == 411 and b"Content-Length" in reply
    status, reply = raw(port, b"POST /api/colour HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n"
                              b"\r\n")
    assert status == 400 and b"not a number" in reply


@pytest.mark.parametrize("path", [
    "/../webapp.py", "/../../minimal/app/webapp.py", "/%2e%2e/webapp.py", "/..%2fwebapp.py",
    "//etc/passwd", "/static/colorize/../../webapp.py", "/app.js/../../../webapp.py",
    "/./index.html", "/index.html/", "/api/examples/7.png", "/api/examples/-1.png",
    "/api/examples/0.png/../../webapp.py", "/nothing-here", "/.git/config"])
def test_unknown_paths_are_404_and_no_file_outside_the_page_is_served(start, path):
    port = start(examples=[("one", np.ones((4, 4, 3)))])
    status, reply = raw(port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status == 404 and b"the page is at /" in reply
    assert b"import" not in reply and b"root:" not in reply


@pytest.mark.parametrize("method, path, allowed", [
    ("GET", "/api/colour", "POST"), ("PUT", "/api/colour", "POST"),
    ("POST", "/", "GET, HEAD"), ("DELETE", "/api/info", "GET, HEAD"),
    ("PATCH", "/app.js", "GET, HEAD"), ("OPTIONS", "/api/examples/0.png", "GET, HEAD")])
def test_wrong_methods_are_405_with_the_allowed_ones(start, method, path, allowed):
    port = start(examples=[("one", np.ones((4, 4, 3)))])
    status, headers, reply = request(port, method, path, b"x" if method != "GET" else None)
    assert status == 405 and headers["Allow"] == allowed
    assert f"{method} is not allowed on {path}".encode() in reply


# ===== the page and the examples ============================================================

def test_the_page_its_files_and_the_examples(start):
    example = np.random.default_rng(3).uniform(0, 1, (20, 30))  # grey line art, as a demo has
    port = start(examples=[("a cartoon", example)], title="T", about="A")
    status, headers, body = request(port, "GET", "/")
    assert status == 200 and body == (PAGE / "index.html").read_bytes()
    assert headers["Content-Type"].startswith("text/html")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        status, headers, body = request(port, "GET", f"/{name}")
        assert status == 200 and body == (PAGE / name).read_bytes()
        assert headers["Content-Type"].startswith(kind)
    status, headers, body = request(port, "HEAD", "/app.js")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 1000
    status, headers, body = request(port, "HEAD", "/api/info")
    assert status == 200 and body == b"" and headers["Content-Type"] == "application/json"
    assert request(port, "HEAD", "/nothing")[::2] == (404, b"")
    info = json.loads(request(port, "GET", "/api/info")[2])
    assert info["title"] == "T" and info["about"] == "A"
    assert info["examples"] == [{"name": "a cartoon", "url": "api/examples/0.png", "width": 30,
                                 "height": 20}]
    status, _, body = request(port, "GET", "/api/examples/0.png")
    np.testing.assert_allclose(decode(body)[..., 0], np.round(example * 255) / 255, atol=1e-6)


def test_the_page_loads_nothing_from_elsewhere():
    # works offline: no URL with a scheme, no protocol-relative URL, no import from a CDN
    for path in PAGE.iterdir():
        text = path.read_text()
        for pattern in ("http:", "https:", 'src="//', "href=\"//", "@import", "url("):
            assert pattern not in text, (path.name, pattern)


# ===== starting and stopping ================================================================

def test_a_port_in_use_is_a_clear_error(start):
    port = start()
    with pytest.raises(ConfigError, match=f"port {port}.*--port"):
        webapp.make_server(invert, host="127.0.0.1", port=port)


# SIGINT back to Python's handler first: a shell's background job (a CI runner, say) passes it
# on ignored, and Python keeps ignoring it, which would make the Ctrl-C below a no-op
SERVE = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
         "from minimal.app import webapp; "
         "webapp.serve(lambda line, hint: line, host=sys.argv[1], port=0, quiet=True)")


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("0.0.0.0", True)])
def test_ctrl_c_stops_the_server_cleanly_and_other_hosts_are_warned_about(host, warned):
    process = subprocess.Popen([sys.executable, "-c", SERVE, host], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()  # printed once the socket listens
        assert line.startswith("serving on http://127.0.0.1:"), line
        port = int(line.split(":")[2].split("/")[0])
        assert request(port, "GET", "/")[0] == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and "stopped" in out
    assert "Traceback" not in err
    assert ("warning: listening on 0.0.0.0" in err) == warned


def test_a_client_that_hangs_up_before_the_answer_is_one_line_in_the_log(capfd):
    """The browser tab closed while the picture was being coloured: the server says so in one
    line of its log and serves on (no BrokenPipeError traceback)."""
    entered, released = threading.Event(), threading.Event()

    def slow(line, hint):
        entered.set()
        released.wait(10)
        return invert(line, hint)

    server = webapp.make_server(slow, host="127.0.0.1", port=0, quiet=False)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    port = server.server_address[1]
    try:
        body, content_type = form(line=png(np.ones((8, 8))))
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        client.sendall(f"POST /api/colour HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}"
                       f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        assert entered.wait(10)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # a reset, as a closed tab sends
        released.set()
        err = ""
        deadline = time.monotonic() + 10
        while "went away" not in err and time.monotonic() < deadline:
            time.sleep(0.05)
            err += capfd.readouterr().err
        assert request(port, "GET", "/api/info")[0] == 200  # and it serves on
    finally:
        server.shutdown()
        server.server_close()
    err += capfd.readouterr().err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if "went away" in line] == [
        next(line for line in err.splitlines() if "went away" in line)]
    assert "the client went away before the answer to POST /api/colour was sent" in err
