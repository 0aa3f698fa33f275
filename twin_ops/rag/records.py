"""What retrieval returns and what a prompt is. Plain frozen dataclasses: cheap to pickle between
Ray processes, no validation on the hot path (requests are validated at the API's edge)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk, in rank order."""

    chunk_id: str
    author_id: str
    title: str
    url: str
    text: str
    score: float
    document_id: str = ""


@dataclass(frozen=True)
class Retrieval:
    author: str | None  # the author the search was filtered to (None = all authors)
    author_source: str  # "request", "query" (self-query found it) or "default"
    queries: tuple[str, ...]  # the question plus its expansions
    passages: tuple[Passage, ...]


@dataclass(frozen=True)
class Prompt:
    """A chat rendered for one model: the exact token ids it is fed."""

    input_ids: tuple[int, ...]
    context_used: int  # how many passages fitted the token budget (the answer's sources)
