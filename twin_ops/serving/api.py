"""The HTTP API, over any Backend: the Ray Serve Ingress and the one-process baseline share it.

    POST /v1/chat/completions   OpenAI-compatible (``stream: true`` = server-sent events); ``model``
                                picks the twin (``<author>-twin``); the last user message is the
                                retrieval query, searched with the earlier ones (rag.conversation);
                                extra fields: author, k
    GET  /v1/models             every author's twin, with the version it serves
    POST /rag                   {query, author, k} → {answer, sources, model_version, author}; the
                                author's twin answers (named, or found in the question)
    GET  /health                200 when the twin (?model=, default serving.author's) is loaded and
                                Weaviate answers, else 503 + reasons
    GET  /chat                  the chat page (static/: plain HTML/CSS/JS, served without the key:
                                it holds nothing secret and asks for the key the API needs)
    GET  /                      redirects to /chat
    GET  /v1/traces/{id}        an answer's trace: conversation, passages, tokens, timings, feedback
    POST /v1/feedback           {id, rating: up|down, correction?} on a traced answer (the latest wins)
    GET  /openapi.json, /docs   the schema (FastAPI)

Every error is an OpenAI-style body ``{"error": {"message", "type", "code"}}`` with a 4xx/5xx
status, so the official client raises its usual exception classes with our message; every status a
route can return is in ``/openapi.json``. A 429 (the twin is too busy to answer before the request's
deadline) carries ``Retry-After``. Every response carries ``X-Request-ID`` and every answer (error or
not) is traced: serving/tracing.py.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, Protocol

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from twin_ops.config import Params
from twin_ops.errors import (
    InvalidRequest,
    MalformedRequest,
    NotFound,
    RequestError,
    RequestTooLarge,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    UpstreamTimeout,
)
from twin_ops.llm import Sampling
from twin_ops.rag import Passage, Retrieval
from twin_ops.serving import tracing
from twin_ops.serving.records import (
    Generation,
    GenerationRequest,
    Health,
    ServedPrompt,
    StreamEnd,
    StreamEvent,
    StreamStart,
)
from twin_ops.traces.store import Trace, TraceStore, TraceStoreError

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"  # the chat page, shipped in the package
# The page may load and call nothing but this app: no CDN, no external fonts, no inline script.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class Backend(Protocol):
    async def models(self) -> dict[str, str]: ...  # model id → the version it serves

    # history: the chat's messages before the question (role, content), for conversation-aware retrieval
    async def retrieve(
        self, query: str, author: str | None, k: int | None, history: tuple[tuple[str, str], ...] = ()
    ) -> Retrieval: ...

    async def generate(self, request: GenerationRequest) -> Generation: ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]: ...

    async def health(self, model_id: str) -> Health: ...

    # 429 (TooManyRequests) when a request of about this size could not be answered by ``deadline``.
    async def check_admission(self, model_id: str, prompt_tokens: int, max_tokens: int, deadline: float) -> None: ...

    async def prompt(self, request: GenerationRequest) -> ServedPrompt: ...


async def with_timeout(awaitable: Awaitable, seconds: float, what: str):
    """Await with a deadline; past it a 504 that names the step (never a hang)."""
    try:
        return await asyncio.wait_for(awaitable, seconds)
    except TimeoutError as exc:
        raise UpstreamTimeout(f"{what} took longer than {seconds:g}s") from exc


# --- request and response bodies ----------------------------------------------------------------


class _Body(BaseModel):
    # Strict: a JSON false is not a temperature of 0, a "5" is not 5. Unknown fields are ignored
    # (OpenAI clients send fields we do not use).
    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class ChatRequest(_Body):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=1, description="Only one choice is generated.")
    stream: bool = False
    author: str | None = Field(default=None, description="twin-ops extension: whose writing to retrieve from.")
    k: int | None = Field(default=None, ge=1, description="twin-ops extension: passages retrieved.")


class RagRequest(_Body):
    query: str = Field(min_length=1)
    author: str | None = None
    k: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)


class FeedbackRequest(_Body):
    # Our own route: an unknown field is a mistake (a misspelt "correction" must not vanish).
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(min_length=1, max_length=200, description="The answer's id (its response's `id`).")
    rating: Literal["up", "down"]
    correction: str | None = Field(default=None, description="What the author would have said instead.")


class FeedbackResponse(BaseModel):
    id: str
    rating: Literal["up", "down"]
    correction: str | None
    trusted: bool  # may reach training (README: "Feedback: the trust model")


class Source(BaseModel):
    title: str
    url: str
    score: float


class PromptResponse(BaseModel):
    """The token ids the served model would be fed for a /rag request (a test and debugging aid)."""

    model_version: str
    input_ids: list[int]
    context_used: int
    sources: list[Source]


class RagResponse(BaseModel):
    id: str  # the trace's id (GET /v1/traces/{id}, POST /v1/feedback)
    answer: str
    sources: list[Source]
    model_version: str
    author: str | None
    finish_reason: str


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: str


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    sources: list[Source]  # twin-ops extension (the OpenAI client keeps unknown fields)
    model_version: str


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "twin-ops"
    model_version: str  # twin-ops extension: what this twin serves ("<name>:v<N>", or "base:<model>")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class HealthBody(BaseModel):
    status: Literal["ok", "unavailable"]
    model_version: str | None
    model_requested: str | None  # the Generator's model_ref; differs from the version while a swap loads
    model_error: str | None  # why the last model load failed (the previous model keeps serving)
    weaviate: str
    reasons: list[str]


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: int


class ErrorBody(BaseModel):
    error: ErrorDetail


def _documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error responses of a route, for /openapi.json."""
    why = {
        400: "Malformed JSON.",
        401: "Missing or wrong API key (when TWIN_OPS_API_KEY is set).",
        404: "Unknown model (twin), author or trace id.",
        413: "Request body, query, messages or correction over the limits (serving.limits).",
        422: "A field is missing, of the wrong type or out of range.",
        429: "The twin cannot answer before the request's deadline, or its queue is full: "
        "retry after Retry-After seconds.",
        503: "A dependency (Weaviate, the model) is unavailable.",
        504: "A step took longer than its timeout (serving.timeouts).",
    }
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorBody, "description": why[status]} for status in statuses
    }
    if 429 in responses:
        responses[429]["headers"] = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
    return responses


