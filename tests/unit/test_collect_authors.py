"""Author configs: placeholders, validation errors that name the key, local paths."""

from __future__ import annotations

import pytest

from twin_ops.collect.authors import AuthorConfigError, load_author, parse_author, source_variables
from twin_ops.domain import SourceType


def test_the_demo_author_loads_with_the_site_url_filled_in(params, paths):
    author = load_author("wren-halvorsen", params, paths, source_variables(params, "http://127.0.0.1:4321/"))
    assert author.name == "Wren Halvorsen"
    assert [(s.type, s.url) for s in author.sources] == [
        (SourceType.ARTICLE, "http://127.0.0.1:4321/"),
        (SourceType.MEDIUM, "http://127.0.0.1:4321/medium/@wren-halvorsen"),
        (SourceType.SUBSTACK, "http://127.0.0.1:4321/substack/"),
        (SourceType.GIT, "http://127.0.0.1:4321/git/bilge-pump.git"),
        (SourceType.FILE, str(paths.root / "include" / "demo_site" / "export")),  # resolved from the root
    ]
    assert author.public_contacts == ["wren@halvorsen.example.org"]


def test_demo_site_url_defaults_to_the_demo_server_and_the_environment_overrides_it(params):
    port = params.collect.demo_site.port
    assert source_variables(params, environ={})["DEMO_SITE_URL"] == f"http://127.0.0.1:{port}"
    assert source_variables(params, environ={"DEMO_SITE_URL": "http://h:1"})["DEMO_SITE_URL"] == "http://h:1"
    assert (
        source_variables(params, "http://h:2", environ={"DEMO_SITE_URL": "http://h:1"})["DEMO_SITE_URL"] == "http://h:2"
    )


def parse(raw, tmp_path, **variables):
    return parse_author(raw, origin="cfg.yaml", variables=variables, root=tmp_path)


def test_an_unset_placeholder_is_an_error_naming_it(tmp_path):
    raw = {"id": "a", "name": "A", "sources": [{"type": "feed", "url": "${FEED_HOST}/rss"}]}
    with pytest.raises(AuthorConfigError, match=r"sources\.0\.url: \$\{FEED_HOST\} is not set"):
        parse(raw, tmp_path)
    assert parse(raw, tmp_path, FEED_HOST="https://x.test").sources[0].url == "https://x.test/rss"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "expected a mapping"),
        ({"id": "Bad Id", "name": "A", "sources": []}, r"id: String should match pattern"),
        ({"id": "a", "name": "A", "sources": [{"type": "blogpost", "url": "https://x"}]}, r"sources\.0\.type: Input"),
        ({"id": "a", "name": "A", "sources": [{"type": "feed"}]}, r"sources\.0\.url: Field required"),
        (
            {"id": "a", "name": "A", "sources": [{"type": "feed", "url": "x", "depth": 3}]},
            r"sources\.0\.depth: unknown",
        ),
        ({"id": "a", "name": "A", "sources": []}, "no sources"),
        ({"id": "a", "name": "A", "sources": {"type": "feed"}}, "expected a list"),
        ({"id": "a", "name": "A", "sources": [{"type": "medium", "url": "medium.com/@a"}]}, "needs an http"),
        ({"id": "a", "name": "A", "sources": [{"type": "git", "url": "./no/such/repo"}]}, "does not exist"),
        ({"id": "a", "name": "A", "sources": [{"type": "file", "url": "/no/such/export"}]}, "does not exist"),
        (
            {
                "id": "a",
                "name": "A",
                "sources": [{"type": "feed", "url": "https://x/f"}, {"type": "feed", "url": "https://x/f"}],
            },
            r"sources\.1: duplicate source",
        ),
    ],
)
def test_invalid_configs_are_rejected_with_the_key_named(raw, message, tmp_path):
    with pytest.raises(AuthorConfigError, match=message):
        parse(raw, tmp_path)


def test_local_paths_resolve_against_the_project_root_and_git_urls_pass_through(tmp_path):
    (tmp_path / "exports").mkdir()
    raw = {
        "id": "a",
        "name": "A",
        "sources": [
            {"type": "file", "url": "exports"},
            {"type": "github", "url": "https://github.com/a/b.git"},
            {"type": "git", "url": "git@example.org:a/b.git"},
        ],
    }
    sources = parse(raw, tmp_path).sources
    assert sources[0].url == str((tmp_path / "exports").resolve())
    assert [s.url for s in sources[1:]] == ["https://github.com/a/b.git", "git@example.org:a/b.git"]


def test_a_missing_file_lists_the_known_authors_and_the_id_must_match_the_file(params, paths, tmp_path):
    with pytest.raises(AuthorConfigError, match=r"known: .*wren-halvorsen"):
        load_author("nobody", params, paths, {})
    authors = tmp_path / "authors"
    authors.mkdir()
    (authors / "x.yaml").write_text("id: y\nname: Y\nsources: [{type: feed, url: 'https://y.test/rss'}]\n")
    (authors / "broken.yaml").write_text("id: [unclosed\n")
    other = params.model_copy(update={"collect": params.collect.model_copy(update={"authors_dir": authors})})
    with pytest.raises(AuthorConfigError, match="file is named for 'x'"):
        load_author("x", other, paths, {})
    with pytest.raises(AuthorConfigError, match="not valid YAML"):
        load_author("broken", other, paths, {})
