"""Retrieval-grounded answers: the passages a served twin would see, and how an answer uses them.

Retrieval is twin_ops.rag's, the served twin's own path (same search, author filter, k and
fusion), with one difference: the held-out answer's own document is never retrieved (it would
leak the answer). It runs only against a Weaviate that is already up (``twin-ops services up`` or
WEAVIATE_URL); evaluation never starts one. Without it, prompts carry no context and the context
metrics are skipped with a note in the report.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence

from rouge_score import rouge_scorer

from twin_ops.config import Params, Settings
from twin_ops.evaluation.samples import Sample
from twin_ops.evaluation.stylometry import FUNCTION_WORDS, words
from twin_ops.llm import LoadedModel
from twin_ops.rag import Passage, Prompt, Retriever, build_prompt

log = logging.getLogger(__name__)
CITATION = re.compile(r"\[(\d+)\]")
Expand = Callable[[str, int], list[str]]
_ROUGE = rouge_scorer.RougeScorer(["rougeL"])


def rouge_l_f1(candidate: str, reference: str) -> float:
    """ROUGE-L F1 (longest common subsequence of lower-cased word tokens), by rouge-score."""
    return float(_ROUGE.score(reference, candidate)["rougeL"].fmeasure)


def content_words(text: str) -> list[str]:
    stop = set(FUNCTION_WORDS)
    return [token for token in words(text) if token not in stop and len(token) > 2]


def context_overlap(answer: str, passages: Sequence[Passage]) -> float:
    """Share of the answer's content words that occur in the retrieved passages."""
    tokens = content_words(answer)
    if not tokens:
        return 0.0
    available = {token for passage in passages for token in content_words(passage.title + " " + passage.text)}
    return sum(token in available for token in tokens) / len(tokens)


def cites(answer: str, passages: Sequence[Passage]) -> bool:
    """The answer names a passage: a [n] marker for one of them, or a passage's title."""
    if any(1 <= int(number) <= len(passages) for number in CITATION.findall(answer)):
        return True
    lowered = answer.lower()
    return any(len(p.title) > 3 and p.title.lower() in lowered for p in passages)


def weaviate_reachable(params: Params, settings: Settings) -> bool:
    from twin_ops.services import weaviate as weaviate_service

    if settings.weaviate_url:
        return weaviate_service.is_ready(settings.weaviate_url)
    return weaviate_service.is_running(params)


def retrieve(
    params: Params,
    settings: Settings,
    author_id: str,
    samples: Sequence[Sample],
    embedder,
    expand: Expand | None = None,
) -> tuple[dict[str, list[Passage]] | None, str]:
    """Passages per sample id through the served twin's RAG path, or None and why it was skipped.

    ``expand`` writes query rephrasings (the contender's model) when ``rag.query_expansions`` is on.
    """
    if not params.evaluation.retrieval:
        return None, "retrieval off (evaluation.retrieval: false): context metrics skipped"
    if not weaviate_reachable(params, settings):
        return None, "Weaviate is not running (`twin-ops services up`): context metrics skipped"
    if params.rag.query_expansions and expand is None:
        raise ValueError("rag.query_expansions is on: retrieval needs the contender's model to expand queries")

    async def embed(texts: list[str]) -> list[list[float]]:
        return embedder.encode(texts).tolist()

    async def rephrase(question: str, n: int) -> list[str]:
        return expand(question, n) if expand else []

    retriever = Retriever(params, [], settings)
    exclude = params.evaluation.exclude_source_document
    found: dict[str, list[Passage]] = {}
    try:
        for sample in samples:
            retrieval = asyncio.run(
                retriever.retrieve(
                    sample.instruction,
                    author_id,
                    None,
                    embed,
                    rephrase,
                    exclude_document=sample.source_document_id if exclude else None,
                )
            )
            found[sample.id] = list(retrieval.passages)
    except Exception as exc:  # a missing collection or a dropped server: evaluate without context
        return None, f"retrieval failed ({type(exc).__name__}: {exc}): context metrics skipped"
    finally:
        retriever.close()
    if not any(found.values()):
        return None, f"retrieval found no passages of {author_id} (features not indexed?): context metrics skipped"
    return found, f"retrieval: {sum(map(len, found.values()))} passages for {len(found)} samples from Weaviate"


def grounded_prompt(model: LoadedModel, params: Params, sample: Sample, passages: Sequence[Passage] | None) -> Prompt:
    """The token ids a served twin would be fed for this sample's question: twin_ops.rag's prompt
    builder, the served model's chat template, ``rag.context_token_budget``."""
    messages = [("user", sample.instruction)]
    return build_prompt(model, messages, passages or (), params.rag, params.evaluation.max_new_tokens)


def grounding_scores(
    answers: Sequence[str], references: Sequence[str], passages: Sequence[Sequence[Passage]] | None
) -> dict[str, list[float]]:
    """Per sample: ROUGE-L against the held-out answer; with retrieved passages, context overlap and
    whether the answer cites one (1.0 / 0.0: their mean is the citation rate)."""
    scores = {"reference_overlap": list(map(rouge_l_f1, answers, references))}
    if passages is not None:
        scores["context_overlap"] = list(map(context_overlap, answers, passages))
        scores["citation_rate"] = [float(cites(answer, found)) for answer, found in zip(answers, passages, strict=True)]
    return scores
