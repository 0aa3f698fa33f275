"""The chat page in a real browser (headless chromium + selenium) against the real Ray Serve app:
enter the API key, pick the twin, ask, watch the answer stream in with its sources, ask a follow-up
(retrieved with the conversation), rate the answer. A screenshot of the page is kept under
reports/chat/.

One app for the module (a tiny random model: mechanics, not quality; the demo authors indexed into
this run's aliases). It starts a local Ray: run under `flock /tmp/twin-ray.lock`.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import BIN, ROOT
from tests.integration.test_serving_app import tiny_registry, twin
from tests.support.services import local_app
from twin_ops.demo.content import demo_conversations, read_post

API_KEY = "browser-key-" + uuid.uuid4().hex[:8]
MAX_TOKENS = 12
WAIT_S = 240


@pytest.fixture(scope="module")
def app(params, paths, demo_index, tiny_model):
    from twin_ops.config import load_params

    index_overrides, _ = demo_index
    overrides = {**index_overrides, "serving": {"generation": {"default_max_tokens": MAX_TOKENS}}}
    served = load_params(paths.root / "params.yaml", overrides)
    models = tiny_registry(served, tiny_model, Path(tempfile.mkdtemp(prefix="twin-chat-")))
    with local_app(served, paths, overrides, models, API_KEY) as url:
        yield url, served


@pytest.fixture(scope="module")
def browser():
    from twin_ops.services.browser import ensure_chromium, headless_driver

    driver = headless_driver(ensure_chromium(), width=1100, height=1400)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(lambda d: condition(d), message=what)


# Records every text the newest answer shows while it streams (a MutationObserver in the page).
WATCH_STREAM = """
window.__shown = [];
const list = document.getElementById('conversation');
new MutationObserver(() => {
  const answers = list.querySelectorAll('.message.assistant .text');
  const last = answers[answers.length - 1];
  if (last && last.textContent && window.__shown[window.__shown.length - 1] !== last.textContent) {
    window.__shown.push(last.textContent);
  }
}).observe(list, {subtree: true, childList: true, characterData: true});
"""


def ask(driver, text: str) -> object:
    """Type a message, press Enter, wait for the answer to finish (its rating form appears)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    before = len(driver.find_elements(By.CSS_SELECTOR, ".message.assistant"))
    driver.execute_script(WATCH_STREAM)
    box = driver.find_element(By.ID, "message")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)

    def answered(d):
        answers = d.find_elements(By.CSS_SELECTOR, ".message.assistant")
        if len(answers) <= before:
            return False
        answer = answers[-1]
        if "error" in answer.get_attribute("class"):
            raise AssertionError(f"the page shows an error: {answer.text}")
        return answer if answer.find_elements(By.CSS_SELECTOR, "form.feedback") else False

    return wait(driver, answered, f"an answer to {text!r}")


def test_chat_in_the_browser(app, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url = app[0]
    conversation = next(c for c in demo_conversations() if c.article == "rot-under-the-mast-step")
    title = read_post(ROOT / "include/demo_site/content/posts" / f"{conversation.article}.md")[0]["title"]

    browser.get(f"{url}/")  # redirects to /chat; the page itself needs no key
    assert browser.current_url.endswith("/chat")
    wait(browser, lambda d: d.find_element(By.ID, "key-form").is_displayed(), "the key prompt (a 401)")
    assert not Select(browser.find_element(By.ID, "twin")).options  # nothing listed without the key
    browser.find_element(By.ID, "api-key").send_keys(API_KEY + "\n")
    wait(browser, lambda d: len(Select(d.find_element(By.ID, "twin")).options) == 2, "the twins listed")
    assert not browser.find_element(By.ID, "key-form").is_displayed()
    Select(browser.find_element(By.ID, "twin")).select_by_value(twin("wren-halvorsen"))
    assert API_KEY not in browser.current_url

    first = ask(browser, conversation.first)
    shown = browser.execute_script("return window.__shown")
    assert len(shown) >= 2 and shown[-1].startswith(shown[0]), f"the answer did not stream: {shown}"
    links = first.find_elements(By.CSS_SELECTOR, ".sources a")
    assert links and title in [link.text for link in links]
    assert all(link.get_attribute("href").startswith("http://127.0.0.1:8000/posts/") for link in links)

    # The follow-up alone would not find the article (benchmarks/conversation.py): with the
    # conversation's earlier turn it does.
    second = ask(browser, conversation.follow_up)
    assert title in [link.text for link in second.find_elements(By.CSS_SELECTOR, ".sources a")]
    assert len(browser.find_elements(By.CSS_SELECTOR, ".message.user")) == 2

    # Rate the follow-up's answer, with what the author would have said.
    second.find_element(By.CSS_SELECTOR, ".rate[data-rating='down']").click()
    assert second.find_element(By.CSS_SELECTOR, ".rate[data-rating='down']").get_attribute("aria-pressed") == "true"
    correction = "Rot hides where the load is: watch the places that carry weight, not the ones easy to see."
    second.find_element(By.CSS_SELECTOR, ".correction").send_keys(correction)
    second.find_element(By.CSS_SELECTOR, ".send-feedback").click()
    note = wait(
        browser,
        lambda d: (
            (text := second.find_element(By.CSS_SELECTOR, ".feedback-status").text) not in {"", "Sending…"}
            and "Rated" not in text
            and text
        ),
        "the feedback's outcome",
    )
    completion_id = browser.execute_script(
        "const a = document.querySelectorAll('.message.assistant'); return a[a.length - 1].dataset.completionId"
    )
    assert completion_id.startswith("chatcmpl-")

    screenshot = ROOT / "reports" / "chat" / f"chat-{time.strftime('%Y%m%d-%H%M%S')}.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(screenshot))
    print(f"\nscreenshot of the chat page: {screenshot}")

    assert note.startswith("Thank you"), note  # the feedback was stored with the answer's trace
    shown = subprocess.run(
        [str(BIN / "twin-ops"), "traces", "show", completion_id],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert "down" in shown.stdout and correction[:40] in shown.stdout, shown.stdout
