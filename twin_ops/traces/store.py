"""The trace store: one record per answer the API gave (or refused), and the feedback on it.

SQLite (the standard library's ``sqlite3``) in WAL mode, one file under ``.twin/traces/`` by
default (``serving.traces.path``):

* **Durable.** Each record is its own transaction, committed with ``synchronous=FULL`` before the
  API sends the response: in WAL mode FULL syncs the log on every commit, so neither a crashed
  process nor a power cut loses a record whose answer was sent (NORMAL would be safe against a
  process crash but may lose the last commits on power loss — the wrong trade for an audit trail;
  a commit costs a few milliseconds next to seconds of generation).
* **Shared.** Several Ingress replicas (processes) write the same file: WAL lets readers go on
  while one writer commits, and ``busy_timeout`` makes a writer wait for the lock instead of
  failing.
* **Bounded.** After each write, traces older than ``max_age_days`` and all but the newest
  ``max_records`` are deleted (by insertion sequence: an index range, never a scan), with their
  feedback — ``twin-ops feedback export`` keeps the feedback in data/feedback first.

Nothing secret is ever written: a trace holds the conversation, the retrieval and the answer, and
the client's ``X-Request-ID``, but never a header, the API key or the ``Authorization`` value.

Every call opens its own connection (cheap for SQLite) so the store is safe from any thread or
process; the API calls it from a worker thread to keep its event loop free.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from twin_ops.errors import TwinOpsError

Rating = Literal["up", "down"]
BUSY_TIMEOUT_MS = 10_000  # a writer waits this long for another replica's commit


class TraceStoreError(TwinOpsError, RuntimeError):
    """The trace store could not be read or written."""


class TracedMessage(BaseModel):
    role: str
    content: str


class TracedPassage(BaseModel):
    """A retrieved chunk: in the prompt (``used``) or retrieved but cut by the context budget."""

    chunk_id: str
    title: str
    url: str
    score: float
    used: bool


class Timings(BaseModel):
    """Seconds spent in each step of the request (None: the request never reached that step)."""

    retrieval_s: float | None = None
    queue_s: float | None = None  # waiting for a batch in the Generator's scheduler
    prefill_s: float | None = None  # the batch's prompt pass
    decode_s: float | None = None  # the decode steps this answer took part in
    total_s: float | None = None  # the whole request, as the API saw it


class Feedback(BaseModel):
    rating: Rating
    correction: str | None = None  # what the author would have said
    trusted: bool  # may reach training (README: "Feedback: the trust model")
    submitted_at: datetime


class Trace(BaseModel):
    id: str  # the response's id
    request_id: str | None = None  # the client's own X-Request-ID, when it sent one
    created_at: datetime
    route: str
    status: int = 200
    error: str | None = None
    stream: bool = False
    author: str | None = None
    model: str | None = None  # the twin's model id ("<author>-twin")
    model_version: str | None = None  # what that twin served ("<name>:v<N>", "base:<model>")
    messages: list[TracedMessage] = Field(default_factory=list)
    passages: list[TracedPassage] = Field(default_factory=list)
    answer: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    timings: Timings = Field(default_factory=Timings)
    feedback: Feedback | None = None  # filled when read, never stored in the record itself

    @property
    def question(self) -> str | None:
        """The last user message: what the answer answers."""
        return next((message.content for message in reversed(self.messages) if message.role == "user"), None)


SCHEMA = """
CREATE TABLE IF NOT EXISTS traces (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    request_id TEXT,
    created_at TEXT NOT NULL,
    author TEXT,
    model TEXT,
    status INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_created ON traces (created_at);
CREATE INDEX IF NOT EXISTS traces_request ON traces (request_id);
CREATE INDEX IF NOT EXISTS traces_author ON traces (author, created_at);
CREATE TABLE IF NOT EXISTS feedback (
    trace_id TEXT PRIMARY KEY REFERENCES traces (id) ON DELETE CASCADE,
    rating TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    correction TEXT,
    trusted INTEGER NOT NULL,
    submitted_at TEXT NOT NULL
);
"""


def _iso(moment: datetime) -> str:
    """UTC, fixed width: text order is time order (the indexes compare text)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class TraceStore:
    def __init__(self, path: Path, max_records: int, max_age_days: float) -> None:
        self.path = Path(path)
        self.max_records = max_records
        self.max_age = timedelta(days=max_age_days)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            # WAL is a property of the file (persistent); set once here, idempotent.
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @classmethod
    def from_params(cls, params, paths) -> TraceStore:
        traces = params.serving.traces
        return cls(paths.traces, traces.max_records, traces.max_age_days)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            with closing(sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)) as db:
                db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA foreign_keys=ON")
                yield db
        except sqlite3.Error as exc:
            raise TraceStoreError(f"trace store {self.path}: {type(exc).__name__}: {exc}") from exc

    # --- writing ------------------------------------------------------------------------------------

    def write(self, trace: Trace) -> None:
        """Store one trace (committed and synced when this returns), then apply the bounds."""
        record = trace.model_dump_json(exclude={"feedback"})
        cutoff = _iso(datetime.now(UTC) - self.max_age)
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "INSERT INTO traces (id, request_id, created_at, author, model, status, record) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (trace.id, trace.request_id, _iso(trace.created_at), trace.author, trace.model, trace.status, record),
            )
            db.execute("DELETE FROM traces WHERE created_at < ?", (cutoff,))
            db.execute("DELETE FROM traces WHERE seq <= (SELECT max(seq) FROM traces) - ?", (self.max_records,))
            db.execute("COMMIT")

    def rate(self, trace_id: str, rating: Rating, correction: str | None, trusted: bool) -> Feedback | None:
        """Record feedback on a trace (a repeat replaces the earlier one); None for an unknown id."""
        feedback = Feedback(rating=rating, correction=correction, trusted=trusted, submitted_at=datetime.now(UTC))
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            if db.execute("SELECT 1 FROM traces WHERE id = ?", (trace_id,)).fetchone() is None:
                db.execute("ROLLBACK")
                return None
            db.execute(
                "INSERT INTO feedback (trace_id, rating, correction, trusted, submitted_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (trace_id) DO UPDATE SET rating = excluded.rating, correction = excluded.correction, "
                "trusted = excluded.trusted, submitted_at = excluded.submitted_at",
                (trace_id, rating, correction, int(trusted), _iso(feedback.submitted_at)),
            )
            db.execute("COMMIT")
        return feedback

    # --- reading ------------------------------------------------------------------------------------

    _SELECT = (
        "SELECT t.record, f.rating, f.correction, f.trusted, f.submitted_at "
        "FROM traces t LEFT JOIN feedback f ON f.trace_id = t.id "
    )

    @staticmethod
    def _trace(row: tuple) -> Trace:
        record, rating, correction, trusted, submitted_at = row
        trace = Trace.model_validate(json.loads(record))
        if rating is not None:
            trace.feedback = Feedback(
                rating=rating, correction=correction, trusted=bool(trusted), submitted_at=submitted_at
            )
        return trace

    def get(self, trace_id: str) -> Trace | None:
        """The trace with this id — or, failing that, the latest one a client tagged with it as its
        own X-Request-ID."""
        with self._connect() as db:
            row = db.execute(self._SELECT + "WHERE t.id = ?", (trace_id,)).fetchone()
            if row is None:
                query = self._SELECT + "WHERE t.request_id = ? ORDER BY t.seq DESC LIMIT 1"
                row = db.execute(query, (trace_id,)).fetchone()
        return None if row is None else self._trace(row)

    def list(self, author: str | None = None, since: datetime | None = None, limit: int | None = None) -> list[Trace]:
        """Traces, newest first."""
        where, values = [], []
        if author is not None:
            where.append("t.author = ?")
            values.append(author)
        if since is not None:
            where.append("t.created_at >= ?")
            values.append(_iso(since))
        query = self._SELECT + (f"WHERE {' AND '.join(where)} " if where else "") + "ORDER BY t.seq DESC"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        with self._connect() as db:
            rows = db.execute(query, values).fetchall()
        return [self._trace(row) for row in rows]

    def rated(self, author: str) -> list[Trace]:
        """The author's traces that have feedback, oldest first (what the export writes)."""
        query = self._SELECT + "WHERE t.author = ? AND f.rating IS NOT NULL ORDER BY t.seq"
        with self._connect() as db:
            rows = db.execute(query, (author,)).fetchall()
        return [self._trace(row) for row in rows]

    def count(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT count(*) FROM traces").fetchone()[0])
