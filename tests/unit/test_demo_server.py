"""The demo server answers conditional requests like a real web server, and logs every request."""

from __future__ import annotations

import os
import time

import pytest
import requests

from twin_ops.demo.server import SiteServer


@pytest.fixture
def server(tmp_path):
    (tmp_path / "posts" / "a").mkdir(parents=True)
    (tmp_path / "posts" / "a" / "index.html").write_text("<p>a</p>")
    (tmp_path / "feed.xml").write_text("<rss/>")
    (tmp_path.parent / "secret.txt").write_text("outside the site")
    with SiteServer(tmp_path) as running:
        yield running


def test_pages_carry_validators_and_a_revalidate_policy(server):
    response = requests.get(f"{server.url}/posts/a/", timeout=5)
    assert response.status_code == 200 and response.text == "<p>a</p>"
    assert response.headers["ETag"].startswith('"') and response.headers["Last-Modified"].endswith("GMT")
    assert response.headers["Cache-Control"] == "max-age=0, must-revalidate"
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert requests.get(f"{server.url}/feed.xml", timeout=5).headers["Content-Type"] == "application/xml"


def test_conditional_requests_get_304_until_the_file_changes(server, tmp_path):
    first = requests.get(f"{server.url}/posts/a/", timeout=5)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert requests.get(f"{server.url}/posts/a/", headers={"If-None-Match": etag}, timeout=5).status_code == 304
    assert requests.get(f"{server.url}/posts/a/", headers={"If-Modified-Since": modified}, timeout=5).status_code == 304
    page = tmp_path / "posts" / "a" / "index.html"
    page.write_text("<p>a, edited</p>")
    os.utime(page, (time.time() + 5, time.time() + 5))
    changed = requests.get(f"{server.url}/posts/a/", headers={"If-None-Match": etag}, timeout=5)
    assert changed.status_code == 200 and changed.text == "<p>a, edited</p>" and changed.headers["ETag"] != etag
    # If-None-Match wins over If-Modified-Since (RFC 9110).
    both = {"If-None-Match": etag, "If-Modified-Since": changed.headers["Last-Modified"]}
    assert requests.get(f"{server.url}/posts/a/", headers=both, timeout=5).status_code == 200


def test_folders_redirect_to_their_slash_missing_files_404_and_nothing_outside_is_served(server):
    redirect = requests.get(f"{server.url}/posts/a", allow_redirects=False, timeout=5)
    assert (redirect.status_code, redirect.headers["Location"]) == (301, "/posts/a/")
    assert requests.get(f"{server.url}/nope/", timeout=5).status_code == 404
    assert requests.get(f"{server.url}/../secret.txt", timeout=5).status_code == 404
    assert requests.get(f"{server.url}/%2e%2e/secret.txt", timeout=5).status_code == 404


def test_every_request_is_logged_with_its_conditional_headers(server):
    requests.get(f"{server.url}/posts/a/", headers={"If-None-Match": '"x"', "User-Agent": "probe"}, timeout=5)
    log = server.take_log()
    assert [(r.method, r.path, r.status, r.if_none_match, r.user_agent) for r in log] == [
        ("GET", "/posts/a/", 200, '"x"', "probe")
    ]
    assert server.take_log() == []
