"""A static file server on 127.0.0.1 that answers conditional requests, for the demo site.

Every file is sent with ``ETag`` (a hash of its bytes), ``Last-Modified`` (its mtime) and
``Cache-Control: max-age=0, must-revalidate`` — "store it, but ask me before reusing it" — so a
caching crawler revalidates each page and gets ``304 Not Modified`` for the unchanged ones, as
with a real blog behind a CDN. (Not ``no-cache``, which means the same: Scrapy's RFC2616Policy
answers it by refetching without validators, i.e. a full download every time.)

Every request is logged (method, path, status, conditional headers), so tests can assert from
the server's side what a crawl actually fetched.
"""

from __future__ import annotations

import hashlib
import mimetypes
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".xml": "application/xml",
    ".txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    status: int
    if_none_match: str | None
    if_modified_since: str | None
    user_agent: str | None


def _content_type(path: Path) -> str:
    """By extension; a file without one is HTML when it starts like HTML (``/news/2024/05/story``)."""
    known = CONTENT_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    if known:
        return known
    if not path.suffix:
        with path.open("rb") as file:
            if file.read(64).lstrip().lower().startswith((b"<!doctype html", b"<html")):
                return CONTENT_TYPES[".html"]
    return "application/octet-stream"


def _etag(path: Path, cache: dict[tuple[Path, int, int], str]) -> str:
    stat = path.stat()
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in cache:
        cache[key] = '"' + hashlib.sha256(path.read_bytes()).hexdigest()[:32] + '"'
    return cache[key]


class _Handler(BaseHTTPRequestHandler):
    server: SiteServer._Server
    protocol_version = "HTTP/1.1"  # keep-alive, like a real web server
    # Headers and body leave in separate writes; with Nagle's algorithm on, a keep-alive client
    # waits ~40 ms (delayed ACK) for every body.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass  # the request log below replaces stderr noise

    def _log(self, status: int) -> None:
        self.server.site.record(
            LoggedRequest(
                method=self.command,
                path=self.path,
                status=status,
                if_none_match=self.headers.get("If-None-Match"),
                if_modified_since=self.headers.get("If-Modified-Since"),
                user_agent=self.headers.get("User-Agent"),
            )
        )

    def _reply(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self._log(status)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != HTTPStatus.NOT_MODIFIED:  # a 304 has no body, hence no length
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _resolve(self, url_path: str) -> Path | None:
        root = self.server.site.root
        target = (root / unquote(url_path).lstrip("/")).resolve()
        return target if target == root or root in target.parents else None

    def do_GET(self) -> None:
        if self.server.site.latency_s:
            time.sleep(self.server.site.latency_s)  # a simulated network round trip
        url_path = urlsplit(self.path).path
        target = self._resolve(url_path)
        if target is not None and target.is_dir():
            if not url_path.endswith("/"):
                self._reply(HTTPStatus.MOVED_PERMANENTLY, {"Location": url_path + "/"})
                return
            target = target / "index.html"
        if target is None or not target.is_file():
            body = b"<!doctype html><title>Not found</title><h1>404: no such page</h1>"
            self._reply(HTTPStatus.NOT_FOUND, {"Content-Type": "text/html; charset=utf-8"}, body)
            return
        etag = _etag(target, self.server.site.etags)
        mtime = int(target.stat().st_mtime)
        headers = {
            "ETag": etag,
            "Last-Modified": formatdate(mtime, usegmt=True),
            "Cache-Control": "max-age=0, must-revalidate",
            "Content-Type": _content_type(target),
        }
        if self._not_modified(etag, mtime):
            self._reply(HTTPStatus.NOT_MODIFIED, {k: v for k, v in headers.items() if k != "Content-Type"})
            return
        self._reply(HTTPStatus.OK, headers, target.read_bytes())

    do_HEAD = do_GET

    def _not_modified(self, etag: str, mtime: int) -> bool:
        # RFC 9110 §13.1.1/§13.1.3: If-None-Match wins; If-Modified-Since only when it is absent.
        candidates = self.headers.get("If-None-Match")
        if candidates is not None:
            tags = {tag.strip().removeprefix("W/") for tag in candidates.split(",")}
            return "*" in tags or etag in tags
        since = self.headers.get("If-Modified-Since")
        if since is None:
            return False
        try:
            return mtime <= parsedate_to_datetime(since).timestamp()
        except (TypeError, ValueError):
            return False


class SiteServer:
    """Serve ``root`` on ``host:port`` (port 0 = any free port) from a background thread.

    ``latency_s`` delays every answer, to measure a crawler as if the site were across a network.
    """

    class _Server(ThreadingHTTPServer):
        daemon_threads = True
        site: SiteServer

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0, latency_s: float = 0.0) -> None:
        self.root = root.resolve()
        self.latency_s = latency_s
        self.etags: dict[tuple[Path, int, int], str] = {}
        self.requests: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._httpd = self._Server((host, port), _Handler)  # binds now: the URL is known before building
        self._httpd.site = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def record(self, request: LoggedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def take_log(self) -> list[LoggedRequest]:
        """The requests logged so far, clearing the log."""
        with self._lock:
            taken, self.requests = self.requests, []
        return taken

    def start(self) -> SiteServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="site-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> SiteServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
