"""A hostile site on 127.0.0.1: the crawl finishes, every bad page is quarantined with its reason,
and nothing off-site or disallowed is fetched (asserted from the servers' own request logs)."""

from __future__ import annotations

import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.collect import crawl, documents, dump, quarantine, summary
from twin_ops.domain import QuarantineReason

TIMEOUT_S = 2  # generous enough for a loaded 2-core machine
SLOW_S = 4
RETRY_TIMES = 2
MAX_DEPTH = 3
HUGE_BYTES = 20 * 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01" + bytes(200)
BODY = "The yard smelled of varnish and rain, and the bilge pump coughed twice before it caught. "


def article(title: str, text: str = BODY * 3, charset: str = "utf-8", meta_charset: bool = False) -> bytes:
    meta = f'<meta charset="{charset}">' if meta_charset else ""
    return (
        f"<!doctype html><html><head>{meta}<title>{title}</title><meta property='og:type' content='article'>"
        f"</head><body><nav>Home · About</nav><article><h1>{title}</h1><p>{text}</p></article>"
        f"<footer>Footer</footer></body></html>"
    ).encode(charset)


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__((host, 0), handler)
        self.paths: list[str] = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class OffsiteHandler(BaseHTTPRequestHandler):
    """Answers anything, but its only job is to record that it was asked at all."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(article("Off-site trap"))


class HostileHandler(BaseHTTPRequestHandler):
    offsite: tuple[str, str] = ("", "")  # set by the fixture

    def log_message(self, *args: object) -> None:
        pass

    def send(self, status: int, body: bytes = b"", content_type: str = "text/html; charset=utf-8", **headers: str):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # one branch per hostile page
        with self.server.lock:
            self.server.paths.append(self.path)
        path = self.path
        first_visit = self.server.paths.count(path) == 1
        if path == "/robots.txt":
            self.send(200, b"User-agent: *\nDisallow: /private/\n", "text/plain")
        elif path == "/":
            off1, off2 = self.offsite
            links = [
                "/good/", "/flaky/", "/missing", "/broken", "/slow", "/loop/a", "/calendar/2024/01/", "/huge",
                "/latin1", "/latin1-meta", "/malformed", "/binary", "/empty-article", "/offsite-redirect",
                "/private/secret", "/report.pdf", f"{off1}/page", f"{off2}/page", f"//{off1.split('//')[1]}/proto",
                "mailto:wren@example.invalid", "javascript:void(0)",
            ]  # fmt: skip
            anchors = "".join(f'<a href="{href}">{href}</a> ' for href in links)
            page = (
                "<html><head><title>Hostile</title>"
                '<link rel="alternate" type="application/rss+xml" href="/feed-broken.xml"></head>'
                f"<body>{anchors}</body></html>"
            )
            self.send(200, page.encode())
        elif path == "/good/":
            self.send(200, article("A good page"))
        elif path == "/flaky/":
            self.send(503, b"busy") if first_visit else self.send(200, article("Flaky but fine"))
        elif path == "/missing":
            self.send(404, b"<h1>Not here</h1>")
        elif path == "/broken":
            self.send(500, b"<h1>Server error</h1>")
        elif path == "/slow":
            time.sleep(SLOW_S)
            with contextlib.suppress(OSError):  # the crawler gave up waiting, as it should
                self.send(200, article("Too slow"))
        elif path in {"/loop/a", "/loop/b"}:
            self.send(302, Location="/loop/b" if path == "/loop/a" else "/loop/a")
        elif path.startswith("/calendar/"):
            year, month = (int(part) for part in path.strip("/").split("/")[1:3])
            previous = f"/calendar/{year - (month == 1)}/{(month - 2) % 12 + 1:02d}/"
            following = f"/calendar/{year + (month == 12)}/{month % 12 + 1:02d}/"
            body = f'<html><body><a href="{previous}">previous</a> <a href="{following}">next</a></body></html>'
            self.send(200, body.encode())
        elif path == "/huge":
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(HUGE_BYTES))
            self.end_headers()
            chunk = b"<p>" + b"a" * 65533
            with contextlib.suppress(OSError):  # the crawler hung up, as it should
                for _ in range(HUGE_BYTES // len(chunk)):
                    self.wfile.write(chunk)
        elif path == "/latin1":
            text = "Smørrebrød and café crème at the quay. " * 4
            self.send(200, article("Åsa’s café — windows-1252", text, "cp1252"), "text/html; charset=windows-1252")
        elif path == "/latin1-meta":
            text = "Ålesund señor café, declared in a meta tag only. " * 4
            self.send(200, article("Ålesund in Latin-1", text, "iso-8859-1", meta_charset=True), "text/html")
        elif path == "/malformed":
            body = (
                "<html><head><title>Malformed page</title><meta property='og:type' content='article'>"
                f"<body><div><p>Unclosed <i>tags <b>everywhere. {BODY * 3}<p>Still readable.</div></span></td>"
            )
            self.send(200, body.encode())
        elif path == "/binary":
            self.send(200, PNG, "text/html")
        elif path == "/empty-article":
            self.send(200, article("Nothing here", text=""))
        elif path == "/offsite-redirect":
            self.send(302, Location=f"{self.offsite[0]}/trap")
        elif path == "/feed-broken.xml":
            # A feed URL answering with an error page, as misconfigured servers do.
            self.send(200, b"<html><body><h1>Oops</h1><p>Something went wrong</p></body></html>", "application/rss+xml")
        else:
            self.send(404, b"<h1>Not here</h1>")


EXPECTED_QUARANTINE = {
    "/missing": QuarantineReason.HTTP_ERROR,
    "/broken": QuarantineReason.HTTP_ERROR,
    "/slow": QuarantineReason.TIMEOUT,
    "/loop/a": QuarantineReason.REDIRECT_LOOP,
    "/huge": QuarantineReason.TOO_LARGE,
    "/binary": QuarantineReason.NON_TEXT,
    "/empty-article": QuarantineReason.EMPTY_EXTRACTION,
    "/offsite-redirect": QuarantineReason.OFFSITE_REDIRECT,
    "/private/secret": QuarantineReason.ROBOTS_DISALLOWED,
    "/feed-broken.xml": QuarantineReason.INVALID_FEED,
}


@pytest.fixture(scope="module")
def hostile_crawl(tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile")
    offsite_host = Recorder("127.0.0.2", OffsiteHandler)  # another address
    offsite_port = Recorder("127.0.0.1", OffsiteHandler)  # the same address, another port
    handler = type("Handler", (HostileHandler,), {"offsite": (offsite_host.url, offsite_port.url)})
    site = Recorder("127.0.0.1", handler)
    authors = work / "authors"
    authors.mkdir()
    (authors / "hostile.yaml").write_text(
        "id: hostile\nname: Hostile\nsources:\n  - {type: article, url: '${DEMO_SITE_URL}/'}\n"
    )
    try:
        started = time.monotonic()
        result = crawl(
            work,
            "hostile",
            site.url,
            f"collect.download_timeout_s={TIMEOUT_S}",
            f"collect.retry_times={RETRY_TIMES}",
            "collect.retry_backoff_base_s=0.05",
            f"collect.max_depth={MAX_DEPTH}",
            env={"TWIN_OPS_PARAM__collect__authors_dir": str(authors)},
        )
        seconds = time.monotonic() - started
    finally:
        for server in (site, offsite_host, offsite_port):
            server.stop()
    return work, result, seconds, site.paths, offsite_host.paths + offsite_port.paths


def test_the_crawl_finishes_cleanly(hostile_crawl):
    _, result, seconds, _, _ = hostile_crawl
    assert result.returncode == 0, dump(result)
    assert "Traceback" not in result.stderr and "Unhandled error" not in result.stderr
    assert seconds < 60


def test_every_bad_page_is_quarantined_with_its_reason(hostile_crawl):
    work, _, _, _, _ = hostile_crawl
    items = quarantine(work, "hostile")
    found = {"/" + item.url.split("/", 3)[3]: item for item in items}
    assert {path: item.reason for path, item in found.items()} == EXPECTED_QUARANTINE
    assert (found["/missing"].status, found["/broken"].status) == (404, 500)
    assert "redirect loop" in found["/loop/a"].detail


def test_good_pages_survive_retries_encodings_and_broken_markup(hostile_crawl):
    work, _, _, paths, _ = hostile_crawl
    stored = {d.title: d for d in documents(work, "hostile")["blog"]}
    assert set(stored) == {
        "A good page",
        "Flaky but fine",
        "Åsa’s café — windows-1252",
        "Ålesund in Latin-1",
        "Malformed page",
    }
    assert "Smørrebrød and café crème at the quay." in stored["Åsa’s café — windows-1252"].content
    assert "Ålesund señor café" in stored["Ålesund in Latin-1"].content
    assert "Still readable." in stored["Malformed page"].content
    assert all("Footer" not in d.content and "Home · About" not in d.content for d in stored.values())
    assert paths.count("/flaky/") == 2  # a 503, then a retry that worked


def test_retries_back_off_and_give_up(hostile_crawl):
    _, _, _, paths, _ = hostile_crawl
    assert paths.count("/broken") == 1 + RETRY_TIMES
    assert paths.count("/slow") == 1 + RETRY_TIMES
    assert paths.count("/missing") == 1 and paths.count("/huge") == 1  # a 404 or a size cap is final


def test_nothing_off_site_disallowed_or_binary_by_extension_is_fetched(hostile_crawl):
    _, _, _, paths, offsite = hostile_crawl
    assert offsite == []
    assert not [p for p in paths if p.startswith("/private/") or p.endswith(".pdf") or p == "/trap"]


def test_the_calendar_trap_is_cut_at_the_depth_limit(hostile_crawl):
    _, result, _, paths, _ = hostile_crawl
    calendar = [p for p in paths if p.startswith("/calendar/")]
    # Hop 1 reaches one month; every further hop adds the months on either side, until MAX_DEPTH.
    assert len(calendar) == 1 + 2 * (MAX_DEPTH - 1)
    assert "depth_limit" in result.stdout
    assert summary(result)["quarantined"] == len(EXPECTED_QUARANTINE)
