"""The report pages through a real Airflow API server (`airflow api-server`, the simple auth
manager, the project's plugin folder), and in a real browser (Debian's chromium via selenium).

A scratch project holds a real evaluation report with its plot, a model card and a real GX
validation. A twin_training run is created through the REST API and its evaluate and
validate_datasets tasks get the link XComs those tasks push (the same keys and values; running the
tasks themselves is the e2e test's job). Then: the plugin's app is mounted and refuses anonymous
and forged requests; the extra-links API returns pages on the API server; and a browser that
logged in through Airflow's own login page opens the task's links in the Airflow UI and sees the
report with its plot and the validation page. No scheduler runs: nothing here needs one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import BIN, ROOT
from tests.support.reports import AUTHOR, scratch_paths, write_data_docs, write_evaluation_report, write_model_card

REPORT_LINK = "Model card / evaluation report"
DATA_DOCS_LINK = "GX Data Docs"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def project(tmp_path_factory, params, paths):
    from twin_ops.config import Settings, load_params, resolve_paths
    from twin_ops.services.airflow_home import airflow_environment

    root = tmp_path_factory.mktemp("reports-project")
    shutil.copy2(ROOT / "params.yaml", root / "params.yaml")
    scratch_params = load_params(root / "params.yaml")
    scratch = resolve_paths(scratch_params, Settings(twin_ops_home=root))
    files = {
        "report": write_evaluation_report(scratch_params, scratch),
        "card": write_model_card(scratch_params, scratch),
        "validation": write_data_docs(scratch_params, scratch),
    }
    assert scratch_paths(paths, root).evaluation == scratch.evaluation  # the writers' folders are the served ones
    env = {
        **os.environ,
        **airflow_environment(scratch_params, scratch),
        # This checkout's DAGs and plugin, the scratch project's data.
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "TWIN_OPS_HOME": str(root),
    }
    for name in [n for n in env if n.startswith("TWIN_OPS_PARAM__")]:
        env.pop(name)
    for command in (["db", "migrate"], ["dags", "reserialize"]):
        done = subprocess.run([str(BIN / "airflow"), *command], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    return root, env, files


@pytest.fixture(scope="module")
def api_server(project):
    """`airflow api-server` alone: the REST API, the UI and the plugin's app."""
    root, env, _ = project
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = root / "api-server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(BIN / "airflow"), "api-server", "--port", str(port), "--host", "127.0.0.1"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, log_path.read_text()[-5000:]
            assert time.monotonic() < deadline, "api-server did not come up:\n" + log_path.read_text()[-5000:]
            try:
                if httpx.get(f"{url}/api/v2/version", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(2)
        passwords = json.loads((Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated").read_text())
        yield url, "admin", passwords["admin"]
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)


@pytest.fixture(scope="module")
def api(api_server):
    url, user, password = api_server
    token = httpx.post(f"{url}/auth/token", json={"username": user, "password": password}, timeout=30)
    assert token.status_code in (200, 201), token.text
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token.json()['access_token']}"},
                      timeout=60) as client:  # fmt: skip
        yield client


@pytest.fixture(scope="module")
def training_run(project, api):
    """A twin_training run whose evaluate and validate_datasets tasks recorded their pages."""
    from twin_airflow.links import stored_location, xcom_key

    _, _, files = project
    created = api.post("/api/v2/dags/twin_training/dagRuns", json={"logical_date": None, "conf": {"author": AUTHOR}})
    assert created.status_code == 200, created.text
    run_id = created.json()["dag_run_id"]
    for task, name, location in (("evaluate", REPORT_LINK, files["report"]),
                                 ("validate_datasets", DATA_DOCS_LINK, files["validation"])):  # fmt: skip
        pushed = api.post(
            f"/api/v2/dags/twin_training/dagRuns/{run_id}/taskInstances/{task}/xcomEntries",
            json={"key": xcom_key(name), "value": stored_location(str(location)), "map_index": -1},
        )
        assert pushed.status_code in (200, 201), pushed.text
    return run_id


@pytest.fixture(scope="module", autouse=True)
def plugins_importable():
    import sys

    sys.path.insert(0, str(ROOT / "plugins"))
    yield
    sys.path.remove(str(ROOT / "plugins"))


def links(api, run_id: str, task: str) -> dict[str, str]:
    response = api.get(f"/api/v2/dags/twin_training/dagRuns/{run_id}/taskInstances/{task}/links")
    assert response.status_code == 200, response.text
    return response.json()["extra_links"]


def test_the_plugin_is_loaded_and_its_app_mounted(api):
    plugins = api.get("/api/v2/plugins").json()["plugins"]
    twin = next(p for p in plugins if p["name"] == "twin_ops")
    assert [(a["name"], a["url_prefix"]) for a in twin["fastapi_apps"]] == [("twin-ops reports", "/twin-ops")]
    index = api.get("/twin-ops/")
    assert index.status_code == 200 and "<h1>twin-ops reports</h1>" in index.text


