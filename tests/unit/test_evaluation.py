"""Evaluation pieces on their own: stylometry, grounding overlap, the judge protocol (against a
local OpenAI-compatible stub), and loss/generation with a tiny local model. The gate, the bootstrap
and the repetition measures: test_evaluation_gate.py."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from twin_ops.config import JudgeParams, Settings
from twin_ops.evaluation import grounding, stylometry
from twin_ops.evaluation.judge import JudgeFailed, JudgeSettings, judge, parse_verdict
from twin_ops.rag import Passage

AUTHOR = [
    "I launch an hour before the tide turns. The river is kinder then, and so am I.",
    "We check the lines twice. Then we check them again, because the yard is not forgiving.",
    "The dinghy waits by the slip. I row out slowly and I do not hurry the water.",
    "Every spring we paint the hull. It takes a week, and the smell stays for a month.",
    "I keep the oars in the shed. When the wind is up, we do not go out, and I make tea instead.",
    "The yard has one rule: you tie it, you check it. I learned that the hard way, in the rain.",
]
# Unseen text in the author's manner, and someone else's (formal, impersonal) on purpose.
OWN = (
    "We go out at dawn. I check the knots, and then I check them again, because the river is not kind to "
    "the careless. The hull is wet and we do not hurry."
)
OTHER = (
    "Quarterly revenue metrics indicate substantial year-over-year growth across all operating segments. "
    "Management anticipates continued expansion, contingent upon favourable macroeconomic conditions."
)


# --- stylometry and grounding -------------------------------------------------------------------


def test_author_text_is_closer_to_the_author_than_other_writing():
    reference = stylometry.style_reference(AUTHOR, top_words=20, window=10)
    own = stylometry.style_metrics(reference, [OWN])
    other = stylometry.style_metrics(reference, [OTHER])
    assert own["burrows_delta"] < other["burrows_delta"]
    assert own["function_word_distance"] < other["function_word_distance"]
    assert stylometry.sentences("One. Two words! Three words here?") == ["One.", "Two words!", "Three words here?"]
    assert stylometry.mean_sentence_length(["One. Two words! Three words here?"]) == 2.0
    assert stylometry.mattr(["a", "a", "a", "a"], window=2) == 0.5 and stylometry.mattr([], 5) == 0.0
    empty = stylometry.style_metrics(reference, [""])
    assert empty["function_word_distance"] == 1.0 and empty["ttr"] == 0.0
    with pytest.raises(ValueError, match="at least two training passages"):
        stylometry.style_reference(AUTHOR[:1], 20, 10)


def test_overlap_and_citations():
    assert grounding.rouge_l_f1("the tide turns late", "the tide turns late") == 1.0
    assert grounding.rouge_l_f1("late turns tide the", "the tide turns late") == pytest.approx(0.25)
    assert grounding.rouge_l_f1("", "the tide") == 0.0
    passages = [Passage("c1", "a", "Launching at Dawn", "u", "The tide turns at six.", 1.0, "d1")]
    assert grounding.context_overlap("tide turns", passages) == 1.0
    assert grounding.context_overlap("quarterly revenue", passages) == 0.0
    assert grounding.cites("As I wrote [1], go early.", passages)
    assert grounding.cites("See launching at dawn.", passages)
    assert not grounding.cites("As I wrote [2], go early.", passages)
    scores = grounding.grounding_scores(["tide turns [1]", "quarterly"], ["the tide turns", "x"], [passages] * 2)
    assert scores["citation_rate"] == [1.0, 0.0] and scores["context_overlap"] == [1.0, 0.0]
    assert set(grounding.grounding_scores(["x"], ["y"], None)) == {"reference_overlap"}


def test_retrieval_is_skipped_with_a_note_when_weaviate_is_not_there(params):
    unreachable = Settings(weaviate_url="http://127.0.0.1:9")  # nothing listens on the discard port
    found, note = grounding.retrieve(params, unreachable, "wren-halvorsen", [], embedder=None)
    assert found is None and "Weaviate is not running" in note
    off = params.model_copy(update={"evaluation": params.evaluation.model_copy(update={"retrieval": False})})
    assert grounding.retrieve(off, unreachable, "wren-halvorsen", [], embedder=None)[1].startswith("retrieval off")


# --- the judge ----------------------------------------------------------------------------------


class _Stub(BaseHTTPRequestHandler):
    reply = ""
    prompts: ClassVar[list[str]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).prompts.append(body["messages"][0]["content"])
        payload = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": type(self).reply}}
            ],
        }
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def judge_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_judge_scores_accuracy_and_style(judge_server):
    config = JudgeParams(enabled=True, model="judge", temperature=0, max_tokens=50, timeout_s=5, max_retries=0)
    _Stub.reply = 'Sure: {"accuracy": {"analysis": "ok", "score": 3}, "style": {"analysis": "meh", "score": 2}}'
    _Stub.prompts = []
    scores = judge(config, ["q1", "q2"], ["ref1", "ref2"], ["a1", "a2"], JudgeSettings(judge_base_url=judge_server))
    assert scores == {"judge_accuracy": [3.0, 3.0], "judge_style": [2.0, 2.0]}  # one score per answer
    assert "Instruction: q2" in _Stub.prompts[1] and "Answer to evaluate: a2" in _Stub.prompts[1]
    _Stub.reply = '{"accuracy": {"score": 5}, "style": {"score": 1}}'  # off the 1-3 scale
    with pytest.raises(JudgeFailed, match="not valid"):
        judge(config, ["q"], ["r"], ["a"], JudgeSettings(judge_base_url=judge_server))
    with pytest.raises(JudgeFailed, match="JUDGE_BASE_URL is not set"):
        judge(config, ["q"], ["r"], ["a"], JudgeSettings(judge_base_url=None))
    with pytest.raises(JudgeFailed, match="no JSON"):
        parse_verdict("I refuse.")


# --- loss and generation with a tiny local model ------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_model):
    from twin_ops import llm

    return llm.load(
        llm.ModelSource("base:tiny", str(tiny_model)), "cpu", llm.GenerationDefaults(repetition_penalty=1.1)
    )


def test_loss_covers_the_answer_tokens_only(tiny):
    from twin_ops.evaluation import lm

    tokenizer = tiny.tokenizer
    ids, start = lm.answer_ids(tiny, "When do you launch?", "An hour before the tide.", max_length=512)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "When do you launch?"}], tokenize=False, add_generation_prompt=True
    )
    assert tokenizer.decode(ids[:start]) == prompt and "An hour before the tide." in tokenizer.decode(ids[start:])
    pairs = [("When do you launch?", "An hour before the tide."), ("Where?", "By the slip, always.")]
    totals, counts = lm.answer_nll(tiny, pairs, 512)
    assert counts[0] == len(ids) - start and totals.min() > 0 and counts.min() > 0  # one row per sample
    loss = lm.token_loss(tiny, pairs, 512)
    metrics = loss.metrics(np.arange(2))
    assert metrics["loss"] == pytest.approx(totals.sum() / counts.sum())
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    with pytest.raises(ValueError, match="no answer token fits"):
        lm.token_loss(tiny, [("When do you launch?", "An hour.")], max_length=start)


def test_generation_is_greedy_and_batched(tiny):
    conversations = [[("user", q)] for q in ("When?", "Where do you keep the dinghy?", "Why?")]
    batched = tiny.chat(conversations, max_new_tokens=6, batch_size=3)
    single = tiny.chat(conversations, max_new_tokens=6, batch_size=1)
    assert len(batched) == 3 and batched == single  # left padding changes nothing; greedy repeats itself


def test_a_version_without_files_is_a_clear_error(tmp_path):
    from datetime import UTC, datetime

    from twin_ops.domain import ModelVersion
    from twin_ops.evaluation.lm import from_version
    from twin_ops.llm import ModelMissing

    gone = ModelVersion(name="t", version=1, base_model="b", merged_path=Path("nowhere"), created_at=datetime.now(UTC))
    with pytest.raises(ModelMissing, match="t:v1: neither its merged model"):
        from_version("candidate", gone, tmp_path, tmp_path)
