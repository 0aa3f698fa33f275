"""The report app the Airflow plugin mounts (plugins/twin_airflow/reports.py) and the links that
point at it (links.py): real reports from the project's writers, served from a scratch project.

Here the app gets a small stand-in for Airflow's user check (a header naming the DAGs the reader
may see), so what is tested is the app's own rules; Airflow's real check is tested through the
real API server (tests/integration/test_airflow_reports.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi import HTTPException, Request
from fastapi.testclient import TestClient

from tests.support.reports import AUTHOR, HOSTILE, scratch_paths, write_evaluation_report, write_model_card

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
EVERYTHING = "twin_training,twin_nightly_refresh"


@pytest.fixture
def reports_module(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    from twin_airflow import reports

    return reports


def reader(request: Request) -> set[str]:
    """Stands in for Airflow's get_user + auth manager: the DAGs this reader may see, or 401."""
    dags = request.headers.get("x-readable-dags")
    if dags is None:
        raise HTTPException(401, "Not authenticated")
    return set(dags.split(",")) - {""}


@pytest.fixture
def project(tmp_path, params, paths):
    scratch = scratch_paths(paths, tmp_path / "project")
    report = write_evaluation_report(params, scratch)
    card = write_model_card(params, scratch)
    site = scratch.data_docs.parent
    page = site / "validations" / "raw_documents" / "__none__" / "20261201T000000Z" / f"twin_ops-raw__{AUTHOR}.html"
    page.parent.mkdir(parents=True)
    page.write_text("<html><body><h1>Validation Results</h1><table><tr><td>Succeeded</td></tr></table></body></html>")
    (site / "static" / "styles").mkdir(parents=True)
    (site / "static" / "styles" / "data_docs_default_styles.css").write_text("body { margin: 0 }")
    scratch.data_docs.write_text("<html>GX index</html>")
    # Beside the report folders, where a ../ would reach: never served.
    for secret in (tmp_path / "project" / "secret.md", tmp_path / "project" / "SECRET.md", tmp_path / "SECRET.md"):
        secret.write_text("SECRET-VALUE\n")
    return scratch, report, card, page


@pytest.fixture
def client(reports_module, project):
    scratch = project[0]
    app = reports_module.create_app(lambda: scratch, reader)
    with TestClient(app, headers={"x-readable-dags": EVERYTHING}) as test_client:
        yield test_client


def test_the_evaluation_report_is_html_with_its_plot(client, project):
    response = client.get(f"/evaluation/{AUTHOR}/report.md")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    body = response.text
    assert f"<h1>Evaluation · {AUTHOR} · {AUTHOR}-twin:v2</h1>" in body
    assert "<table>" in body and "<td>perplexity" in body  # the metrics table, rendered
    assert '<img src="comparison.png" alt="comparison" />' in body
    # The plot, where the browser looks for it (relative to the report's URL).
    plot = client.get(f"/evaluation/{AUTHOR}/comparison.png")
    assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
    assert plot.content.startswith(b"\x89PNG") and plot.content == (project[1].parent / "comparison.png").read_bytes()
    # A generation's markup is shown as text; the report's own <br> in table cells stays a break.
    assert HOSTILE not in body and "<script" not in body and "<img src=x" not in body
    assert "&lt;script&gt;document.title" in body
    assert "Because<br>it ends." in body
    assert "script-src" not in response.headers["content-security-policy"]  # default-src 'none': no scripts
    assert "default-src 'none'" in response.headers["content-security-policy"]


def test_the_model_card_is_html_and_the_weights_are_not_served(client, project):
    response = client.get(f"/models/{AUTHOR}/sft/README.md")
    assert response.status_code == 200, response.text
    assert f"<h1>twin-ops · {AUTHOR} · sft</h1>" in response.text
    assert "<pre class='metadata'>base_model: tiny-base" in response.text  # the YAML header, as text
    assert client.get(f"/models/{AUTHOR}/sft/adapter/adapter_model.safetensors").status_code == 404
    (project[2].parent / "metrics.json").write_text("{}")  # only cards and plots in models/
    assert client.get(f"/models/{AUTHOR}/sft/metrics.json").status_code == 404


