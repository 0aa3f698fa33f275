"""Cut a cleaned document into passages: the answers the twin learns to write.

A passage is a run of whole paragraphs from one section, at most ``passage_max_chars`` long;
a fenced code block is never cut, and a prose paragraph longer than the budget is cut at sentence
ends. Each passage remembers its document's title and its section heading, which the fallback
instruction templates use. Headings themselves are not part of the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from twin_ops.domain import CleanedDocument

FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Passage:
    document_id: str
    title: str
    topic: str  # the section heading, or the title before the first heading
    text: str
    position: int  # index among the document's passages


def _blocks(text: str) -> list[str]:
    """Paragraphs (blank-line separated); a fenced code block stays one block, blank lines and all."""
    blocks: list[str] = []
    current: list[str] = []
    in_code = False
    for line in text.split("\n"):
        if FENCE.match(line.strip()):
            in_code = not in_code
            current.append(line)
        elif in_code or line.strip():
            current.append(line)
        elif current:
            blocks.append("\n".join(current))
            current = []
    if current:
        blocks.append("\n".join(current))
    return blocks


def _fit(block: str, max_chars: int) -> list[str]:
    """A prose block over the budget, cut at sentence ends; code blocks are atomic."""
    if len(block) <= max_chars or FENCE.match(block.strip()):
        return [block]
    pieces: list[str] = []
    current = ""
    for sentence in SENTENCE_END.split(block):
        if current and len(current) + 1 + len(sentence) > max_chars:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}" if current else sentence
    if current:
        pieces.append(current)
    return pieces


def _pack(blocks: list[str], min_chars: int, max_chars: int) -> list[str]:
    """Greedy runs of whole blocks up to max_chars; a short tail joins its predecessor or goes."""
    runs: list[list[str]] = []
    for piece in (piece for block in blocks for piece in _fit(block, max_chars)):
        if runs and len("\n\n".join([*runs[-1], piece])) <= max_chars:
            runs[-1].append(piece)
        else:
            runs.append([piece])
    texts = ["\n\n".join(run) for run in runs]
    if len(texts) > 1 and len(texts[-1]) < min_chars and len(texts[-2]) + len(texts[-1]) <= max_chars + min_chars:
        texts[-2:] = [f"{texts[-2]}\n\n{texts[-1]}"]
    return [text for text in texts if len(text) >= min_chars]


def split_passages(document: CleanedDocument, min_chars: int, max_chars: int, limit: int = 0) -> list[Passage]:
    """The document's passages in reading order; ``limit`` > 0 keeps only the first ones."""
    text = document.text
    # The collector puts the title on the first line; it is not part of any answer.
    first, _, rest = text.partition("\n")
    if document.title and first.strip().lstrip("# ").strip() == document.title.strip():
        text = rest
    sections: list[tuple[str, list[str]]] = [(document.title, [])]
    for block in _blocks(text):
        heading = HEADING.match(block.strip()) if "\n" not in block.strip() else None
        if heading:
            sections.append((heading.group(1), []))
        else:
            sections[-1][1].append(block)
    passages: list[Passage] = []
    for topic, blocks in sections:
        for piece in _pack(blocks, min_chars, max_chars):
            passages.append(
                Passage(
                    document_id=document.id,
                    title=document.title,
                    topic=topic or document.title,
                    text=piece.strip(),
                    position=len(passages),
                )
            )
    return passages[:limit] if limit > 0 else passages
