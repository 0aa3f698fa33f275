"""Instructions for the author's passages: back-translation, validation, template fallback.

Instruction back-translation (Li et al., 2023, "Self-Alignment with Instruction Backtranslation"):
the answer already exists — it is the author's passage — and a model writes the request that the
passage answers. A small local model often writes something unusable (an empty line, a copy of the
passage, chat markup), so every output is validated, and a failed one is replaced by a template
built from the post's title and section heading. The source of each instruction is recorded.
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum

from twin_ops.config import DatasetsParams
from twin_ops.datasets.passages import Passage

# One worked example (few-shot) makes a 135M model answer with a question instead of a summary.
SYSTEM = "You write the question a reader asked, given the answer."
ASK = "Answer:\n{passage}\n\nWhat question does this answer? Write only the question."
EXAMPLE_ANSWER = (
    "I keep my starter in the fridge and feed it on Sundays. If it smells of nail varnish it is hungry, "
    "not dead: throw away half, feed it, and leave it on the counter overnight."
)
EXAMPLE_QUESTION = "How do you look after a sourdough starter?"
# Labels small models like to prefix their answer with; they are not part of the instruction.
PREFIX = re.compile(r"^(?:question|request|instruction|prompt|q)\s*[:\-]\s*", re.IGNORECASE)
# Questions about the task rather than the topic ("What is the answer to this question?").
META = re.compile(r"\b(passage|this question|the question|the answer|answer to|this answer)\b", re.IGNORECASE)
# Words too generic to show that an instruction is about its passage.
GENERIC = frozenset(
    {
        *("about", "after", "again", "being", "between", "could", "every", "first", "other", "their"),
        *("there", "these", "thing", "things", "those", "through", "under", "where", "which", "while"),
        *("would", "should", "write", "person", "people", "purpose", "meaning", "answer", "question"),
    }
)
WORD = re.compile(r"[a-z0-9']+")


class InstructionSource(StrEnum):
    MODEL = "model"  # the local base model (back-translation)
    TEACHER = "teacher"  # an OpenAI-compatible endpoint
    TEMPLATE = "template"  # fallback_templates


def back_translation_messages(passage: Passage) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": ASK.format(passage=EXAMPLE_ANSWER)},
        {"role": "assistant", "content": EXAMPLE_QUESTION},
        {"role": "user", "content": ASK.format(passage=passage.text)},
    ]


def tidy(raw: str) -> str:
    """The first non-empty line, without a "Question:" label, quotes or extra spaces."""
    line = next((line for line in raw.strip().splitlines() if line.strip()), "")
    line = PREFIX.sub("", line.strip()).strip().strip("\"'“”*").strip()
    return " ".join(line.split())


def _trigrams(text: str) -> set[tuple[str, ...]]:
    words = WORD.findall(text.lower())
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


def _content_words(text: str) -> set[str]:
    return {word for word in WORD.findall(text.lower()) if len(word) >= 5 and word not in GENERIC}


def copy_share(instruction: str, passage: str) -> float:
    """Share of the instruction's word trigrams that also occur in the passage (1.0 = a copy)."""
    grams = _trigrams(instruction)
    if not grams:
        return 0.0
    return len(grams & _trigrams(passage)) / len(grams)


def rejection_reason(instruction: str, passage: str, params: DatasetsParams) -> str | None:
    """Why a generated instruction is unusable, or None when it passes."""
    if not instruction:
        return "empty"
    if len(instruction) < params.instruction_min_chars:
        return "too short"
    if len(instruction) > params.instruction_max_chars:
        return "too long"
    if "<|" in instruction or "|>" in instruction:
        return "chat markup"
    if instruction.strip().lower() in passage.lower() or copy_share(instruction, passage) > params.max_copy_share:
        return "copies the passage"
    if META.search(instruction):
        return "about the task, not the topic"
    if not _content_words(instruction) & _content_words(passage):
        return "off topic"
    return None


def template_instruction(passage: Passage, params: DatasetsParams) -> str:
    """A fallback instruction; the template is chosen by a stable hash so reruns agree.

    Only a passage under a section heading has a topic of its own; one before the first heading
    gets a template that names the post alone (else: "...about <the title>, as in <the title>").
    """
    has_topic = passage.topic != passage.title
    eligible = [t for t in params.fallback_templates if ("{topic}" in t) == has_topic] or params.fallback_templates
    key = f"{params.seed}\x00{passage.document_id}\x00{passage.position}".encode()
    template = eligible[int(hashlib.sha256(key).hexdigest(), 16) % len(eligible)]
    return template.format(title=passage.title, topic=passage.topic if has_topic else passage.title.lower())
