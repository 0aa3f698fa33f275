"""Retrieval for one question: conversation → self-query → expansion → hybrid search → fusion or
rerank → top-k.

In a chat, the new message may only make sense with the ones before it ("why does it matter?"):
``conversation_query`` turns the user's recent turns into what is searched, by the method of
``rag.conversation`` (measured in benchmarks/conversation.py).

The steps that need a model (embedding, expansion) are passed in as async callables, so the same
code runs inside the Ray Retriever deployment (calling the Embedder and Generator deployments,
which batch), in one process (the benchmark's baseline) and in evaluation (models called directly).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from twin_ops.config import Params, Settings
from twin_ops.errors import InvalidRequest, NotFound, Unavailable
from twin_ops.features.search import BadQuery, SearchHit, search
from twin_ops.llm import LoadedModel, Sampling
from twin_ops.llm.model import GREEDY_TOP_P, Message
from twin_ops.rag.records import Passage, Retrieval

log = logging.getLogger(__name__)

EmbedFn = Callable[[list[str]], Awaitable[list[list[float]]]]
ExpandFn = Callable[[str, int], Awaitable[list[str]]]
# (the user's earlier turns, oldest first; the new message; the author) → a standalone question
CondenseFn = Callable[[list[str], str, str], Awaitable[str]]


@dataclass(frozen=True)
class KnownAuthor:
    id: str
    name: str


def known_authors(authors_dir: Path) -> list[KnownAuthor]:
    """Ids and names from the author configs; the sources are not needed here, so not expanded."""
    found = []
    for file in sorted(authors_dir.glob("*.yaml")):
        raw = yaml.safe_load(file.read_text()) or {}
        if isinstance(raw, dict) and raw.get("id"):
            found.append(KnownAuthor(id=str(raw["id"]), name=str(raw.get("name") or raw["id"])))
    return found


def detect_author(query: str, authors: Sequence[KnownAuthor]) -> str | None:
    """Self-query: the author a question is about, when it names one (full name or id).

    A rule, not a model: author names are a closed, known set, and a wrong filter would silently
    hide the right passages, so only an exact (case-insensitive, whole-word) mention counts.
    The longest mention wins ("Juno Marsh" over a hypothetical "Juno").
    """
    matches = []
    for author in authors:
        for label in {author.name, author.id}:
            if re.search(rf"(?<!\w){re.escape(label)}(?!\w)", query, flags=re.IGNORECASE):
                matches.append((len(label), author.id))
    return max(matches)[1] if matches else None


def fuse(hit_lists: Sequence[Sequence[SearchHit]]) -> list[Passage]:
    """Relative score fusion across the queries: each list's scores scaled to [0, 1], then summed.

    Weaviate's hybrid score is already a fusion of BM25 and vector scores within one query; summing
    across the question and its rephrasings rewards chunks that several phrasings agree on. With a
    single query this is the hybrid order unchanged.
    """
    best: dict[str, SearchHit] = {}
    totals: dict[str, float] = {}
    for hits in hit_lists:
        top = max((hit.score for hit in hits), default=0.0)
        for hit in hits:
            scaled = hit.score / top if top > 0 else 0.0
            totals[hit.chunk_id] = totals.get(hit.chunk_id, 0.0) + scaled
            best.setdefault(hit.chunk_id, hit)
    ranked = sorted(totals, key=lambda chunk_id: (-totals[chunk_id], chunk_id))
    return [_passage(best[chunk_id], totals[chunk_id] / len(hit_lists)) for chunk_id in ranked]


def _passage(hit: SearchHit, score: float) -> Passage:
    return Passage(
        chunk_id=hit.chunk_id,
        author_id=hit.author_id,
        title=hit.title,
        url=hit.url,
        text=hit.text,
        score=score,
        document_id=hit.document_id,
    )


def expand_query(model: LoadedModel, question: str, n: int, params: Params) -> list[str]:
    """``n`` rephrasings of the question written by ``model`` (sampled), for query expansion."""
    rag = params.rag
    ids = model.render([("user", rag.expansion_template.format(question=question))])
    sampling = Sampling(
        max_tokens=rag.expansion_max_tokens, temperature=rag.expansion_temperature, top_p=rag.expansion_top_p
    )
    completions = model.generate([ids] * n, [sampling] * n)
    return [completion.text.split("\n")[0].strip() for completion in completions]


def earlier_user_turns(history: Sequence[Message], n: int) -> list[str]:
    """The user's last ``n`` messages in ``history`` (the turns before the new one), oldest first.

    Only the user's turns: they name what the person asks about, while the twin's answers are
    generated text that may have drifted from it (and would pull retrieval after the drift).
    """
    if n <= 0:
        return []
    turns = [content for role, content in history if role == "user" and content.strip()]
    return turns[-n:]


def condense_question(model: LoadedModel, earlier: Sequence[str], question: str, params: Params) -> str:
    """The follow-up rewritten by ``model`` as one standalone question (greedy: the same conversation
    always searches the same way). Its first non-empty line; "" when the model wrote nothing."""
    conversation = params.rag.conversation
    history = "\n".join(f"- {turn}" for turn in earlier)
    ids = model.render([("user", conversation.condense_template.format(history=history, question=question))])
    greedy = Sampling(max_tokens=conversation.condense_max_tokens, temperature=0.0, top_p=GREEDY_TOP_P)
    text = model.generate([ids], [greedy])[0].text
    lines = [line.strip().strip('"').strip() for line in text.splitlines()]
    return next((line for line in lines if line), "")


def turn_weights(count: int, decay: float) -> list[float]:
    """Weights of ``count`` turns, oldest first: the newest weighs 1, each older one ``decay`` times less."""
    return [decay ** (count - 1 - index) for index in range(count)]


def weighted_vector(vectors: Sequence[Sequence[float]], weights: Sequence[float]) -> list[float]:
    """The weighted mean of (normalised) embeddings, normalised again: one query vector."""
    matrix = np.asarray(vectors, dtype=np.float64)
    matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    mean = np.asarray(weights, dtype=np.float64) @ matrix
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).tolist()


@dataclass(frozen=True)
class ConversationQuery:
    """What one chat turn searches with: ``text`` (keywords, and the vector unless ``turns`` is set)
    and, for the weighted method, the turns whose vectors are averaged with ``weights``."""

    text: str
    turns: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()


async def conversation_query(
    question: str, earlier: Sequence[str], params: Params, author: str, condense: CondenseFn | None
) -> ConversationQuery:
    """The search for ``question`` given the user's ``earlier`` turns, by ``rag.conversation.method``."""
    conversation = params.rag.conversation
    if not earlier or conversation.method == "last":
        return ConversationQuery(question)
    joined = "\n".join([*earlier, question])
    if conversation.method == "concat":
        return ConversationQuery(joined)
    if conversation.method == "weighted":
        turns = (*earlier, question)
        return ConversationQuery(joined, turns, tuple(turn_weights(len(turns), conversation.decay)))
    if condense is None:
        raise ValueError("rag.conversation.method 'condense' needs a model to condense with (none was given)")
    standalone = (await condense(list(earlier), question, author)).strip()
    # A model that wrote nothing usable must not lose the thread: fall back to the joined turns.
    return ConversationQuery(standalone or joined)


