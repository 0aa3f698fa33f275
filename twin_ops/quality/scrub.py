"""Secrets and personal data: find them in a document and redact them before anything downstream reads it.

The feature stage calls ``Scrubber.scrub_document`` on every cleaned document (text and title), so the
index, the datasets built from the cleaned documents and so the model never see a key, a password,
a reader's e-mail address or phone number. The ``cleaned_documents`` suite runs ``Scrubber.kinds_in``
again on what is about to be published ("no secrets"): a batch that still has one fails.

What finds what (chosen by measurement on the planted cases, README "Secrets and personal data"):

* secrets — Yelp's ``detect-secrets`` (its detectors for AWS, GitHub, Slack, Stripe, JWT, basic-auth
  URLs, private keys, keyword assignments in code and config files, high-entropy strings in
  config files and 20 vendor formats, with its false-positive filters), plus a few patterns for
  what it measurably misses: a whole private-key block (it flags the BEGIN line only), GitHub's
  fine-grained ``github_pat_`` tokens, ``.env``-style ``NAME_PASSWORD=value`` lines outside config
  files, and full tokens where its regex stops early (JWT signatures, long Stripe keys).
* personal data — an e-mail pattern and Google's libphonenumber (``phonenumbers``), which
  validates numbers per country instead of matching any run of digits.

Names are not redacted (the twin writes as a named author about named things). The author's own
name and ``public_contacts`` (author config) and ``scrub.allowlist`` (params.yaml) are never
redacted. The report names document, kind and count, never the value.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from pydantic import BaseModel

from twin_ops.config import Params, Paths, ScrubParams
from twin_ops.domain import CleanedDocument

log = logging.getLogger(__name__)

PERSONAL_KINDS = frozenset({"email", "phone"})
# detect-secrets' secret types → our kinds; a vendor type not listed here is an "api_token".
DETECT_SECRETS_KINDS = {
    "AWS Access Key": "aws_key",
    "GitHub Token": "github_token",
    "Private Key": "private_key",
    "Secret Keyword": "credential",
    "Slack Token": "slack_token",
    "Stripe Access Key": "stripe_key",
    "JSON Web Token": "jwt",
    "Basic Auth Credentials": "basic_auth",
}
# Not secrets: a public IP address in a post about networking is ordinary text.
IGNORED_TYPES = frozenset({"Public IP (ipv4)"})
# A token detect-secrets matched only in part (its JWT regex stops before the signature, its
# Stripe regex after 24 characters) is extended over the characters such tokens are made of.
TOKEN_KINDS = frozenset({"aws_key", "github_token", "slack_token", "stripe_key", "jwt", "api_token"})
TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-+/=.]*")

PRIVATE_KEY_BLOCK = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\n\s*\n|\Z)",
    re.DOTALL,
)
# Our patterns, after gitleaks' rules; a pattern with a group redacts the group only.
PATTERNS: dict[str, list[re.Pattern[str]]] = {
    "private_key": [PRIVATE_KEY_BLOCK],
    "aws_key": [re.compile(r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b")],
    "github_token": [re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_\w{22,})")],
    "slack_token": [
        re.compile(r"\bxox[abposr]-(?:\d+-)+[A-Za-z0-9]+"),
        re.compile(r"hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_+-]+"),
    ],
    "stripe_key": [re.compile(r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{20,}")],
    "jwt": [re.compile(r"\beyJ[\w-]+\.eyJ[\w-]+\.[\w-]*")],
    "basic_auth": [re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@]+:([^\s:/@]+)@")],
    # .env and shell lines: NAME_PASSWORD=value (detect-secrets wants quotes outside config files).
    "credential": [
        re.compile(
            r"(?m)^[ \t]*(?:export[ \t]+)?[A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|APIKEY|ACCESS_KEY)"
            r"[A-Z0-9_]*[ \t]*=[ \t]*[\"']?([^\s\"'$][^\s\"']*)"
        )
    ],
    "email": [re.compile(r"(?<![\w.+:/-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")],
}


@dataclass(frozen=True)
class Finding:
    """A span of text to redact; the value itself is never kept."""

    kind: str
    start: int
    end: int


class Redaction(BaseModel):
    """One line of the redaction report: what was redacted where, never the value."""

    document_id: str
    source_url: str
    field: str  # "text" or "title"
    kind: str
    count: int


def _filename(source_url: str) -> str:
    """A name with the document's extension: detect-secrets reads config files differently."""
    name = PurePosixPath(urlsplit(source_url).path).name
    return name or "document.txt"


def detect_secrets_findings(text: str, filename: str = "document.txt") -> list[Finding]:
    """detect-secrets' detectors and filters over the text, as if it were a file of that name."""
    from detect_secrets.core.scan import scan_file
    from detect_secrets.settings import default_settings

    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    findings: list[Finding] = []
    # scan_file is its public entry point and picks keyword rules by extension, so the text goes
    # through a private temporary file of the same name (deleted on exit).
    with tempfile.TemporaryDirectory(prefix="twin-scrub-") as folder, default_settings():
        path = Path(folder) / Path(filename).name
        path.write_text(text, encoding="utf-8")
        for secret in scan_file(str(path)):
            if secret.type in IGNORED_TYPES or not secret.secret_value or secret.line_number > len(lines):
                continue
            kind = DETECT_SECRETS_KINDS.get(secret.type, "api_token")
            line, offset = lines[secret.line_number - 1], offsets[secret.line_number - 1]
            for match in re.finditer(re.escape(secret.secret_value), line):
                start, end = offset + match.start(), offset + match.end()
                if kind in TOKEN_KINDS:
                    end += len(TOKEN_CHARS.match(text, end).group(0).rstrip("."))
                findings.append(Finding(kind, start, end))
            if kind == "private_key":  # the BEGIN line was flagged: redact the whole block
                findings.extend(pattern_findings(text, {"private_key"}))
    return findings