def test_the_links_open_pages_on_the_api_server(api, project, training_run):
    _, _, files = project
    report = links(api, training_run, "evaluate")[REPORT_LINK]
    assert report == f"/twin-ops/evaluation/{AUTHOR}/report.md", report
    page = api.get(report)
    assert page.status_code == 200 and f"<h1>Evaluation · {AUTHOR}" in page.text
    plot = api.get(report.rsplit("/", 1)[0] + "/comparison.png")
    assert plot.status_code == 200 and plot.content == (files["report"].parent / "comparison.png").read_bytes()
    docs = links(api, training_run, "validate_datasets")[DATA_DOCS_LINK]
    assert docs.startswith("/twin-ops/data-docs/validations/raw_documents/"), docs
    assert api.get(docs).content == files["validation"].read_bytes()
    card = api.get(f"/twin-ops/models/{AUTHOR}/sft/README.md")
    assert card.status_code == 200 and f"twin-ops · {AUTHOR} · sft" in card.text


def test_airflows_login_protects_the_pages(api_server, project):
    url, _, _ = api_server
    page = f"{url}/twin-ops/evaluation/{AUTHOR}/report.md"
    for target in (page, f"{url}/twin-ops/", f"{url}/twin-ops/evaluation/{AUTHOR}/comparison.png"):
        anonymous = httpx.get(target, timeout=30)
        assert anonymous.status_code == 401, (target, anonymous.status_code, anonymous.text[:300])
    forged = httpx.get(page, headers={"Authorization": "Bearer not-a-jwt"}, timeout=30)
    assert forged.status_code == 403, forged.text[:300]
    forged_cookie = httpx.get(page, cookies={"_token": "not-a-jwt"}, timeout=30)
    assert forged_cookie.status_code in (401, 403) and "Evaluation" not in forged_cookie.text


def test_traversal_through_the_real_server_is_refused(api, project):
    root, _, _ = project
    (root / "notes.md").write_text("PROJECT-SECRET\n")  # where evaluation/../../ leads, with a served suffix
    for path in ("..%2f..%2fnotes.md", "%2e%2e/%2e%2e/notes.md", f"{AUTHOR}%2f..%2f..%2f..%2fnotes.md"):
        response = api.get(f"/twin-ops/evaluation/{path}")
        assert response.status_code in (400, 404), (path, response.status_code)
        assert "PROJECT-SECRET" not in response.text


@pytest.fixture(scope="module")
def browser():
    from twin_ops.services.browser import ensure_chromium, headless_driver

    driver = headless_driver(ensure_chromium())
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def test_in_the_browser_the_task_links_open_the_report_with_its_plot_and_the_validation_page(
    api_server, training_run, browser, tmp_path_factory
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    url, user, password = api_server
    wait = WebDriverWait(browser, 120)
    # Airflow's own login page: the session cookie it sets is what the report pages accept.
    browser.get(f"{url}/")
    wait.until(ready.presence_of_element_located((By.NAME, "username"))).send_keys(user)
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda b: any(c["name"] == "_token" for c in b.get_cookies()))

    shots = tmp_path_factory.mktemp("screens")

    def open_link(task: str, name: str) -> None:
        """The task instance's Details tab in the UI, then its extra link, as a user clicks it."""
        browser.get(f"{url}/dags/twin_training/runs/{training_run}/tasks/{task}/details")
        try:
            button = wait.until(ready.element_to_be_clickable((By.XPATH, f"//a[normalize-space()='{name}']")))
        except Exception:
            (shots / f"{task}.html").write_text(browser.page_source)
            browser.save_screenshot(str(shots / f"{task}-missing-link.png"))
            raise
        assert button.get_attribute("href").startswith(f"{url}/twin-ops/"), button.get_attribute("href")
        before = set(browser.window_handles)
        button.click()
        wait.until(lambda b: len(set(b.window_handles) - before) == 1 or "/twin-ops/" in b.current_url)
        opened = set(browser.window_handles) - before
        if opened:
            browser.switch_to.window(opened.pop())
        wait.until(lambda b: "/twin-ops/" in b.current_url)
        wait.until(lambda b: b.execute_script("return document.readyState") == "complete")

    open_link("evaluate", REPORT_LINK)
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(f"Evaluation · {AUTHOR}")
    plot = browser.find_element(By.CSS_SELECTOR, "img[alt=comparison]")
    wait.until(lambda b: b.execute_script("return arguments[0].complete", plot))
    assert browser.execute_script("return arguments[0].naturalWidth", plot) > 100  # the PNG loaded and decoded
    browser.save_screenshot(str(shots / "report.png"))

    browser.switch_to.window(browser.window_handles[0])
    open_link("validate_datasets", DATA_DOCS_LINK)
    assert "/twin-ops/data-docs/validations/raw_documents/" in browser.current_url
    text = browser.find_element(By.TAG_NAME, "body").text
    assert "raw_documents" in text and "Succeeded" in text, text[:2000]
    browser.save_screenshot(str(shots / "validation.png"))
    print(f"screenshots: {shots}")
