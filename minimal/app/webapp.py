"""A small local web server for a demo's interactive page (the standard library's http.server).

A demo hands in a callback that colours a picture, `colour(line, hint) -> picture` (arrays in
[0, 1]: line (H, W, 3), hint (h, w, 3) or None, result (H, W, 3)), and a few example pictures;
this module serves the page's static files from `minimal/app/static/<page>/` and answers

    GET  /                      the page (index.html; its CSS and JS beside it, no CDN)
    GET  /api/info              JSON: title, a line about the model, the examples, the limits
    GET  /api/examples/N.png    example N as a PNG
    POST /api/colour            a multipart form: `line` (an image file) and an optional `hint`
                                (an image file; transparency counts as white paper); the answer
                                is the coloured picture as a PNG of the line art's size

For example:
    curl -F line=@drawing.png -F hint=@hint.png http://127.0.0.1:8000/api/colour -o out.png

Everything else is a 4xx with a one-line message in plain text: 404 for a path the server does
not know (the static files are read into memory when the server starts and looked up by exact
name, so no request can reach another file), 405 for a known path with the wrong method, 411
without a Content-Length, 413 for an upload over the byte limit, 415 for a body that is not a
multipart form, 400 for a missing field, zero bytes, a file that is not an image, or a picture
with more pixels than the limit (a decompression bomb claims billions in a few bytes; the header
is read, and the picture refused, before anything is decoded).

Concurrency: each request runs in its own thread (ThreadingHTTPServer), but the callback runs
under a lock, one picture at a time: a model's forward pass switches it to evaluation mode and
back, and two threads interleaving that would colour with the wrong batch-norm statistics.
At most `max_busy` requests decode and encode at once, which bounds the memory.

The server listens on 127.0.0.1 unless asked otherwise; another address prints a warning, as
the page has no login and no encryption. Ctrl-C stops it cleanly. This module never imports a
demo: a demo reaches it through minimal/app/colorize.py (deepcolor's --serve).
"""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from minimal.errors import ConfigError, UserError

STATIC = Path(__file__).parent / "static"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_BYTES = 8 * 1024 * 1024  # one upload (line art + hint); a PNG of 2048 x 2048 fits easily
MAX_PIXELS = 2048 * 2048  # per picture; the page scales larger drawings down before sending
DRAIN_BYTES = 64 * 1024 * 1024  # an upload over the limit but under this is read and dropped
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")  # only these decoders ever see an upload
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".js": "text/javascript; charset=utf-8", ".png": "image/png",
                 ".svg": "image/svg+xml", ".ico": "image/x-icon"}
# the page loads only its own files, and pictures from blob: URLs it made itself
SECURITY_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:",
                    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

Colour = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a message for the person sending it."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# ===== pictures in and out =================================================================

def decode_image(body: bytes, what: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An uploaded file as float32 RGB (H, W, 3) in [0, 1] (transparency as white paper), or a
    RequestError(400) naming `what` and saying what was wrong."""
    from PIL import Image, UnidentifiedImageError

    from minimal import data
    if not body:
        raise RequestError(400, f"{what}: the file is empty (0 bytes); send a PNG or JPEG")
    try:
        with Image.open(io.BytesIO(body), formats=IMAGE_FORMATS) as image:  # the header only
            width, height = image.size
    except Image.DecompressionBombError:
        width = height = None  # more than twice Pillow's own limit: certainly over ours
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise RequestError(400, f"{what}: not a picture this server reads (send a PNG, JPEG, "
                                "GIF, BMP or WebP file)") from None
    if width is None or width * height > max_pixels:
        claimed = "billions of" if width is None else f"{width} x {height} = {width * height:,}"
        raise RequestError(400, f"{what}: the picture claims {claimed} pixels, more than the "
                                f"{max_pixels:,} this server decodes (a decompression bomb, or "
                                "simply too big); scale it down first")
    try:
        return data.read_image(io.BytesIO(body))
    except UserError as error:
        cause = error.__cause__ or "damaged data"
        raise RequestError(400, f"{what}: a {width} x {height} picture that cannot be decoded "
                                f"({cause})") from None


def encode_png(image: np.ndarray) -> bytes:
    """A float picture in [0, 1], (H, W) or (H, W, 3), as PNG bytes."""
    from PIL import Image

    pixels = np.round(np.clip(np.asarray(image, np.float32), 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def parse_form(content_type: str, body: bytes) -> dict[str, bytes]:
    """The file fields of a multipart/form-data body: field name -> the file's bytes."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise RequestError(415, f"expected a multipart/form-data upload (a form with a 'line' "
                                f"file), got Content-Type {content_type or 'none'!r}")
    header = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=policy.HTTP).parsebytes(header + body)
    if not message.is_multipart():
        raise RequestError(400, "the multipart form could not be read (no boundary?)")
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[name] = part.get_payload(decode=True) or b""
    return fields


