"""Typed records that cross stage boundaries, and JSONL helpers that validate them.

Every stage reads and writes these models, never loose dicts, so a malformed record is caught at
the boundary with the file and line that holds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from twin_ops.errors import TwinOpsError

AuthorId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceType(StrEnum):
    """How a configured source is collected."""

    ARTICLE = "article"  # a page, or a whole site/blog found through its sitemap and feed
    FEED = "feed"  # RSS / Atom
    SITEMAP = "sitemap"
    MEDIUM = "medium"
    SUBSTACK = "substack"
    GITHUB = "github"
    GIT = "git"  # any git URL or a local repository path
    LINKEDIN_EXPORT = "linkedin_export"
    FILE = "file"  # a local file or folder of Markdown / HTML / text


class DocumentKind(StrEnum):
    ARTICLE = "article"
    POST = "post"
    REPOSITORY = "repository"


class Platform(StrEnum):
    BLOG = "blog"
    MEDIUM = "medium"
    SUBSTACK = "substack"
    GITHUB = "github"
    GIT = "git"
    LINKEDIN = "linkedin"
    FILE = "file"


class Source(_Record):
    type: SourceType
    url: NonEmpty  # a URL, or a local path for git / file / linkedin_export


class Author(_Record):
    id: AuthorId
    name: NonEmpty
    sources: list[Source] = Field(default_factory=list)
    # The author's own public e-mail addresses, phone numbers or handles: published on purpose, so
    # never redacted as personal data (the name is kept too: names are not redacted at all).
    public_contacts: list[str] = Field(default_factory=list)


class RawDocument(_Record):
    """One collected document as fetched, before cleaning."""

    id: NonEmpty  # stable across revisions: derived from author id + canonical URL
    author_id: AuthorId
    kind: DocumentKind
    platform: Platform
    source_url: NonEmpty  # canonical URL, or file path inside a repository
    title: str = ""
    content: NonEmpty
    fetched_at: datetime
    content_hash: Sha256
    revision: int = Field(default=1, ge=1)
    metadata: dict[str, Any] = Field(default_factory=dict)  # subtitle, published_at, tags, ...

    @model_validator(mode="after")
    def _hash_matches_content(self) -> Self:
        if self.content_hash != sha256_text(self.content):
            raise ValueError("content_hash is not the sha256 of content")
        return self


class QuarantineReason(StrEnum):
    """Why the collector set a page or file aside instead of storing it."""

    HTTP_ERROR = "http_error"  # 4xx, or 5xx after the retries
    TIMEOUT = "timeout"
    CONNECTION_ERROR = "connection_error"
    TOO_LARGE = "too_large"
    NON_TEXT = "non_text"  # binary body, or a content type that is not text
    EMPTY_EXTRACTION = "empty_extraction"
    REDIRECT_LOOP = "redirect_loop"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    ROBOTS_DISALLOWED = "robots_disallowed"
    OFFSITE_REDIRECT = "offsite_redirect"  # a redirect out of the source's scope
    INVALID_FEED = "invalid_feed"
    INVALID_SITEMAP = "invalid_sitemap"
    SYMLINK_OUTSIDE = "symlink_outside"  # a repository symlink that leaves the repository
    UNREADABLE = "unreadable"  # not decodable as text, or not readable at all
    CLONE_FAILED = "clone_failed"
    FETCH_ERROR = "fetch_error"  # any other download failure
    PROCESSING_ERROR = "processing_error"  # the page arrived but handling it raised


class QuarantinedItem(_Record):
    """A page or file the collector could not turn into a document, with the reason."""

    author_id: AuthorId
    url: NonEmpty  # page URL, or the file's URL/path inside a repository or export
    reason: QuarantineReason
    detail: str = ""
    status: int | None = None  # HTTP status, when there was a response
    source_url: str = ""  # the configured source that led here
    at: datetime


class SkipReason(StrEnum):
    """Why the collector fetched a page (or file) and left it out on purpose: not one piece of writing."""

    LISTING_PAGE = "listing_page"  # an index, tag, category, archive, author or pagination page
    NOT_AN_ARTICLE = "not_an_article"  # declares a non-article type (og:type profile, ...)
    TOO_SHORT = "too_short"  # less main text than one piece of writing has
    FEW_PARAGRAPHS = "few_paragraphs"  # main text is not paragraphs of prose
    LINK_HEAVY = "link_heavy"  # main text is mostly links
    UNDATED = "undated"  # no publication date anywhere (about, contact, landing pages)
    DISCOVERY_FILE = "discovery_file"  # robots.txt, a feed or a sitemap: read for links only


class SkippedItem(_Record):
    """A fetched page that is not a document, with the reason (``skipped.jsonl`` beside the quarantine)."""

    author_id: AuthorId
    url: NonEmpty
    reason: SkipReason
    detail: str = ""
    source_url: str = ""
    at: datetime


class CleanedDocument(_Record):
    id: NonEmpty
    author_id: AuthorId
    kind: DocumentKind
    platform: Platform
    source_url: NonEmpty
    title: str = ""
    text: NonEmpty
    raw_content_hash: Sha256
    published_at: datetime | None = None


class Chunk(_Record):
    id: NonEmpty  # deterministic: hash of document id + position + text
    document_id: NonEmpty
    author_id: AuthorId
    kind: DocumentKind
    platform: Platform
    position: int = Field(ge=0)
    text: NonEmpty
    token_count: int = Field(ge=1)
    source_url: NonEmpty
    title: str = ""


class EmbeddedChunk(Chunk):
    vector: list[float]
    model_name: NonEmpty
    dimension: int = Field(ge=1)

    @model_validator(mode="after")
    def _vector_has_dimension(self) -> Self:
        if len(self.vector) != self.dimension:
            raise ValueError(f"vector has {len(self.vector)} values, dimension says {self.dimension}")
        return self


class Split(StrEnum):
    TRAIN = "train"
    TEST = "test"


class InstructSample(_Record):
    id: NonEmpty
    author_id: AuthorId
    instruction: NonEmpty
    answer: NonEmpty  # the author's own text
    source_document_id: NonEmpty
    split: Split


class PreferenceSample(_Record):
    id: NonEmpty
    author_id: AuthorId
    prompt: NonEmpty
    chosen: NonEmpty  # the author's passage
    rejected: NonEmpty  # the base model's answer
    source_document_id: NonEmpty
    split: Split


class FeedbackRecord(_Record):
    """A rating (and maybe a correction) of one traced answer, as exported for the pipeline
    (data/feedback/<author>/feedback.jsonl). Pydantic is strict here; the GX suite ("feedback")
    checks the file as it sits on disk before anything trains on it."""

    id: NonEmpty  # the trace's id (the answer's response id)
    author_id: AuthorId
    model_id: NonEmpty  # the twin that answered ("<author>-twin")
    model_version: NonEmpty  # what it served
    prompt: NonEmpty  # the question: the conversation's last user message
    answer: str  # the twin's answer
    rating: Annotated[str, StringConstraints(pattern=r"^(up|down)$")]
    correction: NonEmpty | None = None  # what the author would have said
    trusted: bool  # submitted with the API key (README: "Feedback: the trust model")
    answered_at: datetime
    rated_at: datetime


class ModelVersion(_Record):
    name: NonEmpty
    version: int = Field(ge=1)
    base_model: NonEmpty
    adapter_path: Path | None = None
    merged_path: Path | None = None
    created_at: datetime
    metrics: dict[str, float] = Field(default_factory=dict)
    lineage: dict[str, Any] = Field(default_factory=dict)  # data hashes and params that made it
    aliases: list[str] = Field(default_factory=list)


# --- JSONL ------------------------------------------------------------------------------------

RecordT = TypeVar("RecordT", bound=BaseModel)


class RecordFileError(TwinOpsError, ValueError):
    """A JSONL file holds a line that is not a valid record; the message names file and line."""


def iter_jsonl(path: Path, model: type[RecordT]) -> Iterator[RecordT]:
    """Yield validated records; raise RecordFileError naming the first bad line."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield model.model_validate(json.loads(line))
            except (json.JSONDecodeError, ValidationError) as exc:
                raise RecordFileError(f"{path}:{number}: not a valid {model.__name__}: {exc}") from exc


def read_jsonl(path: Path, model: type[RecordT]) -> list[RecordT]:
    return list(iter_jsonl(path, model))


def write_jsonl(path: Path, records: Iterable[BaseModel]) -> int:
    """Write records atomically (temp file in the same folder, then rename); return the count.

    A crash mid-write leaves the previous file untouched, never a half-written one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            for record in records:
                out.write(record.model_dump_json() + "\n")
                count += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return count


# --- serving ------------------------------------------------------------------------------------


class SwapResult(_Record):
    """What a model swap on the running Ray Serve app did (serving.ops.swap_model returns it)."""

    model_version: str  # "<name>:v<version>" as the app reports it
    previous_user_config: dict[str, Any] | None
    seconds: float
    smoke_answer: str
    smoke_sources: int

    def line(self) -> str:
        return (
            f"serve: now serving {self.model_version} ({self.seconds:.1f}s); smoke query answered with "
            f"{self.smoke_sources} sources"
        )
