"""Retrieval-grounded answers: the passages a served twin would see, and how an answer uses them.

Retrieval runs only against a Weaviate that is already up (``twin-ops services up`` or
WEAVIATE_URL); evaluation never starts one. Without it, prompts carry no context and the context
metrics are skipped with a note in the report.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twin_ops.config import Params, Settings
from twin_ops.evaluation.samples import Sample
from twin_ops.evaluation.stylometry import FUNCTION_WORDS, words

Log = Callable[[str], None]
CITATION = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True)
class Passage:
    title: str
    url: str
    text: str
    document_id: str


def rouge_l_f1(candidate: str, reference: str) -> float:
    """ROUGE-L F1 on lower-cased words (longest common subsequence)."""
    a, b = words(candidate), words(reference)
    if not a or not b:
        return 0.0
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(a), lcs / len(b)
    return 2 * precision * recall / (precision + recall)


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


def context_block(passages: Sequence[Passage], max_chars: int) -> str:
    """Numbered passages, as the serving prompt has them, cut to ``max_chars`` in rank order."""
    parts, left = [], max_chars
    for number, passage in enumerate(passages, start=1):
        block = f"[{number}] {passage.title}\n{passage.text}"
        if len(block) > left:
            if left > 100:
                parts.append(block[:left])
            break
        parts.append(block)
        left -= len(block) + 2
    return "\n\n".join(parts)


def weaviate_reachable(params: Params, settings: Settings) -> bool:
    from twin_ops.services import weaviate as weaviate_service

    if settings.weaviate_url:
        return weaviate_service.is_ready(settings.weaviate_url)
    return weaviate_service.is_running(params)


def retrieve(
    params: Params, settings: Settings, author_id: str, samples: Sequence[Sample], embedder, log: Log = print
) -> tuple[dict[str, list[Passage]] | None, str]:
    """Passages per sample id, or None and the reason retrieval was skipped."""
    evaluation = params.evaluation
    if not evaluation.retrieval:
        return None, "retrieval off (evaluation.retrieval: false): context metrics skipped"
    if not weaviate_reachable(params, settings):
        return None, "Weaviate is not running (`twin-ops services up`): context metrics skipped"
    from twin_ops.features.search import search
    from twin_ops.services.weaviate import connect

    # Ask for more than k: the held-out answer's own document is dropped (it would leak the answer).
    fetch = min(params.features.search.max_k, evaluation.retrieval_k * 3)
    found: dict[str, list[Passage]] = {}
    try:
        with connect(params, settings) as client:
            for sample in samples:
                hits = search(client, embedder, params.features, sample.instruction, author_id, k=fetch)
                passages = [
                    Passage(hit.title, hit.url, hit.text, hit.document_id)
                    for hit in hits
                    if not (evaluation.exclude_source_document and hit.document_id == sample.source_document_id)
                ]
                found[sample.id] = passages[: evaluation.retrieval_k]
    except Exception as exc:  # a missing collection or a dropped server: evaluate without context
        return None, f"retrieval failed ({type(exc).__name__}: {exc}): context metrics skipped"
    if not any(found.values()):
        return None, f"retrieval found no passages of {author_id} (features not indexed?): context metrics skipped"
    return found, f"retrieval: {sum(map(len, found.values()))} passages for {len(found)} samples from Weaviate"


def grounded_prompt(params: Params, sample: Sample, passages: Sequence[Passage] | None) -> list[dict[str, str]]:
    """The user turn a served twin would get: the serving prompt template with context, else the bare instruction."""
    if not passages:
        return [{"role": "user", "content": sample.instruction}]
    context = context_block(passages, params.evaluation.context_max_chars)
    content = params.serving.generation.prompt_template.format(context=context, question=sample.instruction)
    return [{"role": "user", "content": content}]


def grounding_metrics(
    answers: Sequence[str], references: Sequence[str], passages: Sequence[Sequence[Passage]] | None
) -> dict[str, float]:
    metrics = {"reference_overlap": sum(map(rouge_l_f1, answers, references)) / len(answers)}
    if passages is not None:
        metrics["context_overlap"] = sum(map(context_overlap, answers, passages)) / len(answers)
        metrics["citation_rate"] = sum(map(cites, answers, passages)) / len(answers)
    return metrics