# ===== the application =====================================================================

class App:
    """What the request handler needs: the callback and its lock, the examples as PNGs, the
    page's files (read once, looked up by exact path), the limits."""

    def __init__(self, colour: Colour, examples: Sequence[tuple[str, np.ndarray]] = (),
                 page: str = "colorize", title: str = "", about: str = "",
                 max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS, max_busy: int = 2):
        self.colour = colour
        self.lock = threading.Lock()  # one forward pass at a time (see the module docstring)
        self.busy = threading.BoundedSemaphore(max_busy)
        self.max_bytes, self.max_pixels = max_bytes, max_pixels
        self.files = page_files(STATIC / page)
        self.examples = [(name, encode_png(image), image.shape[1], image.shape[0])
                         for name, image in examples]
        self.info = {"title": title, "about": about, "max_bytes": max_bytes,
                     "max_pixels": max_pixels,
                     "examples": [{"name": name, "url": f"api/examples/{i}.png", "width": width,
                                   "height": height}
                                  for i, (name, _, width, height) in enumerate(self.examples)]}

    def colour_png(self, fields: dict[str, bytes]) -> bytes:
        """The answer to POST /api/colour: the coloured PNG at the line art's size."""
        if "line" not in fields:
            raise RequestError(400, "the form needs a 'line' field with the line-art picture "
                                    f"(got {', '.join(map(repr, fields)) or 'no fields'})")
        line = decode_image(fields["line"], "line", self.max_pixels)
        hint = decode_image(fields["hint"], "hint", self.max_pixels) if "hint" in fields else None
        with self.lock:
            try:
                result = self.colour(line, hint)
            except UserError as error:
                raise RequestError(400, str(error)) from None
        result = np.asarray(result)
        if result.shape[:2] != line.shape[:2] or not np.isfinite(result).all():
            raise RuntimeError(f"the colouring has shape {result.shape} (or non-finite values) "
                               f"for line art of shape {line.shape}")
        return encode_png(result)


def page_files(folder: Path) -> dict[str, tuple[bytes, str]]:
    """URL path -> (contents, content type) of every servable file in the page's folder."""
    if not (folder / "index.html").is_file():
        raise FileNotFoundError(f"no page at {folder} (index.html missing)")
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.suffix in CONTENT_TYPES:
            files["/" + path.relative_to(folder).as_posix()] = (path.read_bytes(),
                                                                CONTENT_TYPES[path.suffix])
    files["/"] = files["/index.html"]
    return files


