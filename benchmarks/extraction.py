"""Main-text extraction quality: twin-ops' extractor against trafilatura's own settings, same pages.

Pages: every page with a hand-checked main text that the project has —
* ``include/blog_engines``: posts in the markup of real blog engines (Hugo, Jekyll, Blogger,
  WordPress with and without JSON-LD, Ghost, a news site with a cookie wall, an engineering blog);
  truth in ``include/blog_engines/truth/<name>.txt``;
* the demo site (``twin_ops.demo``): Wren Halvorsen's posts in blog, Medium-like and Substack-like
  layouts; truth = the post's Markdown source.

Score: token-shingle precision / recall / F1 (shingles of ``--k`` lower-cased word tokens, Markdown
syntax removed) of the extracted text against the truth (title + main text), per page, averaged
over the pages of each group (macro average).

Configurations: ``twin-ops`` (``collect.extract.extract_article``: Markdown, platform pruning,
title from metadata), ``trafilatura`` (``trafilatura.extract`` with its defaults), ``precision``
(``favor_precision=True``), ``recall`` (``favor_recall=True``), and ``twin-ops, no fallback``
(``extract_article`` with trafilatura's ``fast=True``: its fallback extractors, readability and
jusText, which it runs when its own result looks wrong, switched off — what the fallbacks buy).
Run: .venv/bin/python benchmarks/extraction.py [--k 4] [--pages]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import trafilatura  # noqa: E402
import yaml  # noqa: E402

from twin_ops.collect import extract as extract_module  # noqa: E402
from twin_ops.demo.site import CONTENT_DIR, MEDIUM_HANDLE, _medium_slug, build_site, read_posts  # noqa: E402

BLOG_ENGINES = ROOT / "include" / "blog_engines"
BASE = "http://127.0.0.1:9"


def tokens(text: str) -> list[str]:
    text = re.sub(r"^\s*(\d+\.|[-*+]|#+|>)\s+", " ", text, flags=re.MULTILINE)  # list/heading/quote marks
    text = re.sub(r"[*_`|]", " ", text)
    return re.findall(r"[\w'’]+", text.lower())


def shingles(text: str, k: int) -> Counter[tuple[str, ...]]:
    words = tokens(text)
    return Counter(tuple(words[i : i + k]) for i in range(max(1, len(words) - k + 1)))


def score(extracted: str, truth: str, k: int) -> tuple[float, float, float]:
    got, want = shingles(extracted, k), shingles(truth, k)
    common = sum((got & want).values())
    precision = common / max(1, sum(got.values()))
    recall = common / max(1, sum(want.values()))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def pages() -> list[tuple[str, str, str, str]]:
    """(group, url, html, truth) for every page with a hand-checked main text."""
    found = []
    manifest = yaml.safe_load((BLOG_ENGINES / "pages.yaml").read_text())
    for post in manifest["posts"]:
        path = post["path"]
        file = BLOG_ENGINES / "site" / path.lstrip("/")
        file = file / "index.html" if path.endswith("/") else file
        html = file.read_text().replace("__SITE__", BASE)
        found.append(("blog engines", BASE + path, html, (BLOG_ENGINES / "truth" / f"{post['truth']}.txt").read_text()))
    with tempfile.TemporaryDirectory() as scratch:
        site = build_site(Path(scratch), BASE, ROOT / CONTENT_DIR, None, 10)
        for post in read_posts(ROOT / CONTENT_DIR / "posts"):
            path = {
                "blog": f"/posts/{post.slug}/",
                "medium": f"/medium/{MEDIUM_HANDLE}/{_medium_slug(post)}/",
                "substack": f"/substack/p/{post.slug}/",
            }[post.platform]
            html = (site / path.lstrip("/") / "index.html").read_text()
            found.append((f"demo site ({post.platform})", BASE + path, html, f"{post.title}\n\n{post.body}"))
    return found


def no_fallback(html: str, url: str) -> str:
    original = trafilatura.extract

    def without(*args, **kwargs):
        return original(*args, **{**kwargs, "fast": True})

    with mock.patch.object(extract_module.trafilatura, "extract", without):
        return extract_module.extract_article(html, url).content


CONFIGURATIONS: dict[str, Callable[[str, str], str]] = {
    "twin-ops": lambda html, url: extract_module.extract_article(html, url).content,
    "trafilatura": lambda html, url: trafilatura.extract(html, url=url) or "",
    "precision": lambda html, url: trafilatura.extract(html, url=url, favor_precision=True) or "",
    "recall": lambda html, url: trafilatura.extract(html, url=url, favor_recall=True) or "",
    "twin-ops, no fallback": no_fallback,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=4, help="words per shingle")
    parser.add_argument("--pages", action="store_true", help="also print every page's F1")
    args = parser.parse_args()
    rows: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    per_page = []
    for group, url, html, truth in pages():
        scores = {name: score(extract(html, url), truth, args.k) for name, extract in CONFIGURATIONS.items()}
        for name, value in scores.items():
            rows.setdefault((group, name), []).append(value)
            rows.setdefault(("all pages", name), []).append(value)
        per_page.append((url.removeprefix(BASE), {name: value[2] for name, value in scores.items()}))
    groups = [*sorted({group for group, _ in rows if group != "all pages"}), "all pages"]
    print(f"token-shingle scores (k={args.k}), macro average over pages")
    print(f"{'pages':<22} {'n':>3} " + " ".join(f"{name:>24}" for name in CONFIGURATIONS))
    print(f"{'':<26} " + " ".join(f"{'P / R / F1':>24}" for _ in CONFIGURATIONS))
    for group in groups:
        n = len(rows[(group, "twin-ops")])
        cells = []
        for name in CONFIGURATIONS:
            values = rows[(group, name)]
            p, r, f = (sum(v[i] for v in values) / len(values) for i in range(3))
            cells.append(f"{p:.3f} / {r:.3f} / {f:.3f}")
        print(f"{group:<22} {n:>3} " + " ".join(f"{cell:>24}" for cell in cells))
    if args.pages:
        print()
        for path, f1 in per_page:
            print(f"{path[:60]:<60} " + " ".join(f"{name}={value:.3f}" for name, value in f1.items()))


if __name__ == "__main__":
    main()