ANSWER_ERRORS = _documented(400, 401, 404, 413, 422, 429, 503, 504)


class RecentRefusals:
    """The Generator's last 429 per twin, until its Retry-After: a request at least as large that
    arrives meanwhile is refused here, at once, without a call to the Generator — under overload
    refusals must stay cheap (each costs the busy node a round trip otherwise). A smaller request
    still asks: it may fit where the refused one did not."""

    def __init__(self) -> None:
        self.until: dict[str, tuple[float, int, TooManyRequests]] = {}

    def check(self, model_id: str, tokens: int) -> None:
        until, size, refused = self.until.get(model_id, (0.0, 0, None))
        left = until - time.monotonic()
        if refused is not None and left > 0 and tokens >= size:
            raise TooManyRequests(refused.message, retry_after=max(1, math.ceil(left)))

    def remember(self, model_id: str, tokens: int, refused: TooManyRequests) -> None:
        self.until[model_id] = (time.monotonic() + refused.retry_after, tokens, refused)


# --- helpers ------------------------------------------------------------------------------------


def sources_of(passages: tuple[Passage, ...], used: int) -> list[Source]:
    """The passages that were in the prompt, one entry per article (its best-scoring chunk)."""
    best: dict[str, Source] = {}
    for passage in passages[:used]:
        if passage.url not in best or passage.score > best[passage.url].score:
            best[passage.url] = Source(title=passage.title, url=passage.url, score=round(passage.score, 4))
    return list(best.values())


def error_body(error: RequestError) -> dict[str, Any]:
    return {"error": {"message": error.message, "type": error.kind, "code": error.status}}


