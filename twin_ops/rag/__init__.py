"""The one retrieval and prompt path: what the served twin sees is what the gate scores.

* ``retrieve`` — hybrid search over the features index with the author filter, self-query,
  query expansion, score fusion or a cross-encoder rerank (``Retriever``).
* ``prompt`` — the token-budgeted context block and the prompt template, rendered with the
  model's chat template into the exact token ids the model is fed (``build_prompt``).

Serving's Retriever and Generator deployments and evaluation's grounded generations both call
these, with the same ``params.rag`` keys. Records it returns (passages, retrievals, prompts) live in
``records``.
"""

from __future__ import annotations

from twin_ops.rag.prompt import build_prompt, context_block
from twin_ops.rag.records import Passage, Prompt, Retrieval
from twin_ops.rag.retrieve import KnownAuthor, Retriever, detect_author, fuse, known_authors

__all__ = [
    "KnownAuthor",
    "Passage",
    "Prompt",
    "Retrieval",
    "Retriever",
    "build_prompt",
    "context_block",
    "detect_author",
    "fuse",
    "known_authors",
]
