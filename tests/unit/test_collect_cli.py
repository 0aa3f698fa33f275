"""The collect commands of the CLI (the crawls themselves run in tests/integration)."""

from typer.testing import CliRunner

from twin_ops.cli import app

runner = CliRunner()


def test_help_lists_crawl_and_demo_site():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "crawl" in result.output and "demo-site" in result.output


def test_crawl_of_an_unknown_author_exits_2_naming_the_file():
    result = runner.invoke(app, ["crawl", "--author", "nobody"])
    assert result.exit_code == 2
    assert "nobody.yaml: no such author config" in " ".join(result.output.split())


def test_crawl_rejects_a_bad_collect_parameter():
    result = runner.invoke(app, ["crawl", "--author", "wren-halvorsen", "--set", "collect.max_depth=-1"])
    assert result.exit_code == 2
    assert "collect.max_depth" in result.output