def test_data_docs_are_served_as_they_are(client, project):
    page = project[3]
    relative = page.relative_to(project[0].data_docs.parent).as_posix()
    response = client.get(f"/data-docs/{relative}")
    assert response.status_code == 200 and response.content == page.read_bytes()
    assert response.headers["content-type"].startswith("text/html")
    css = client.get("/data-docs/static/styles/data_docs_default_styles.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_the_index_lists_what_the_reader_may_open(client, reports_module, project):
    page = project[3].relative_to(project[0].data_docs.parent).as_posix()
    index = client.get("/")
    assert index.status_code == 200
    for href in (f"/twin-ops/evaluation/{AUTHOR}/report.md", f"/twin-ops/models/{AUTHOR}/sft/README.md",
                 f"/twin-ops/data-docs/{page}"):  # fmt: skip
        assert f"href='{href}'" in index.text, href
    # A reader of the refresh DAG only sees its Data Docs, not training's reports.
    refresh_only = {"x-readable-dags": "twin_nightly_refresh"}
    narrow = client.get("/", headers=refresh_only).text
    assert "data-docs/" in narrow and "report.md" not in narrow and "README.md" not in narrow
    assert client.get(f"/evaluation/{AUTHOR}/report.md", headers=refresh_only).status_code == 403
    assert client.get(f"/data-docs/{page}", headers=refresh_only).status_code == 200
    assert client.get("/", headers={"x-readable-dags": ""}).text.count("<h2>") == 0


def test_no_user_no_page(reports_module, project):
    app = reports_module.create_app(lambda: project[0], reader)
    with TestClient(app) as anonymous:
        for url in ("/", f"/evaluation/{AUTHOR}/report.md", f"/evaluation/{AUTHOR}/comparison.png"):
            assert anonymous.get(url).status_code == 401, url


@pytest.mark.parametrize(
    "url",
    [
        "/evaluation/../../SECRET.md",
        "/evaluation/%2e%2e/%2e%2e/SECRET.md",
        "/evaluation/..%2f..%2fSECRET.md",
        "/evaluation/%2e%2e%2f%2e%2e%2fSECRET.md",
        "/evaluation/%252e%252e%252f%252e%252e%252fSECRET.md",
        "/evaluation/..%5c..%5cSECRET.md",
        f"/evaluation/{AUTHOR}/../../../secret.md",
        f"/evaluation/{AUTHOR}%2f..%2f..%2f..%2fsecret.md",
        "/data-docs/..%2f..%2f..%2f..%2f..%2f..%2fsecret.md",
        "/models/%2e%2e%2fsecret.md",
        "/evaluation//etc/passwd",
        "/evaluation/%2fetc%2fpasswd",
        "/evaluation/..%00/SECRET.md",
        "/evaluation/",
        "/evaluation/%2e%2e",
    ],
)
def test_nothing_outside_the_report_folders_is_served(client, url):
    response = client.get(url)
    assert response.status_code in (400, 404), (url, response.status_code, response.text[:200])
    assert "SECRET-VALUE" not in response.text and "root:" not in response.text


def test_a_symlink_out_of_a_report_folder_is_not_followed(client, project, tmp_path):
    link = project[0].evaluation_output(AUTHOR) / "leak.md"
    os.symlink(tmp_path / "SECRET.md", link)
    assert client.get(f"/evaluation/{AUTHOR}/leak.md").status_code == 404


def test_unknown_files_and_folders_are_404(client):
    assert client.get(f"/evaluation/{AUTHOR}/missing.md").status_code == 404
    assert client.get("/evaluation/nobody/report.md").status_code == 404
    assert client.get("/weights/x.md").status_code == 404
    assert client.get(f"/evaluation/{AUTHOR}").status_code == 404  # a folder is not a page


def test_links_point_at_the_pages_under_the_api_servers_base_url(reports_module, project):
    from twin_airflow.links import link_url, stored_location

    scratch, report, card, page = project
    assert link_url(stored_location(str(report)), "/", scratch) == f"/twin-ops/evaluation/{AUTHOR}/report.md"
    assert link_url(report.as_uri(), "/", scratch) == f"/twin-ops/evaluation/{AUTHOR}/report.md"  # older runs
    assert link_url(str(card), "http://airflow.example/base", scratch) == (
        f"http://airflow.example/base/twin-ops/models/{AUTHOR}/sft/README.md"
    )
    relative = page.relative_to(scratch.data_docs.parent).as_posix()
    assert link_url(str(page), "/", scratch) == f"/twin-ops/data-docs/{relative}"
    assert link_url(str(scratch.data_docs), "/", scratch) == "/twin-ops/"  # GX's index needs its CDN scripts
    assert link_url("http://127.0.0.1:8000/docs", "/", scratch) == "http://127.0.0.1:8000/docs"
    weights = scratch.training_output(AUTHOR, "sft") / "adapter" / "adapter_model.safetensors"
    assert link_url(str(weights), "/", scratch) == ""  # outside what is served: the link is disabled
    assert link_url(str(scratch.root / "secret.md"), "/", scratch) == ""