def pattern_findings(text: str, kinds: Iterable[str] | None = None) -> list[Finding]:
    """Our regular expressions (PATTERNS) for the given kinds (all when None)."""
    findings = []
    for kind, patterns in PATTERNS.items():
        if kinds is not None and kind not in kinds:
            continue
        for pattern in patterns:
            for match in pattern.finditer(text):
                group = 1 if pattern.groups else 0
                findings.append(Finding(kind, match.start(group), match.end(group)))
    return findings


def phone_findings(text: str, regions: Iterable[str]) -> list[Finding]:
    """Phone numbers libphonenumber finds and validates, in international form or any of the regions'."""
    import phonenumbers

    findings = []
    for region in regions:
        for match in phonenumbers.PhoneNumberMatcher(text, region):
            findings.append(Finding("phone", match.start, match.end))
    return findings


def _rank(kind: str) -> int:
    """Which kind names a span two detectors found: a named secret, then personal data, then generic."""
    return 2 if kind == "api_token" else 1 if kind in PERSONAL_KINDS else 0


def merge(findings: Iterable[Finding]) -> list[Finding]:
    """Overlapping findings become one span (the most specific kind), in text order."""
    merged: list[Finding] = []
    for finding in sorted(findings, key=lambda f: (f.start, -f.end)):
        if merged and finding.start < merged[-1].end:
            last = merged[-1]
            kind = min(last.kind, finding.kind, key=_rank)
            merged[-1] = Finding(kind, last.start, max(last.end, finding.end))
        else:
            merged.append(finding)
    return merged


class Scrubber:
    """Finds and redacts the configured kinds; one per author (the allowlist is the author's)."""

    def __init__(self, params: ScrubParams, allowlist: Iterable[str] = ()) -> None:
        self.kinds = frozenset(params.kinds)
        self.replacement = params.replacement
        self.regions = list(params.phone_regions)
        self.allowlist = {value.strip().casefold() for value in [*params.allowlist, *allowlist] if value.strip()}
        # Text already redacted is not found again (a rerun, or the suite's check after the scrub).
        token = re.escape(params.replacement).replace(re.escape("{kind}"), "[a-z_]+")
        self.redacted = re.compile(token)

    def settings(self) -> dict[str, object]:
        """What decides the scrub's output (the feature stage's fingerprint includes it)."""
        return {
            "kinds": sorted(self.kinds),
            "replacement": self.replacement,
            "regions": self.regions,
            "allowlist": sorted(self.allowlist),
        }

    @classmethod
    def for_author(cls, author_id: str, params: Params, paths: Paths) -> Scrubber:
        """The author's name and public contacts are kept (from include/authors/<id>.yaml)."""
        from twin_ops.collect.authors import author_file, load_author, source_variables

        allowlist: list[str] = []
        if author_file(params, paths, author_id).exists():
            author = load_author(author_id, params, paths, source_variables(params))
            allowlist = [author.name, *author.public_contacts]
        else:
            log.info("no author config for %s: only scrub.allowlist is kept", author_id)
        return cls(params.scrub, allowlist)

    def find(self, text: str, filename: str = "document.txt") -> list[Finding]:
        if not text or not self.kinds:
            return []
        found = detect_secrets_findings(text, filename) + pattern_findings(text, self.kinds)
        if "phone" in self.kinds:
            found += phone_findings(text, self.regions)
        done = [match.span() for match in self.redacted.finditer(text)]
        return [
            finding
            for finding in merge(f for f in found if f.kind in self.kinds)
            if text[finding.start : finding.end].strip().casefold() not in self.allowlist
            and not any(start <= finding.start and finding.end <= end for start, end in done)
        ]

    def kinds_in(self, text: object, title: object = "", source_url: object = "") -> str:
        """The kinds still in a document's text or title, comma-separated ("" = clean).

        The "no secrets" expectation checks this derived column: kinds only, so a failure report
        or Data Docs never show a value.
        """
        filename = _filename(source_url) if isinstance(source_url, str) else "document.txt"
        kinds = {finding.kind for finding in self.find(text, filename)} if isinstance(text, str) else set()
        kinds |= {finding.kind for finding in self.find(title)} if isinstance(title, str) else set()
        return ",".join(sorted(kinds))

    def redact(self, text: str, filename: str = "document.txt") -> tuple[str, Counter[str]]:
        """The text with every finding replaced by the replacement token, and counts by kind."""
        counts: Counter[str] = Counter()
        for finding in reversed(self.find(text, filename)):
            counts[finding.kind] += 1
            text = text[: finding.start] + self.replacement.format(kind=finding.kind) + text[finding.end :]
        return text, counts

    def scrub_document(self, document: CleanedDocument) -> tuple[CleanedDocument, list[Redaction]]:
        filename = _filename(document.source_url)
        text, text_counts = self.redact(document.text, filename)
        title, title_counts = self.redact(document.title)
        report = [
            Redaction(document_id=document.id, source_url=document.source_url, field=field, kind=kind, count=count)
            for field, counts in (("text", text_counts), ("title", title_counts))
            for kind, count in sorted(counts.items())
        ]
        if not report:
            return document, []
        return document.model_copy(update={"text": text, "title": title}), report