def error_response(error: RequestError) -> JSONResponse:
    headers = None
    if isinstance(error, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    elif isinstance(error, TooManyRequests):
        headers = {"Retry-After": str(error.retry_after)}
    return JSONResponse(error_body(error), status_code=error.status, headers=headers)


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


class Limits:
    """Request checks that depend on params.yaml (the pydantic models hold the static ones)."""

    def __init__(self, params: Params) -> None:
        self.serving = params.serving
        self.rag = params.rag
        self.feedback = params.quality.feedback

    def query(self, text: str, what: str = "query") -> str:
        limit = self.serving.limits.max_query_chars
        if len(text) > limit:
            raise RequestTooLarge(
                f"{what} is {len(text)} characters; the limit is {limit} (serving.limits.max_query_chars)"
            )
        if not text.strip():
            raise InvalidRequest(f"{what} is empty")
        return text

    def k(self, k: int | None) -> int | None:
        limit = self.rag.max_k
        if k is not None and k > limit:
            raise InvalidRequest(f"k must be between 1 and {limit}, got {k}")
        return k

    def sampling(self, max_tokens: int | None, temperature: float | None, top_p: float | None) -> Sampling:
        generation = self.serving.generation
        max_tokens = generation.default_max_tokens if max_tokens is None else max_tokens
        if max_tokens > generation.max_tokens_limit:
            raise InvalidRequest(
                f"max_tokens must be at most {generation.max_tokens_limit}, got {max_tokens} "
                "(serving.generation.max_tokens_limit)"
            )
        return Sampling(
            max_tokens=max_tokens,
            temperature=generation.default_temperature if temperature is None else temperature,
            top_p=generation.default_top_p if top_p is None else top_p,
        )

    def messages(self, messages: list[ChatMessage]) -> tuple[tuple[str, str], ...]:
        limits = self.serving.limits
        if len(messages) > limits.max_messages:
            raise RequestTooLarge(f"{len(messages)} messages; the limit is {limits.max_messages}")
        for index, message in enumerate(messages):
            if len(message.text()) > limits.max_message_chars:
                raise RequestTooLarge(
                    f"messages[{index}] is {len(message.text())} characters; the limit is {limits.max_message_chars}"
                )
        if messages[-1].role != "user":
            raise InvalidRequest("the last message must have role 'user': it is the question")
        return tuple((message.role, message.text()) for message in messages)

    def correction(self, text: str | None) -> str | None:
        """A correction the feedback suite will accept, or a 413/422 now (never stored, then refused)."""
        if text is None:
            return None
        limit, max_tokens = self.serving.limits.max_correction_chars, self.feedback.max_correction_tokens
        if len(text) > limit:
            raise RequestTooLarge(
                f"correction is {len(text)} characters; the limit is {limit} (serving.limits.max_correction_chars)"
            )
        if len(text.split()) > max_tokens:
            raise RequestTooLarge(
                f"correction is {len(text.split())} words; the limit is {max_tokens} "
                "(quality.feedback.max_correction_tokens)"
            )
        if not text.strip():
            raise InvalidRequest("correction is empty: leave it out to send a rating alone")
        return text.strip()


# --- the app ------------------------------------------------------------------------------------


Observe = Callable[[str, int, str, float], None]  # (route, status, model, seconds): metrics


def create_api(
    backend: Backend,
    params: Params,
    api_key: str | None = None,
    observe: Observe | None = None,
    traces: TraceStore | None = None,
) -> FastAPI:
    """The app; ``traces`` (None: serving.traces off) stores a trace per answer and the feedback."""
    from twin_ops.evaluation.candidate import author_of, model_name

    serving = params.serving
    timeouts = serving.timeouts
    limits = Limits(params)
    app = FastAPI(
        title="twin-ops",
        version="1",
        summary="Retrieval-augmented answers in each author's voice: one twin per author.",
    )

    def twin_of(author: str | None) -> str:
        return model_name(params, author or serving.author)

    def deadline() -> float:
        return time.time() + timeouts.generation_s

    refusals = RecentRefusals()

    async def admissible(model_id: str, text: str, sampling: Sampling, until: float) -> None:
        """Ask the Generator before retrieval whether it could answer in time: a refusal then
        costs no embedding or search (retrieval's own CPU would slow the answers it cannot help).
        The prompt's size is not known yet: the retrieved context's budget plus the text."""
        estimate = params.rag.context_token_budget + len(text) // 3 + 64
        refusals.check(model_id, estimate + sampling.max_tokens)
        try:
            await backend.check_admission(model_id, estimate, sampling.max_tokens, until)
        except TooManyRequests as refused:
            refusals.remember(model_id, estimate + sampling.max_tokens, refused)
            raise

    @app.exception_handler(RequestError)
    async def serving_error(request: Request, exc: RequestError) -> JSONResponse:
        request.state.error = exc.message  # for the trace
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(item.get("type") == "json_invalid" for item in errors):
            return error_response(MalformedRequest("the request body is not valid JSON"))
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'] if part != 'body') or 'body'}: {item['msg']}"
            for item in errors
        )
        request.state.error = f"invalid request: {problems}"
        return error_response(InvalidRequest(request.state.error))

    @app.middleware("http")
    async def body_limit_and_metrics(request: Request, call_next):
        started = time.monotonic()
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > serving.limits.max_body_bytes:
            request.state.error = f"request body is {length} bytes; the limit is {serving.limits.max_body_bytes}"
            response = error_response(RequestTooLarge(request.state.error))
        else:
            response = await call_next(request)
        if observe is not None:
            route = request.scope.get("route")
            path = getattr(route, "path", "other")
            observe(path, response.status_code, getattr(request.state, "model", ""), time.monotonic() - started)
        return response

    # Registered after the body limit, so it is the outer one: a 413 body is traced too.
    @app.middleware("http")
    async def request_ids_and_traces(request: Request, call_next):
        draft = tracing.begin(request)
        try:
            response = await call_next(request)
        except Exception as exc:  # a bug (500): traced, then Starlette reports it
            await tracing.store(traces, draft, 500, f"{type(exc).__name__}: {exc}")
            raise
        if not draft.streaming:  # a stream stores its trace before its last event
            try:
                await tracing.store(traces, draft, response.status_code, getattr(request.state, "error", None))
            except TraceStoreError as exc:
                if response.status_code >= 400:  # the error still goes out; the log says the trace is lost
                    log.error("%s", exc)
                else:  # no answer leaves without its trace
                    response = error_response(Unavailable(f"the answer could not be recorded: {exc}"))
        response.headers["X-Request-ID"] = tracing.response_id(draft)
        return response

    def trace_store() -> TraceStore:
        if traces is None:
            raise Unavailable("traces are off (serving.traces.enabled: false)")
        return traces

    def authorize(request: Request) -> None:
        if not api_key:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
            raise Unauthorized("missing or wrong API key (send 'Authorization: Bearer <key>')")

    authorized = [Depends(authorize)]

    async def retrieve(
        query: str,
        author: str | None,
        k: int | None,
        trace: tracing.Draft | None = None,
        history: tuple[tuple[str, str], ...] = (),
    ) -> Retrieval:
        started = time.perf_counter()
        found = await with_timeout(backend.retrieve(query, author, k, history), timeouts.retrieval_s, "retrieval")
        if trace is not None:
            trace.retrieved(found, time.perf_counter() - started)
        return found

    async def served_twin(request: Request, model_id: str) -> str:
        """``model_id`` when this app serves it, else a 404 naming what it serves."""
        served = await backend.models()
        if model_id not in served:
            raise NotFound(f"model {model_id!r} not found; this app serves {', '.join(sorted(served))}")
        request.state.model = model_id
        return model_id

    @app.get("/health", response_model=HealthBody, responses={503: {"model": HealthBody}})
    async def health(model: str | None = None) -> JSONResponse:
        """The default twin's (serving.author's) model, or ``?model=<author>-twin``'s, and Weaviate."""
        try:
            state = await with_timeout(backend.health(model or twin_of(None)), timeouts.health_s, "health check")
        except RequestError as exc:
            state = Health(ok=False, model=None, weaviate="unknown", reasons=(exc.message,))
        body = HealthBody(
            status="ok" if state.ok else "unavailable",
            model_version=state.model.model_version if state.model and state.model.loaded else None,
            model_requested=state.model.requested if state.model else None,
            model_error=state.model.error if state.model else None,
            weaviate=state.weaviate,
            reasons=list(state.reasons),
        )
        return JSONResponse(body.model_dump(), status_code=200 if state.ok else 503)

    # --- the chat page: no key needed to load it (the API calls it makes need one) -----------------

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/chat")

    @app.get("/chat", include_in_schema=False)
    async def chat_page() -> FileResponse:
        return FileResponse(
            STATIC / "chat.html", media_type="text/html", headers={"Content-Security-Policy": PAGE_POLICY}
        )

    @app.get("/v1/models", response_model=ModelList, dependencies=authorized, responses=_documented(401))
    async def models() -> ModelList:
        served = await backend.models()
        return ModelList(data=[ModelCard(id=name, model_version=version) for name, version in served.items()])

    @app.post("/rag", response_model=RagResponse, dependencies=authorized, responses=ANSWER_ERRORS)
    async def rag(body: RagRequest, http: Request) -> RagResponse:
        trace = tracing.draft_of(http)
        trace.asked((("user", body.query),), None, body.author)
        query = limits.query(body.query)
        sampling = limits.sampling(body.max_tokens, body.temperature, None)
        until = deadline()
        await admissible(twin_of(body.author), query, sampling, until)
        found = await retrieve(query, body.author, limits.k(body.k), trace)
        model_id = await served_twin(http, twin_of(found.author))
        trace.asked((("user", query),), model_id, found.author)
        request = GenerationRequest(
            messages=(("user", query),), passages=found.passages, sampling=sampling, model=model_id, deadline=until
        )
        answer = await with_timeout(backend.generate(request), timeouts.generation_s, "generation")
        trace.answered(answer)
        return RagResponse(
            id=trace.id,
            answer=answer.text,
            sources=sources_of(found.passages, answer.context_used),
            model_version=answer.model_version,
            author=found.author,
            finish_reason=answer.finish_reason,
        )

    @app.post("/v1/chat/completions", response_model=ChatCompletion, dependencies=authorized, responses=ANSWER_ERRORS)
    async def chat(body: ChatRequest, http: Request):
        trace = tracing.draft_of(http)
        model_id = await served_twin(http, body.model)
        messages = limits.messages(body.messages)
        trace.asked(messages, model_id, body.author or author_of(params, model_id))
        question = limits.query(messages[-1][1], "the last user message")
        sampling = limits.sampling(body.max_completion_tokens or body.max_tokens, body.temperature, body.top_p)
        until = deadline()
        await admissible(model_id, "".join(text for _, text in messages), sampling, until)
        # Retrieval from the twin's own author unless the request names another (the extension field).
        # The earlier messages go along: a follow-up is searched with the conversation (rag.conversation).
        author = body.author or author_of(params, model_id)
        found = await retrieve(question, author, limits.k(body.k), trace, messages[:-1])
        request = GenerationRequest(
            messages=messages, passages=found.passages, sampling=sampling, model=model_id, deadline=until
        )
        completion_id = trace.id
        created = int(time.time())
        if body.stream:
            return await _stream(
                backend, request, found, completion_id, created, model_id, timeouts.generation_s, trace, traces
            )
        answer = await with_timeout(backend.generate(request), timeouts.generation_s, "generation")
        trace.answered(answer)
        return ChatCompletion(
            id=completion_id,
            created=created,
            model=model_id,
            choices=[Choice(message=ResponseMessage(content=answer.text), finish_reason=answer.finish_reason)],
            usage=Usage(
                prompt_tokens=answer.prompt_tokens,
                completion_tokens=answer.completion_tokens,
                total_tokens=answer.prompt_tokens + answer.completion_tokens,
            ),
            sources=sources_of(found.passages, answer.context_used),
            model_version=answer.model_version,
        )

    @app.get(
        "/v1/traces/{trace_id}", response_model=Trace, dependencies=authorized, responses=_documented(401, 404, 503)
    )
    async def get_trace(trace_id: str) -> Trace:
        """One answer's trace (by its id, or the client's own X-Request-ID), with its feedback."""
        found = await asyncio.to_thread(trace_store().get, trace_id)
        if found is None:
            raise NotFound(f"no trace {trace_id!r} (unknown, or older than serving.traces' bounds)")
        return found

    @app.post(
        "/v1/feedback",
        response_model=FeedbackResponse,
        dependencies=authorized,
        responses=_documented(400, 401, 404, 413, 422, 503),
    )
    async def feedback(body: FeedbackRequest) -> FeedbackResponse:
        """Rate an answer, optionally with what the author would have said; a repeat replaces the
        earlier feedback. Trusted (may reach training) when it carried the API key (README)."""
        store = trace_store()
        correction = limits.correction(body.correction)
        found = await asyncio.to_thread(store.get, body.id)
        if found is None:
            raise NotFound(f"no answer with id {body.id!r} (unknown, or older than serving.traces' bounds)")
        if found.status != 200 or found.answer is None:
            raise InvalidRequest(f"{body.id!r} has no answer to rate (its request ended with status {found.status})")
        trusted = bool(api_key) or serving.traces.trust_without_key
        if await asyncio.to_thread(store.rate, found.id, body.rating, correction, trusted) is None:
            raise NotFound(f"no answer with id {body.id!r} (its trace was just deleted by serving.traces' bounds)")
        return FeedbackResponse(id=found.id, rating=body.rating, correction=correction, trusted=trusted)

    if serving.generation.expose_prompt_ids:

        @app.post("/v1/debug/prompt", response_model=PromptResponse, dependencies=authorized)
        async def prompt(body: RagRequest, http: Request) -> PromptResponse:
            """Only with ``serving.generation.expose_prompt_ids: true`` (tests): proves the served
            prompt equals the evaluation's, token for token. Off in production."""
            query = limits.query(body.query)
            sampling = limits.sampling(body.max_tokens, body.temperature, None)
            found = await retrieve(query, body.author, limits.k(body.k))
            model_id = await served_twin(http, twin_of(found.author))
            request = GenerationRequest(
                messages=(("user", query),), passages=found.passages, sampling=sampling, model=model_id
            )
            served = await with_timeout(backend.prompt(request), timeouts.generation_s, "prompt")
            return PromptResponse(
                model_version=served.model_version,
                input_ids=list(served.input_ids),
                context_used=served.context_used,
                sources=sources_of(found.passages, served.context_used),
            )

    return app


