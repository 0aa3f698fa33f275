"""What travels between the serving components (and between Ray processes, pickled).

Plain frozen dataclasses: cheap to pickle, no validation on the hot path (requests were validated
at the edge, in api.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twin_ops.llm.model import Sampling
from twin_ops.rag.records import Passage


@dataclass(frozen=True)
class GenerationRequest:
    messages: tuple[tuple[str, str], ...]  # (role, content); the last one is the user's question
    passages: tuple[Passage, ...]
    sampling: Sampling
    model: str = ""  # the twin answering (its registry name: "<author>-twin"); "" = serving.author's
    deadline: float = (
        0.0  # time.time() by which the answer must be complete; 0 = serving.timeouts.generation_s from now
    )


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int
    completion_tokens: int
    context_used: int  # how many of the passages fitted the context budget (the answer's sources)
    model_version: str
    # Seconds waiting for a batch, in the batch's prefill, and decoding this answer (its trace).
    queue_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0


@dataclass(frozen=True)
class ServedPrompt:
    model_version: str
    input_ids: tuple[int, ...]
    context_used: int


@dataclass(frozen=True)
class StreamStart:
    context_used: int
    model_version: str
    prompt_tokens: int


@dataclass(frozen=True)
class StreamEnd:
    finish_reason: str
    completion_tokens: int
    queue_s: float = 0.0  # as in Generation
    prefill_s: float = 0.0
    decode_s: float = 0.0


@dataclass(frozen=True)
class ModelInfo:
    model_version: str  # "<registry name>:v<N>", "base:<name>" or "path:<folder>"
    loaded: bool
    device: str
    error: str | None = None  # why the last load failed (the previous model keeps serving)
    requested: str | None = None  # the model_ref the current user_config asks for
    model_id: str = ""  # the twin (registry name) this is about


@dataclass(frozen=True)
class Health:
    ok: bool
    model: ModelInfo | None
    weaviate: str  # "ok" or the reason it is not
    reasons: tuple[str, ...] = field(default_factory=tuple)


StreamEvent = StreamStart | str | StreamEnd  # what a streamed generation yields, in order
