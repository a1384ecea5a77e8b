"""A local HTTP server standing in for the Legacy Survey cutout service in the tests."""

from __future__ import annotations

import http.server
import threading
import urllib.parse


class FitsServer:
    """Answers ``GET /cutout.fits?...`` with ``self.respond(query)``, on a free local port.

    ``respond`` gets the query as ``{name: value}`` and returns ``(status, body)``: a FITS
    file's bytes with status 200, or an error message for any other status. Started on
    construction; :meth:`close` stops it.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                q = {k: v[0] for k, v in
                     urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).items()}
                status, body = server.respond(q)
                if status != 200:
                    self.send_error(status, body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/fits")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cutout.fits"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def respond(self, query: dict[str, str]) -> tuple[int, bytes | str]:
        raise NotImplementedError

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