async def _stream(
    backend: Backend,
    request: GenerationRequest,
    found: Retrieval,
    completion_id: str,
    created: int,
    model_id: str,
    timeout: float,
    trace: tracing.Draft,
    traces: TraceStore | None,
) -> StreamingResponse:
    """Server-sent events in OpenAI's chunk format, ending with ``data: [DONE]``.

    The first event (the prompt is built, the model has started) is awaited before the response
    begins, so a bad request or an unavailable model still gets a proper 4xx/503 status; an error
    after that can only be reported inside the stream. The trace is stored before the final ``[DONE]``
    (or, when the client goes away first, as it leaves).
    """
    events = aiter(backend.stream(request))
    start = await with_timeout(anext(events), timeout, "generation start")
    if not isinstance(start, StreamStart):  # a backend bug, reported as such rather than half a stream
        raise Unavailable(f"the generator's stream began with {type(start).__name__}, not StreamStart")

    def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model_id}
        return _sse({**base, "choices": [choice], **extra})

    trace.stream_started(start.context_used, start.model_version, start.prompt_tokens)

    async def body() -> AsyncIterator[str]:
        sources = [source.model_dump() for source in sources_of(found.passages, start.context_used)]
        yield chunk({"role": "assistant", "content": ""}, sources=sources, model_version=start.model_version)
        error: str | None = None
        ended = False  # the loop ran to its end (normally, or with an error reported in the stream)
        try:
            while True:
                try:
                    event = await with_timeout(anext(events), timeout, "generation")
                except StopAsyncIteration:
                    break
                if isinstance(event, StreamEnd):
                    trace.stream_ended(event)
                    yield chunk({}, event.finish_reason)
                elif event:
                    trace.streamed(event)
                    yield chunk({"content": event})
            ended = True
        except RequestError as exc:
            error, ended = exc.message, True
            yield _sse(error_body(exc))
        finally:
            if not ended:  # the client went away mid-stream: stored without awaiting (being cancelled)
                trace.trace.finish_reason = "cancelled"
                tracing.store_now(traces, trace, 200, "the client went away before the end of the stream")
            await events.aclose()
        try:
            await tracing.store(traces, trace, 200, error)
        except TraceStoreError as exc:
            yield _sse(error_body(Unavailable(f"the answer could not be recorded: {exc}")))
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
