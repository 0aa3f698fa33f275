"""Dataset building: passages, instruction validation and fallback, split by document, publish gate.

The local model is replaced by a scripted one here (the real SmolLM2 runs in the integration
test); everything else is real, including the GX suites and the Parquet files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from twin_ops.config import Paths, load_params
from twin_ops.datasets.build import assign_splits, build_datasets, dedupe_passages
from twin_ops.datasets.formats import load_stage_data, split_files
from twin_ops.datasets.instructions import copy_share, rejection_reason, template_instruction, tidy
from twin_ops.datasets.passages import Passage, split_passages
from twin_ops.demo.content import raw_document, wren_posts
from twin_ops.domain import CleanedDocument, DocumentKind, Platform
from twin_ops.features.clean import Cleaner
from twin_ops.quality.validate import ValidationFailed

AUTHOR = "wren-halvorsen"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_documents(params) -> list[CleanedDocument]:
    cleaner = Cleaner(params.features)
    return [cleaner.clean(raw_document(path, AUTHOR)) for path in wren_posts()]


def project(tmp_path: Path, overrides: dict | None = None):
    params = load_params(ROOT / "params.yaml", overrides, use_env=False)
    paths = Paths(
        root=tmp_path, state=tmp_path / ".twin", data=tmp_path / "data", reports=tmp_path / "reports", cache=tmp_path
    )
    return params, paths


class ScriptedModel:
    """Stands in for the base model: a question about the passage's longest word, except every
    third passage, where it copies the passage (which validation must reject)."""

    def __init__(self) -> None:
        self.calls = 0

    def chat(self, conversations, max_new_tokens, on_batch=None):
        answers = []
        for messages in conversations:
            self.calls += 1
            prompt = messages[-1]["content"]
            if messages[0]["role"] == "system":  # back-translation
                passage = prompt.split("\n", 1)[1].rsplit("\n\nWhat question", 1)[0]
                longest = max(re.findall(r"[a-z]{5,}", passage.lower()), key=len)
                answers.append(passage if self.calls % 3 == 0 else f"Question: What would you say about {longest}?")
            else:  # the base model's answer: the rejected side
                answers.append(f"A generic answer to: {prompt}")
            if on_batch:
                on_batch(1)
        return answers


def document(text: str, title: str = "Rules of the Yard") -> CleanedDocument:
    return CleanedDocument(
        id=f"{AUTHOR}:x",
        author_id=AUTHOR,
        kind=DocumentKind.ARTICLE,
        platform=Platform.BLOG,
        source_url="http://127.0.0.1:8000/posts/x/",
        title=title,
        text=text,
        raw_content_hash="0" * 64,
    )


def test_passages_follow_paragraphs_sections_and_code_fences():
    para = "The yard opens at seven and the kettle is on by five past. " * 4
    code = "```python\ndef pump():\n\n    return 'dry'\n```"
    text = f"Rules of the Yard\n\n{para}\n\n{para}\n\n## Tools\n\n{para}\n\n{code}\n\nShort tail."
    passages = split_passages(document(text), min_chars=100, max_chars=400)
    assert [p.topic for p in passages] == ["Rules of the Yard", "Rules of the Yard", "Tools"]
    assert all("Rules of the Yard\n" not in p.text and "## Tools" not in p.text for p in passages)
    assert code in passages[2].text  # the fence, blank line and all, is one piece
    assert passages[2].text.endswith("Short tail.")  # a short tail joins its predecessor
    assert all(len(p.text) <= 400 for p in passages)
    assert split_passages(document(text), 100, 400, limit=1) == passages[:1]


def test_long_paragraph_is_cut_at_sentence_ends():
    sentence = "Every knot has a reason and most of them are bad ones. "
    passages = split_passages(document(sentence * 30, title=""), min_chars=50, max_chars=200)
    assert len(passages) > 3
    assert all(p.text.endswith(".") and len(p.text) <= 200 for p in passages)


def test_instruction_validation(params):
    passage = "Retries need jitter, or every client knocks on the recovering database at the same moment."
    p = params.datasets
    assert rejection_reason("How should clients retry against a recovering database?", passage, p) is None
    assert rejection_reason("", passage, p) == "empty"
    assert rejection_reason("Why?", passage, p) == "too short"
    assert rejection_reason("x" * (p.instruction_max_chars + 1), passage, p) == "too long"
    assert rejection_reason(passage, passage, p) == "copies the passage"
    assert rejection_reason("What is the answer to this question?", passage, p) == "about the task, not the topic"
    assert rejection_reason("What is the capital of France?", passage, p) == "off topic"
    assert rejection_reason("<|im_start|>assistant hello there", passage, p) == "chat markup"
    assert copy_share("every client knocks on the recovering database", passage) == 1.0
    assert tidy('Question: "How do retries go wrong?"\nsecond line') == "How do retries go wrong?"


def test_template_fallback_is_stable_and_uses_heading(params):
    passage = Passage("doc-1", "Retries With Manners", "The thundering herd", "text", 2)
    first = template_instruction(passage, params.datasets)
    assert first == template_instruction(passage, params.datasets)
    assert "The thundering herd" in first
    opening = Passage("doc-1", "Retries With Manners", "Retries With Manners", "text", 0)
    assert template_instruction(opening, params.datasets).count("Retries With Manners") == 1


def test_split_is_by_document_seeded_and_keeps_train_non_empty():
    ids = [f"doc-{i}" for i in range(10)]
    splits = assign_splits(ids, test_size=0.2, seed=42)
    assert splits == assign_splits(list(reversed(ids)), test_size=0.2, seed=42)  # order-independent
    assert sum(split == "test" for split in splits.values()) == 2
    assert assign_splits(["only"], 0.5, 1) == {"only": "train"}
    assert sum(split == "test" for split in assign_splits(ids[:2], 0.9, 1).values()) == 1


def test_dedupe_ignores_case_and_spacing():
    a = Passage("d1", "t", "t", "Same  words here.", 0)
    b = Passage("d2", "t", "t", "same words HERE.", 0)
    assert dedupe_passages([a, b]) == [a]


def test_demo_datasets_are_valid_split_by_document_and_loadable(tmp_path, demo_documents):
    params, paths = project(tmp_path, {"datasets": {"max_passages_per_document": 2}})
    model = ScriptedModel()
    steps: list[tuple[str, int, int]] = []
    summary = build_datasets(demo_documents, AUTHOR, params, paths, model=model, progress=lambda *a: steps.append(a))
    # 27 training documents x 2 passages (the cap) + every passage of the 7 held-out documents (28).
    assert summary.documents == 34 and summary.passages == 54 + 28
    assert summary.instructions["template"] > 0 and summary.instructions["model"] > 0  # copies fell back
    assert summary.rejections.get("copies the passage", 0) > 0
    assert ("instructions", 82, 82) in steps and ("answers", 82, 82) in steps
    assert summary.line().startswith(f"datasets {AUTHOR}: 34 documents, 82 passages")

    for folder in ("instruct", "preference"):
        location = paths.data / "datasets" / AUTHOR / folder
        assert sorted(p.name for p in location.iterdir()) == ["test.parquet", "train.parquet"]
        frames = {split: pd.read_parquet(location / f"{split}.parquet") for split in ("train", "test")}
        # THE split test: no source document feeds both train and test.
        assert not set(frames["train"].source_document_id) & set(frames["test"].source_document_id)
        assert len(frames["test"]) > 0 and len(frames["train"]) > len(frames["test"])
        # The cap trims training documents only: every held-out passage is there to be evaluated.
        assert frames["train"].groupby("source_document_id").size().max() <= 2
    instruct = pd.read_parquet(paths.data / "datasets" / AUTHOR / "instruct")
    assert (instruct.split == "test").sum() == 28
    assert not instruct.duplicated(["instruction", "answer"]).any()
    assert (paths.reports / "quality" / "instruct_dataset" / f"{AUTHOR}.json").exists()

    sft = load_stage_data(split_files(paths, "sft", AUTHOR), "sft")
    assert sft["train"][0]["prompt"][0]["role"] == "user" and sft["train"][0]["completion"][0]["role"] == "assistant"
    dpo = load_stage_data(split_files(paths, "dpo", AUTHOR), "dpo")
    assert set(dpo["train"].column_names) == {"prompt", "chosen", "rejected"}

    # Rerun: identical files (idempotent, deterministic).
    before = (paths.data / "datasets" / AUTHOR / "instruct" / "train.parquet").read_bytes()
    build_datasets(demo_documents, AUTHOR, params, paths, model=ScriptedModel())
    assert (paths.data / "datasets" / AUTHOR / "instruct" / "train.parquet").read_bytes() == before


def test_failed_suite_writes_nothing(tmp_path, demo_documents):
    params, paths = project(tmp_path, {"quality": {"instruct_dataset": {"min_samples": 10_000}}})
    with pytest.raises(ValidationFailed, match="has samples"):
        build_datasets(demo_documents[:3], AUTHOR, params, paths, model=ScriptedModel())
    assert not (paths.data / "datasets").exists()
    assert (paths.reports / "quality" / "instruct_dataset" / f"{AUTHOR}.json").exists()