class Handler(BaseHTTPRequestHandler):
    server_version = "minimal-webapp"
    protocol_version = "HTTP/1.1"  # keep-alive: the page's requests share one connection
    timeout = 60  # seconds a client may take to send its request (a stalled one frees the thread)
    quiet = False

    # ----- routing
    def do_GET(self) -> None:
        self._answer("GET")

    def do_HEAD(self) -> None:
        self._answer("HEAD")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_PUT(self) -> None:
        self._answer("PUT")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def do_PATCH(self) -> None:
        self._answer("PATCH")

    def do_OPTIONS(self) -> None:
        self._answer("OPTIONS")

    def _answer(self, method: str) -> None:
        app: App = self.server.app
        path = urlsplit(self.path).path
        head = method == "HEAD"  # the headers of a GET, without its body
        try:
            if path == "/api/colour":
                allowed = ("POST",)
            elif path in app.files or path == "/api/info" or self._example(path) is not None:
                allowed = ("GET", "HEAD")
            else:
                raise RequestError(404, f"nothing at {path}; the page is at /")
            if method not in allowed:
                raise RequestError(405, f"{method} is not allowed on {path}; use "
                                        f"{' or '.join(allowed)}")
            if method == "POST":
                body = self._read_body(app.max_bytes)
                with app.busy:
                    started = time.perf_counter()
                    fields = parse_form(self.headers.get("Content-Type", ""), body)
                    png = app.colour_png(fields)
                self._send(200, png, "image/png",
                           {"Cache-Control": "no-store",
                            "X-Seconds": f"{time.perf_counter() - started:.3f}"})
            elif path == "/api/info":
                self._send(200, json.dumps(app.info).encode(), "application/json", head=head)
            elif path in app.files:
                self._send(200, *app.files[path], head=head)
            else:
                self._send(200, app.examples[self._example(path)][1], "image/png", head=head)
        except (BrokenPipeError, ConnectionResetError):  # the client left before the answer
            self.close_connection = True
            self.log_message("the client went away before the answer to %s %s was sent",
                             method, path)
        except RequestError as error:
            extra = {"Allow": ", ".join(allowed)} if error.status == 405 else {}
            self.close_connection = True  # an unread body must not be taken as a request
            self._send(error.status, (str(error) + "\n").encode(), "text/plain; charset=utf-8",
                       extra, head=head)
        except Exception as error:  # noqa: BLE001 (a bug in the callback: say so, serve on)
            traceback.print_exc()
            self.close_connection = True
            self._send(500, f"the server failed: {error}\n".encode(), "text/plain; charset=utf-8")

    def _example(self, path: str) -> int | None:
        prefix, suffix = "/api/examples/", ".png"
        if path.startswith(prefix) and path.endswith(suffix):
            number = path[len(prefix):-len(suffix)]
            if number.isdigit() and int(number) < len(self.server.app.examples):
                return int(number)
        return None

    def _read_body(self, max_bytes: int) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise RequestError(411, "send the upload with a Content-Length, not chunked")
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(411, "the upload needs a Content-Length header")
        if not length.strip().isdigit():
            raise RequestError(400, f"Content-Length {length!r} is not a number of bytes")
        length = int(length)
        if length == 0:
            raise RequestError(400, "the upload is empty (0 bytes); send a form with a 'line' "
                                    "picture")
        if length > max_bytes:
            if length <= DRAIN_BYTES:  # read it first, so the client gets to see the answer
                left = length
                while left > 0 and (chunk := self.rfile.read(min(1 << 20, left))):
                    left -= len(chunk)
            raise RequestError(413, f"the upload is {length:,} bytes, over the limit of "
                                    f"{max_bytes:,}; send a smaller picture")
        body = self.rfile.read(length)
        if len(body) < length:
            raise RequestError(400, f"the upload ended after {len(body):,} of {length:,} bytes")
        return body

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        if not self.quiet:
            super().log_message(format, *args)


class Server(ThreadingHTTPServer):
    daemon_threads = True  # Ctrl-C does not wait for a slow client
    app: App

    def handle_error(self, request, client_address) -> None:
        """A client that hung up mid-answer is one line in the log, not a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (BrokenPipeError, ConnectionResetError)):
            print(f"{client_address[0]}: the client went away before the answer was sent "
                  f"({type(error).__name__})", file=sys.stderr)
            return
        super().handle_error(request, client_address)


class Server6(Server):
    address_family = socket.AF_INET6


def make_server(colour: Colour, examples: Sequence[tuple[str, np.ndarray]] = (), *,
                host: str = "127.0.0.1", port: int = 8000, quiet: bool = False,
                **app_options) -> Server:
    """A server bound to host:port (port 0: any free port; see server.server_address), not
    yet serving: call serve_forever() (tests run it in a thread). app_options go to App."""
    app = App(colour, examples, **app_options)
    handler = type("PageHandler", (Handler,), {"quiet": quiet})
    try:
        server = (Server6 if ":" in host else Server)((host, port), handler)
    except OSError as error:
        hint = ("another server is using it; pick another with --port"
                if error.errno in (98, 48, 10048) else "check --host and --port")
        raise ConfigError(f"cannot listen on {host} port {port}: {error.strerror or error} "
                          f"({hint})") from None
    server.app = app
    return server


def serve(colour: Colour, examples: Sequence[tuple[str, np.ndarray]] = (), *,
          host: str = "127.0.0.1", port: int = 8000, **options) -> None:
    """Serve the page until Ctrl-C; prints the address to open."""
    server = make_server(colour, examples, host=host, port=port, **options)
    if host not in LOCAL_HOSTS and not host.startswith("127."):
        print(f"warning: listening on {host}: anyone who can reach this machine on port "
              f"{server.server_address[1]} can use the page and the model (no login, no "
              "encryption); the default --host 127.0.0.1 keeps it to this computer",
              file=sys.stderr)
    shown = f"[{host}]" if ":" in host else ("127.0.0.1" if host in ("", "0.0.0.0") else host)
    print(f"serving on http://{shown}:{server.server_address[1]}/  (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nstopped", flush=True)
    finally:
        server.server_close()
