"""Request ids and traces for the API (api.py): one id per request, one trace per answer.

Every response carries ``X-Request-ID``: the client's own when it sent a well-formed one, else the
id the API gave the request. An answer route (/v1/chat/completions, /rag) also gets a trace whose
id is the response's ``id``; the handlers fill it in step by step (``Draft``), and the API's
middleware stores it — before the response leaves, so an answer a client received always has its
trace (a stream's trace is stored before its final ``[DONE]`` event).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from datetime import UTC, datetime

from starlette.requests import Request

from twin_ops.rag import Retrieval
from twin_ops.serving.records import Generation, StreamEnd
from twin_ops.traces.store import Trace, TracedMessage, TracedPassage, TraceStore

log = logging.getLogger(__name__)

# Routes whose requests are traced, and the prefix of their ids (chat: OpenAI's own).
TRACED_ROUTES = {"/v1/chat/completions": "chatcmpl", "/rag": "rag"}
# A client's X-Request-ID is kept only when it looks like an id (no spaces, no control characters,
# bounded): anything else is replaced, never echoed or stored.
REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")


class Draft:
    """The trace of one request while it is being answered."""

    def __init__(self, route: str | None, request_id: str | None) -> None:
        prefix = TRACED_ROUTES.get(route or "", "req")
        self.traced = route in TRACED_ROUTES
        self.started = time.perf_counter()
        self.streaming = False  # the stream stores its own trace when it ends
        self.trace = Trace(
            id=f"{prefix}-{uuid.uuid4().hex}",
            request_id=request_id,
            created_at=datetime.now(UTC),
            route=route or "",
        )

    @property
    def id(self) -> str:
        return self.trace.id

    def asked(self, messages: tuple[tuple[str, str], ...], model: str | None, author: str | None) -> None:
        self.trace.messages = [TracedMessage(role=role, content=content) for role, content in messages]
        self.trace.model = model or self.trace.model
        self.trace.author = author or self.trace.author

    def retrieved(self, found: Retrieval, seconds: float) -> None:
        self.trace.author = self.trace.author or found.author
        self.trace.timings.retrieval_s = round(seconds, 4)
        self.trace.passages = [
            TracedPassage(chunk_id=p.chunk_id, title=p.title, url=p.url, score=round(p.score, 4), used=False)
            for p in found.passages
        ]

    def _used(self, context_used: int) -> None:
        for index, passage in enumerate(self.trace.passages):
            passage.used = index < context_used

    def answered(self, answer: Generation) -> None:
        self._used(answer.context_used)
        self.trace.model_version = answer.model_version
        self.trace.answer = answer.text
        self.trace.finish_reason = answer.finish_reason
        self.trace.prompt_tokens = answer.prompt_tokens
        self.trace.completion_tokens = answer.completion_tokens
        self._timed(answer.queue_s, answer.prefill_s, answer.decode_s)

    def stream_started(self, context_used: int, model_version: str, prompt_tokens: int) -> None:
        self.streaming = True
        self.trace.stream = True
        self.trace.answer = ""
        self._used(context_used)
        self.trace.model_version = model_version
        self.trace.prompt_tokens = prompt_tokens

    def streamed(self, piece: str) -> None:
        self.trace.answer = (self.trace.answer or "") + piece

    def stream_ended(self, end: StreamEnd) -> None:
        self.trace.finish_reason = end.finish_reason
        self.trace.completion_tokens = end.completion_tokens
        self._timed(end.queue_s, end.prefill_s, end.decode_s)

    def _timed(self, queue_s: float, prefill_s: float, decode_s: float) -> None:
        timings = self.trace.timings
        timings.queue_s, timings.prefill_s = round(queue_s, 4), round(prefill_s, 4)
        timings.decode_s = round(decode_s, 4)

    def finish(self, status: int, error: str | None) -> Trace:
        self.trace.status = status
        self.trace.error = error
        self.trace.timings.total_s = round(time.perf_counter() - self.started, 4)
        return self.trace


def begin(request: Request) -> Draft:
    """The request's id (and its trace, on an answer route); kept on ``request.state.trace``."""
    given = request.headers.get("x-request-id")
    draft = Draft(request.url.path, given if given and REQUEST_ID.match(given) else None)
    request.state.trace = draft
    return draft


def draft_of(request: Request) -> Draft:
    return request.state.trace


def response_id(draft: Draft) -> str:
    """The X-Request-ID header: the client's own id when it sent one, else the trace id."""
    return draft.trace.request_id or draft.id


async def store(traces: TraceStore | None, draft: Draft, status: int, error: str | None) -> None:
    """Write the trace (committed when this returns). Raises TraceStoreError."""
    if traces is None or not draft.traced:
        return
    await asyncio.to_thread(traces.write, draft.finish(status, error))


def store_now(traces: TraceStore | None, draft: Draft, status: int, error: str | None) -> None:
    """The same, blocking: for a stream that ended early, where awaiting is not possible (cancelled)."""
    if traces is None or not draft.traced:
        return
    try:
        traces.write(draft.finish(status, error))
    except Exception:  # the client is gone: nobody to tell; the log says why the trace is missing
        log.exception("could not store the trace of %s", draft.id)
