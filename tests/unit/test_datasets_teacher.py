"""The optional teacher against a fake OpenAI-compatible server: retries, schema, cache, rate limit."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from twin_ops.config import Paths, Settings, load_params
from twin_ops.datasets.passages import Passage
from twin_ops.datasets.teacher import Teacher, TeacherUnavailable

ROOT = Path(__file__).resolve().parents[2]


class FakeEndpoint(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions from a script: "500" fails once, "bad" is not JSON."""

    requests: ClassVar[list[dict]] = []
    failures_left: ClassVar[int] = 0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.send_response(500)
            self.end_headers()
            return
        passage = body["messages"][-1]["content"].split("\n", 1)[1].rsplit("\n\nWhat question", 1)[0]
        topic = max(re.findall(r"[a-z]{5,}", passage.lower()), key=len)  # a question about the passage
        content = "not json" if "GARBLED" in passage else json.dumps({"instruction": f"How would you explain {topic}?"})
        payload = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def endpoint():
    FakeEndpoint.requests = []
    FakeEndpoint.failures_left = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def teacher_params(rpm: float = 6000):
    params = load_params(ROOT / "params.yaml", {"datasets": {"teacher": {"requests_per_minute": rpm}}}, use_env=False)
    return params.datasets.teacher


def passage(text: str = "Splicing is patience: unlay the strands, tuck each one, and roll it smooth.") -> Passage:
    return Passage("doc-1", "Learning to Splice", "Learning to Splice", text, 0)


def test_retries_then_caches(endpoint, tmp_path):
    FakeEndpoint.failures_left = 1  # one 500 first: retried, not fatal
    teacher = Teacher(teacher_params(), endpoint, "key", tmp_path)
    assert teacher.instruction_for(passage()) == "How would you explain splicing?"
    assert len(FakeEndpoint.requests) == 2 and teacher.requests == 2
    request = FakeEndpoint.requests[-1]
    assert request["response_format"]["type"] == "json_schema"
    assert request["model"] == "gpt-4o-mini"

    rerun = Teacher(teacher_params(), endpoint, "key", tmp_path)
    assert rerun.instruction_for(passage()) == "How would you explain splicing?"
    assert len(FakeEndpoint.requests) == 2 and rerun.cache_hits == 1  # the rerun paid nothing


def test_reply_outside_the_schema_is_none(endpoint, tmp_path):
    teacher = Teacher(teacher_params(), endpoint, None, tmp_path)
    assert teacher.instruction_for(passage("GARBLED passage about knots and rope work.")) is None


def test_rate_limit_spaces_requests(endpoint, tmp_path):
    teacher = Teacher(teacher_params(rpm=120), endpoint, None, tmp_path)  # one every 0.5 s
    started = time.monotonic()
    for i in range(3):
        teacher.instruction_for(passage(f"Passage {i} about splicing rope."))
    assert time.monotonic() - started >= 1.0


def test_no_endpoint_is_a_clear_error(tmp_path):
    with pytest.raises(TeacherUnavailable, match="TEACHER_BASE_URL"):
        Teacher(teacher_params(), None, None, tmp_path)


def test_dataset_stage_uses_the_teacher(endpoint, tmp_path, params):
    from twin_ops.datasets.build import build_datasets
    from twin_ops.demo.content import raw_document, wren_posts
    from twin_ops.features.clean import Cleaner

    overrides = {"datasets": {"instruction_source": "teacher", "max_passages_per_document": 1}}
    run_params = load_params(ROOT / "params.yaml", overrides, use_env=False)
    paths = Paths(root=tmp_path, state=tmp_path, data=tmp_path / "data", reports=tmp_path / "reports", cache=tmp_path)
    cleaner = Cleaner(params.features)
    documents = [cleaner.clean(raw_document(path, "wren-halvorsen")) for path in wren_posts()[:4]]

    class Answers:
        def chat(self, conversations, max_new_tokens, on_batch=None):
            return ["I would rather not say." for _ in conversations]

    settings = Settings(teacher_base_url=endpoint, teacher_api_key="key")
    summary = build_datasets(documents, "wren-halvorsen", run_params, paths, settings, model=Answers())
    # One passage per training document (the cap), every passage of a held-out one: all from the teacher.
    assert summary.passages >= 4 and summary.instructions == {"teacher": summary.passages}
    assert len(FakeEndpoint.requests) == summary.passages
