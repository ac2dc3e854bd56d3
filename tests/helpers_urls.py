"""A real image server on loopback for the URL-input tests (not a test module).

Paths it answers (every other path is 404):

* ``/cube.png``: a PNG, ``Content-Type: image/png``;
* ``/lying.png``: PNG bytes sent as ``text/html`` (the type must not matter);
* ``/page.png``: an HTML page sent as ``image/png`` (the bytes must decide);
* ``/hop/N``: a 302 chain of N redirects ending at ``/cube.png``;
* ``/huge``: an endless body (chunked, no Content-Length);
* ``/slow``: the headers, then the body a byte every 0.2 s;
* any path given in ``extra``: those bytes as ``image/png``.

``ImageServer.requests`` counts the requests that reached it, so a test can
show a refusal happened before any connection.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

HTML = b"<!doctype html><html><body>not an image</body></html>"


def png_bytes(size: tuple[int, int] = (40, 30), color: tuple[int, int, int] = (10, 120, 200)
              ) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64," + base64.b64encode(data).decode("ascii")


CUBE = png_bytes()


@dataclass
class ImageServer:
    url: str
    requests: list[str] = field(default_factory=list)


@contextmanager
def image_server(extra: dict[str, bytes] | None = None) -> Iterator[ImageServer]:
    """The server on 127.0.0.1 (an ephemeral port), stopped on exit."""
    bodies = {"/cube.png": (CUBE, "image/png"), "/lying.png": (CUBE, "text/html"),
              "/page.png": (HTML, "image/png")}
    bodies.update({path: (data, "image/png") for path, data in (extra or {}).items()})
    served = ImageServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            served.requests.append(self.path)
            if self.path.startswith("/hop/"):
                left = int(self.path.rsplit("/", 1)[1])
                self.send_response(302)
                self.send_header("Location", f"/hop/{left - 1}" if left > 1 else "/cube.png")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path in bodies:
                body, kind = bodies[self.path]
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif self.path in ("/huge", "/slow"):
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk, pause = ((b"\x89PNG" + b"\0" * 65532, 0.0) if self.path == "/huge"
                                else (b"\0", 0.2))
                try:
                    for _ in range(2000):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        time.sleep(pause)
                except OSError:  # the client hung up, as it should
                    pass
            else:
                self.send_error(404)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
