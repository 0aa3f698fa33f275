from typer.testing import CliRunner

from twin_ops.cli import app

runner = CliRunner()


def test_help_lists_the_stage_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("services", "config", "validate", "features", "search", "lineage", "data"):
        assert command in result.output


def test_config_show_prints_validated_params_and_paths():
    result = runner.invoke(app, ["config", "show", "--set", "weaviate.http_port=8123"])
    assert result.exit_code == 0, result.output
    assert "http_port: 8123" in result.output
    assert "paths.state" in result.output


def test_config_show_rejects_a_bad_override_with_the_key_named():
    result = runner.invoke(app, ["config", "show", "--set", "weaviate.http_port=notaport"])
    assert result.exit_code == 2
    assert "weaviate.http_port" in result.output


def test_airflow_env_points_at_the_project():
    result = runner.invoke(app, ["services", "airflow-env"])
    assert result.exit_code == 0
    assert "AIRFLOW__CORE__LOAD_EXAMPLES=False" in result.output
    assert "AIRFLOW__CORE__DAGS_FOLDER=" in result.output


def test_config_show_masks_secrets(monkeypatch):
    monkeypatch.setenv("WEAVIATE_API_KEY", "sekrit-value")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 0
    assert "sekrit-value" not in result.output
    assert "WEAVIATE_API_KEY" in result.output
