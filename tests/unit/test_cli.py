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


def test_a_twin_ops_error_is_one_red_line_with_its_exit_code(monkeypatch):
    import twin_ops.cli as cli
    from twin_ops.errors import InputError, TwinOpsError

    class Busy(TwinOpsError):
        exit_code = 5

    def failing(*_, **__):
        raise Busy("the registry is locked")

    monkeypatch.setattr(cli, "_registry", failing)
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 5
    assert "Busy: the registry is locked" in result.output and "Traceback" not in result.output

    monkeypatch.setattr(cli, "_registry", lambda: (_ for _ in ()).throw(InputError("bad name")))
    assert runner.invoke(app, ["models", "list"]).exit_code == 2


def test_an_unexpected_error_keeps_its_traceback(monkeypatch):
    import twin_ops.cli as cli

    def broken():
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli, "_registry", broken)
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 1 and isinstance(result.exception, ZeroDivisionError)


def test_a_bad_set_is_named_with_exit_code_2():
    result = runner.invoke(app, ["config", "show", "--set", "weaviate"])
    assert result.exit_code == 2
    assert "'weaviate': expected section.key=value" in result.output