@dataclass(frozen=True)
class SearchPlan:
    """One retrieval's searches: each query (the question and its expansions) with its vector."""

    queries: tuple[str, ...]
    vectors: tuple[list[float], ...]
    author: str | None
    limit: int
    exclude: str | None = None  # a document kept out of the results


class _GivenVectors:
    """An `embedder` for features.search.search whose vectors were computed elsewhere (batched)."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray([self.vectors[text] for text in texts], dtype=np.float32)


def weaviate_url(params: Params, settings: Settings) -> str:
    return settings.weaviate_url or f"http://127.0.0.1:{params.weaviate.http_port}"


def connect_weaviate(params: Params, settings: Settings | None = None):
    """A client for the configured server, never a new embedded one.

    services.weaviate.connect() starts an embedded server when none runs; a serving replica (or
    an evaluation) must instead report the server as unavailable and keep its own state.
    """
    from twin_ops.services import weaviate as weaviate_service

    settings = settings or Settings()
    url = weaviate_url(params, settings)
    if not weaviate_service.is_ready(url, timeout=params.serving.timeouts.health_s):
        raise Unavailable(f"weaviate is not reachable at {url} (start it with `twin-ops services up`)")
    try:
        return weaviate_service.connect(params, settings)
    except Exception as exc:  # the client's own errors vary by transport (HTTP, gRPC)
        raise Unavailable(f"weaviate at {url}: cannot connect: {exc}") from exc


class Retriever:
    """Holds the Weaviate client and the optional cross-encoder; reconnects after a failure."""

    def __init__(self, params: Params, authors: Sequence[KnownAuthor], settings: Settings | None = None) -> None:
        self.params = params
        self.settings = settings or Settings()
        self.authors = list(authors)
        self._client = None
        self.reranker = None
        if params.rag.reranker:
            from sentence_transformers import CrossEncoder

            from twin_ops.llm import pick_device, resolve_model

            self.reranker = CrossEncoder(resolve_model(params.rag.reranker), device=pick_device(params.rag.device))

    # --- Weaviate -------------------------------------------------------------------------------

    def client(self):
        if self._client is None:
            self._client = connect_weaviate(self.params, self.settings)
        return self._client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # already broken: closing is best effort
                log.debug("closing a broken weaviate client failed", exc_info=True)

    def ping(self) -> str:
        """ "ok", or why Weaviate cannot serve queries."""
        try:
            ready = self.client().is_ready()
        except Unavailable as exc:
            return exc.message
        except Exception as exc:
            self.close()
            return f"weaviate: {exc}"
        if ready:
            return "ok"
        self.close()  # the server went away: the next call reconnects, or says why it cannot
        return "weaviate: not ready"

    def search_all(self, plan: SearchPlan) -> list[list[SearchHit]]:
        """Hybrid search for each query of the plan (blocking: run it in a thread)."""
        embedder = _GivenVectors(dict(zip(plan.queries, plan.vectors, strict=True)))
        features, alpha = self.params.features, self.params.rag.alpha
        try:
            client = self.client()
            return [
                search(client, embedder, features, query, plan.author, plan.limit, alpha, exclude_document=plan.exclude)
                for query in plan.queries
            ]
        except BadQuery as exc:
            raise InvalidRequest(str(exc)) from exc
        except Unavailable:
            raise
        except Exception as exc:  # connection, gRPC or a missing index: all mean "cannot answer now"
            self.close()
            raise Unavailable(f"weaviate search failed: {type(exc).__name__}: {exc}") from exc

    async def search_watched(self, plan: SearchPlan) -> list[list[SearchHit]]:
        """search_all in a thread, probing Weaviate whenever it takes long.

        The weaviate client retries an unreachable server with backoff for about a minute; a
        server that went away mid-flight must be a 503 with that reason now, not a 504 later.
        A server that answers its probe is merely slow: the request's own deadline applies.
        """
        from twin_ops.services import weaviate as weaviate_service

        probe_s = self.params.serving.timeouts.health_s
        search = asyncio.ensure_future(asyncio.to_thread(self.search_all, plan))
        while True:
            done, _ = await asyncio.wait({search}, timeout=probe_s)
            if done:
                return search.result()
            url = weaviate_url(self.params, self.settings)
            if not await asyncio.to_thread(weaviate_service.is_ready, url, probe_s):
                self.close()
                search.add_done_callback(lambda task: task.cancelled() or task.exception())  # outcome not needed
                raise Unavailable(f"weaviate is not reachable at {url} (it stopped answering during a search)")

    def rerank(self, query: str, passages: list[Passage]) -> list[Passage]:
        """Cross-encoder scores replace the fused ones (blocking: run it in a thread)."""
        if self.reranker is None or not passages:
            return passages
        scores = self.reranker.predict([(query, passage.text) for passage in passages])
        rescored = [
            Passage(p.chunk_id, p.author_id, p.title, p.url, p.text, float(score), p.document_id)
            for p, score in zip(passages, scores, strict=True)
        ]
        return sorted(rescored, key=lambda passage: -passage.score)

    # --- one question ---------------------------------------------------------------------------

    def choose_author(self, query: str, author: str | None, earlier: Sequence[str] = ()) -> tuple[str, str]:
        """The author named by the request; else the one the question names, or failing that the
        newest earlier turn that names one (a follow-up keeps the conversation's author); else
        serving.author."""
        known = {a.id for a in self.authors}
        if author:
            if known and author not in known:
                raise NotFound(f"unknown author {author!r}; known authors: {', '.join(sorted(known))}")
            return author, "request"
        for text in (query, *reversed(earlier)):
            detected = detect_author(text, self.authors)
            if detected:
                return detected, "query"
        return self.params.serving.author, "default"

    async def retrieve(
        self,
        query: str,
        author: str | None,
        k: int | None,
        embed: EmbedFn,
        expand: ExpandFn,
        *,
        history: Sequence[Message] = (),
        condense: CondenseFn | None = None,
        exclude_document: str | None = None,
    ) -> Retrieval:
        """The top-k passages for ``query``. ``history``: the chat's messages before it (role,
        content), searched with by ``rag.conversation``; ``condense`` writes a standalone question
        (the condense method). ``exclude_document`` keeps one document out of the results
        (evaluation: the held-out answer's own post would leak the answer)."""
        rag = self.params.rag
        k = rag.default_k if k is None else k
        if not 1 <= k <= rag.max_k:
            raise InvalidRequest(f"k must be between 1 and {rag.max_k}, got {k}")
        if not query.strip():
            raise InvalidRequest("query is empty")
        earlier = earlier_user_turns(history, rag.conversation.turns - 1)
        chosen, source = self.choose_author(query, author, earlier)
        searched = await conversation_query(query, earlier, self.params, chosen, condense)
        queries = [searched.text]
        if rag.query_expansions:
            extra = await expand(searched.text, rag.query_expansions)
            queries += [q for q in dict.fromkeys(extra) if q.strip() and q != searched.text]
        if searched.turns:  # the weighted method: the first query's vector is the turns' weighted mean
            embedded = await embed([*searched.turns, *queries[1:]])
            turns = len(searched.turns)
            vectors = [weighted_vector(embedded[:turns], searched.weights), *embedded[turns:]]
        else:
            vectors = await embed(queries)
        # Fetch more than k whenever something re-orders the hits (fusion of several lists, a reranker).
        limit = k if len(queries) == 1 and self.reranker is None else max(k, rag.rerank_candidates)
        limit = min(limit, self.params.features.search.max_k)
        plan = SearchPlan(tuple(queries), tuple(vectors), chosen, limit, exclude_document)
        hit_lists = await self.search_watched(plan)
        passages = fuse(hit_lists)
        if self.reranker is not None:
            passages = await asyncio.to_thread(self.rerank, searched.text, passages)
        return Retrieval(author=chosen, author_source=source, queries=tuple(queries), passages=tuple(passages[:k]))
