"""Local exports: a folder of Markdown / text / HTML, and a LinkedIn data export (zip)."""

from __future__ import annotations

import zipfile

from twin_ops.collect.exports import collect_export
from twin_ops.collect.results import Collected
from twin_ops.domain import DocumentKind, Platform, QuarantineReason, Source, SourceType

ESSAY = "The mooring lines creak all night, and that is how you know the boat is still there. " * 3


def collect(source: Source, params, tmp_path) -> Collected:
    collected = Collected("wren-halvorsen")
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    collect_export(source, "wren-halvorsen", params.collect.files, params.collect.min_content_chars, scratch, collected)
    return collected


def test_a_folder_export_reads_markdown_text_and_html_and_quarantines_the_rest(params, tmp_path):
    folder = tmp_path / "export"
    (folder / "drafts").mkdir(parents=True)
    (folder / "essay.md").write_text(f"---\ntitle: On Mooring Lines\nsubtitle: Creaks\n---\n{ESSAY}\n")
    (folder / "drafts" / "untitled.md").write_text(f"# Heading As Title\n\n{ESSAY}")
    (folder / "note.txt").write_text(ESSAY)
    (folder / "page.html").write_text(
        f"<html><head><title>Harbour Log</title></head><body><nav>Home | About</nav><article><p>{ESSAY}</p>"
        "</article><footer>Copyright nobody</footer></body></html>"
    )
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02" * 10)
    (folder / "stub.md").write_text("# Stub\n\ntoo short")
    (folder / "big.txt").write_text("x" * (params.collect.files.max_file_bytes + 1))
    (folder / ".hidden.md").write_text(ESSAY)
    (tmp_path / "elsewhere.md").write_text(ESSAY)
    (folder / "link.md").symlink_to(tmp_path / "elsewhere.md")

    collected = collect(Source(type=SourceType.FILE, url=str(folder)), params, tmp_path)

    titles = {d.title: d for d in collected.documents}
    assert set(titles) == {"On Mooring Lines", "Heading As Title", "note", "Harbour Log"}
    assert all(d.platform == Platform.FILE and d.kind == DocumentKind.ARTICLE for d in collected.documents)
    assert titles["On Mooring Lines"].content == f"On Mooring Lines\n\n{ESSAY.strip()}"
    assert titles["On Mooring Lines"].metadata["subtitle"] == "Creaks"
    assert "Copyright nobody" not in titles["Harbour Log"].content
    assert titles["note"].source_url == (folder / "note.txt").as_uri()
    reasons = {item.url.rsplit("/", 1)[1]: item.reason for item in collected.quarantine}
    assert reasons == {
        "binary.txt": QuarantineReason.NON_TEXT,
        "stub.md": QuarantineReason.EMPTY_EXTRACTION,
        "big.txt": QuarantineReason.TOO_LARGE,
        "link.md": QuarantineReason.SYMLINK_OUTSIDE,
    }
    assert collected.counts.skipped["extension"] == 1


def test_front_matter_is_parsed_as_yaml_and_a_broken_block_is_read_as_text(params, tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    header = "---\ntitle: 'Tides: a primer'\ndate: 2024-05-01\ntags: [sea, tides]\n---\n"
    (folder / "tides.md").write_text(f"{header}{ESSAY}\n")
    (folder / "broken.md").write_text(f"---\ntitle: [unclosed\n---\n{ESSAY}\n")
    collected = collect(Source(type=SourceType.FILE, url=str(folder)), params, tmp_path)
    titles = {d.title: d for d in collected.documents}
    assert set(titles) == {"Tides: a primer", "broken"}
    assert titles["Tides: a primer"].metadata["date"] == "2024-05-01"
    assert titles["Tides: a primer"].content == f"Tides: a primer\n\n{ESSAY.strip()}"
    assert "title: [unclosed" in titles["broken"].content


def test_a_linkedin_export_zip_gives_articles_and_posts(params, tmp_path):
    archive = tmp_path / "Basic_LinkedInDataExport.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr(
            "Articles/Articles/On call at sea.html",
            "<html><head><title>On call at sea</title></head>"
            f"<body><h1>On call at sea</h1><p>{ESSAY}</p></body></html>",
        )
        out.writestr(
            "Shares.csv",
            "Date,ShareLink,ShareCommentary,SharedUrl,MediaUrl,Visibility\n"
            f'2025-03-01 09:00:00,https://www.linkedin.com/feed/update/urn:li:share:1,"{ESSAY}",,,PUBLIC\n'
            "2025-03-02 09:00:00,https://www.linkedin.com/feed/update/urn:li:share:2,,https://x.test,,PUBLIC\n",
        )
        out.writestr("Connections.csv", "First Name,Last Name\nA,B\n")

    collected = collect(Source(type=SourceType.LINKEDIN_EXPORT, url=str(archive)), params, tmp_path)

    kinds = sorted((d.kind, d.title) for d in collected.documents)
    assert kinds == [(DocumentKind.ARTICLE, "On call at sea"), (DocumentKind.POST, "")]
    post = next(d for d in collected.documents if d.kind == DocumentKind.POST)
    assert post.source_url == "https://www.linkedin.com/feed/update/urn:li:share:1"
    assert post.content == ESSAY.strip() and post.platform == Platform.LINKEDIN
    assert collected.counts.skipped["share_without_text"] == 1
    assert collected.quarantine == []
