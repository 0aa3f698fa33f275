"""Secret and personal-data detectors on the planted cases and on the clean demo corpus.

Recall per planted kind (a case counts when every occurrence of its value is inside a finding),
findings on the clean demo writing and code (all false positives), precision over all findings,
and time over the whole corpus, for:

* detect-secrets alone (its default plugins and filters, file-type aware, tokens extended);
* our pattern set alone (twin_ops.quality.scrub.PATTERNS, gitleaks-style) + libphonenumber;
* Presidio's e-mail and phone recognizers (when presidio-analyzer is importable: it needs spaCy,
  so it is measured from a separate environment, not installed with twin-ops);
* the scrubber as configured (detect-secrets + patterns + libphonenumber, the allowlist applied).

Run: .venv/bin/python benchmarks/scrub.py   (presidio: PYTHONPATH=. <env with presidio>/bin/python ...)
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import yaml

from twin_ops.config import load_params
from twin_ops.quality.scrub import (
    Finding,
    Scrubber,
    detect_secrets_findings,
    merge,
    pattern_findings,
    phone_findings,
)

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "include" / "demo_site"
MANIFEST = DEMO / "planted_secrets.yaml"


def corpus() -> tuple[dict[str, str], dict[str, str]]:
    """(files with planted cases, clean files): relative name → text."""
    planted = yaml.safe_load(MANIFEST.read_text())
    dirty_names = sorted({case["file"] for case in planted["planted"]})
    dirty = {name: (DEMO / name).read_text() for name in dirty_names}
    clean = {}
    for path in sorted(DEMO.rglob("*")):
        name = str(path.relative_to(DEMO))
        if path.is_file() and name not in dirty and path.suffix in {".md", ".py", ".toml", ".txt", ""}:
            if name.startswith("repo/deploy/") or path.name == MANIFEST.name:
                continue
            try:
                clean[name] = path.read_text()
            except UnicodeDecodeError:
                continue
    return dirty, clean


def presidio_engine():
    try:
        from presidio_analyzer.predefined_recognizers import EmailRecognizer, PhoneRecognizer
    except ImportError:
        return None
    email, phone = EmailRecognizer(), PhoneRecognizer()

    def find(text: str, filename: str) -> list[Finding]:
        found = [Finding("email", r.start, r.end) for r in email.analyze(text, ["EMAIL_ADDRESS"], None)]
        found += [Finding("phone", r.start, r.end) for r in phone.analyze(text, ["PHONE_NUMBER"], None)]
        return found

    return find


def covered(text: str, value: str, findings: list[Finding]) -> bool:
    start, hits = text.find(value), []
    while start >= 0:
        hits.append(any(f.start <= start and start + len(value) <= f.end for f in findings))
        start = text.find(value, start + 1)
    return bool(hits) and all(hits)


def main() -> None:
    params = load_params(ROOT / "params.yaml")
    planted = yaml.safe_load(MANIFEST.read_text())
    kept = [case["value"] for case in planted["kept"]]
    scrubber = Scrubber(params.scrub, kept)
    allowed = {value.casefold() for value in kept}
    engines = {
        "detect-secrets": lambda text, name: detect_secrets_findings(text, name),
        "patterns + phonenumbers": lambda text, name: (
            pattern_findings(text) + phone_findings(text, params.scrub.phone_regions)
        ),
        "presidio (email, phone)": presidio_engine(),
        "chosen: scrubber": lambda text, name: scrubber.find(text, name),
    }
    dirty, clean = corpus()
    kinds = sorted({case["kind"] for case in planted["planted"]})
    rows: dict[str, dict[str, str]] = defaultdict(dict)
    for engine, find in engines.items():
        if find is None:
            print(f"{engine}: not importable here, skipped")
            continue
        started = time.perf_counter()
        found = {
            name: [
                f for f in merge(find(text, Path(name).name)) if text[f.start : f.end].strip().casefold() not in allowed
            ]
            for name, text in {**dirty, **clean}.items()
        }
        seconds = time.perf_counter() - started
        hit: dict[str, list[bool]] = defaultdict(list)
        for case in planted["planted"]:
            hit[case["kind"]].append(covered(dirty[case["file"]], case["value"], found[case["file"]]))
        true = sum(
            any(
                f.start < text.find(case["value"]) + len(case["value"]) and text.find(case["value"]) < f.end
                for case in planted["planted"]
                if case["file"] == name
            )
            for name, text in dirty.items()
            for f in found[name]
        )
        total = sum(len(found[name]) for name in found)
        false_clean = sum(len(found[name]) for name in clean)
        for kind in kinds:
            rows[kind][engine] = f"{sum(hit[kind])}/{len(hit[kind])}"
        every = [h for kind in kinds for h in hit[kind]]
        rows["**all planted (recall)**"][engine] = f"{sum(every)}/{len(every)}"
        rows["findings on clean files (false positives)"][engine] = str(false_clean)
        rows["precision (all findings)"][engine] = f"{true / total:.2f}" if total else "-"
        rows["kept values redacted"][engine] = str(
            sum(
                any(f.start < start + len(c["value"]) and start < f.end for f in found[c["file"]])
                for c in planted["kept"]
                for start in [dirty[c["file"]].find(c["value"])]
            )
        )
        rows["seconds (whole corpus)"][engine] = f"{seconds:.2f}"
    names = [engine for engine, find in engines.items() if find is not None]
    chars = sum(len(text) for text in {**dirty, **clean}.values())
    print(
        f"{len(planted['planted'])} planted cases in {len(dirty)} files; {len(clean)} clean files; "
        f"{chars:,} characters in all\n"
    )
    print("| kind | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for kind, cells in rows.items():
        print(f"| {kind} | " + " | ".join(cells.get(name, "-") for name in names) + " |")


if __name__ == "__main__":
    main()
