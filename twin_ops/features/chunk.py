"""Chunking: cleaned documents → chunks sized in the embedding model's own tokens.

Articles and posts are packed from paragraphs (a fenced code block counts as one paragraph);
a paragraph over budget is split into sentences, a sentence over budget into token windows.
Consecutive chunks share up to ``overlap_tokens`` of trailing text so an idea cut at a boundary
is still retrievable. Source files split at top-level definitions (Python) or headings (Markdown).
Chunk ids hash the document id, position and text, so re-running gives the same ids.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import PurePosixPath

from twin_ops.config import ChunkingBudget, ChunkingParams
from twin_ops.domain import Chunk, CleanedDocument, DocumentKind

CountTokens = Callable[[str], int]
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
PY_BOUNDARY = re.compile(r"^(def |class |async def |@)")
MD_BOUNDARY = re.compile(r"^#{1,6} ")


def chunk_id(document_id: str, position: int, text: str) -> str:
    return hashlib.sha256(f"{document_id}\x00{position}\x00{text}".encode()).hexdigest()[:32]


def paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks; a fenced code block stays one block even with blank lines."""
    blocks: list[str] = []
    current: list[str] = []
    in_code = False
    for line in text.split("\n"):
        if line.strip().startswith(("```", "~~~")):
            in_code = not in_code
        if not line.strip() and not in_code:
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def code_units(text: str, path: str) -> list[str]:
    """Top-level sections of a source file: definitions in Python, headed sections in Markdown."""
    suffix = PurePosixPath(path).suffix.lower()
    if suffix == ".py":
        boundary = PY_BOUNDARY
    elif suffix in (".md", ".markdown", ".rst"):
        boundary = MD_BOUNDARY
    else:
        return paragraphs(text)
    units: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        # A decorator line starts a unit only when the previous line is not a decorator.
        starts = boundary.match(line) and not (current and current[-1].startswith("@"))
        if starts and any(previous.strip() for previous in current):
            units.append("\n".join(current).strip("\n"))
            current = []
        current.append(line)
    if any(line.strip() for line in current):
        units.append("\n".join(current).strip("\n"))
    return units


class Chunker:
    def __init__(self, params: ChunkingParams, count_tokens: CountTokens, split_tokens) -> None:
        """``split_tokens(text, n)`` cuts a text into pieces of at most n tokens (tokenizer-aware)."""
        self.params = params
        self.count = count_tokens
        self.split_tokens = split_tokens

    def budget(self, kind: DocumentKind) -> ChunkingBudget:
        return getattr(self.params, kind.value)

    def fit(self, unit: str, max_tokens: int) -> list[str]:
        """A unit cut down until every piece fits the budget."""
        if self.count(unit) <= max_tokens:
            return [unit]
        sentences = SENTENCE_END.split(unit) if not unit.lstrip().startswith("```") else unit.split("\n")
        if len(sentences) > 1:
            joiner = " " if not unit.lstrip().startswith("```") else "\n"
            return self.pack(sentences, max_tokens, 0, joiner)
        return self.split_tokens(unit, max_tokens)

    def tail(self, pieces: list[str], overlap_tokens: int) -> tuple[list[str], int]:
        """Trailing text of a finished chunk to repeat in the next: whole pieces, then sentences."""
        carried: list[str] = []
        used = 0
        for previous in reversed(pieces):
            size = self.count(previous)
            if used + size <= overlap_tokens:
                carried.insert(0, previous)
                used += size
                continue
            if not previous.lstrip().startswith("```"):  # never carry half a code block
                sentences: list[str] = []
                for sentence in reversed(SENTENCE_END.split(previous)):
                    sentence_size = self.count(sentence)
                    if used + sentence_size > overlap_tokens:
                        break
                    sentences.insert(0, sentence)
                    used += sentence_size
                if sentences:
                    carried.insert(0, " ".join(sentences))
            break
        return carried, used

    def pack(self, units: list[str], max_tokens: int, overlap_tokens: int, joiner: str = "\n\n") -> list[str]:
        pieces = [piece for unit in units for piece in self.fit(unit, max_tokens)]
        chunks: list[str] = []
        current: list[str] = []
        used = 0
        for piece in pieces:
            size = self.count(piece)
            if current and used + size > max_tokens:
                chunks.append(joiner.join(current))
                current, used = self.tail(current, overlap_tokens)
                if used + size > max_tokens:  # no room for the overlap beside this piece
                    current, used = [], 0
            current.append(piece)
            used += size
        if current:
            chunks.append(joiner.join(current))
        return chunks

    def chunk(self, document: CleanedDocument) -> list[Chunk]:
        budget = self.budget(document.kind)
        if document.kind == DocumentKind.REPOSITORY:
            units = code_units(document.text, document.title or document.source_url)
        else:
            units = paragraphs(document.text)
        texts = self.pack(units, budget.max_tokens, budget.overlap_tokens)
        return [
            Chunk(
                id=chunk_id(document.id, position, text),
                document_id=document.id,
                author_id=document.author_id,
                kind=document.kind,
                platform=document.platform,
                position=position,
                text=text,
                token_count=max(1, self.count(text)),
                source_url=document.source_url,
                title=document.title,
            )
            for position, text in enumerate(texts)
            if text.strip()
        ]
