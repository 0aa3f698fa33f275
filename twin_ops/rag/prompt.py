"""The prompt builder: retrieved passages into the last user turn, within a token budget.

Training used user turns only (no system prompt), so the context goes where the model learnt to
read instructions: into the user's message, through ``rag.prompt_template``.
"""

from __future__ import annotations

from collections.abc import Sequence

from twin_ops.config import RagParams
from twin_ops.errors import InvalidRequest
from twin_ops.llm import LoadedModel
from twin_ops.llm.model import Message
from twin_ops.rag.records import Passage, Prompt

MIN_SCRAP_TOKENS = 16  # a shorter cut passage is noise, not context


def context_block(passages: Sequence[Passage], model: LoadedModel, budget: int) -> tuple[str, int]:
    """Numbered passages in rank order while they fit ``budget`` tokens; how many were used.

    The passage that crosses the budget is cut to the room left (at a token boundary) and ends the
    context, so the best-ranked text always wins over a complete but lower-ranked one.
    """
    parts: list[str] = []
    used = 0
    left = budget
    for number, passage in enumerate(passages, start=1):
        header = f"[{number}] {passage.title}\n"
        cost = model.count_tokens(header + passage.text)
        if cost <= left:
            parts.append(header + passage.text)
            left -= cost
            used += 1
            continue
        room = left - model.count_tokens(header)
        if room >= MIN_SCRAP_TOKENS:
            parts.append(header + model.cut(passage.text, room))
            used += 1
        break
    return "\n\n".join(parts), used


def build_prompt(
    model: LoadedModel, messages: Sequence[Message], passages: Sequence[Passage], rag: RagParams, max_tokens: int
) -> Prompt:
    """The chat with the retrieved context put into the last user turn, as the model's token ids.

    Raises InvalidRequest when the last turn is not the user's, or when the prompt plus
    ``max_tokens`` new tokens does not fit the model's context.
    """
    chat = list(messages)
    if not chat or chat[-1][0] != "user":
        raise InvalidRequest("the last message must come from the user")
    context, used = context_block(passages, model, rag.context_token_budget)
    if used:
        chat[-1] = ("user", rag.prompt_template.format(context=context, question=chat[-1][1]))
    ids = model.render(chat)
    if len(ids) + max_tokens > model.max_positions:
        raise InvalidRequest(
            f"the prompt is {len(ids)} tokens; with max_tokens {max_tokens} it exceeds "
            f"the model's context of {model.max_positions} tokens (send fewer or shorter messages)"
        )
    return Prompt(input_ids=tuple(ids), context_used=used)
