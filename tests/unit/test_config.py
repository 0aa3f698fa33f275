from pathlib import Path

import pytest
import yaml

from twin_ops.config import ConfigError, env_overrides, load_params

ROOT = Path(__file__).resolve().parents[2]


def write_params(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_repository_params_are_valid():
    params = load_params(ROOT / "params.yaml", use_env=False)
    assert params.weaviate.version.count(".") == 2
    assert params.airflow.parallelism >= 1


def test_unknown_key_is_named(tmp_path):
    path = write_params(tmp_path, lambda raw: raw["weaviate"].update(htp_port=1))
    with pytest.raises(ConfigError, match=r"weaviate\.htp_port: unknown key"):
        load_params(path, use_env=False)


def test_bad_value_is_named_with_what_was_given(tmp_path):
    path = write_params(tmp_path, lambda raw: raw["weaviate"].update(http_port=70000))
    with pytest.raises(ConfigError, match=r"weaviate\.http_port: .*less than or equal to 65535.*70000"):
        load_params(path, use_env=False)


def test_missing_section_is_named(tmp_path):
    path = write_params(tmp_path, lambda raw: raw.pop("docker"))
    with pytest.raises(ConfigError, match=r"docker: Field required"):
        load_params(path, use_env=False)


def test_not_yaml_and_missing_file(tmp_path):
    broken = tmp_path / "params.yaml"
    broken.write_text("weaviate: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(broken)
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "absent.yaml")


def test_env_overrides_are_typed_and_nested(monkeypatch):
    monkeypatch.setenv("TWIN_OPS_PARAM__weaviate__http_port", "8090")
    monkeypatch.setenv("TWIN_OPS_PARAM__AIRFLOW__PARALLELISM", "2")
    params = load_params(ROOT / "params.yaml")
    assert params.weaviate.http_port == 8090
    assert params.airflow.parallelism == 2


def test_explicit_overrides_win_over_env(monkeypatch):
    monkeypatch.setenv("TWIN_OPS_PARAM__weaviate__http_port", "8090")
    params = load_params(ROOT / "params.yaml", overrides={"weaviate": {"http_port": 8091}})
    assert params.weaviate.http_port == 8091


def test_malformed_env_override_is_rejected():
    with pytest.raises(ConfigError, match="TWIN_OPS_PARAM__weaviate"):
        env_overrides({"TWIN_OPS_PARAM__weaviate": "1"})


def test_params_are_immutable():
    params = load_params(ROOT / "params.yaml", use_env=False)
    with pytest.raises(ValueError):
        params.weaviate.http_port = 1


def test_one_override_format_from_the_cli_a_dag_form_and_the_environment(monkeypatch):
    from twin_ops.config import as_assignments, parse_overrides

    from_cli = parse_overrides(["training.sft.max_steps=20", "training.lora.target_modules=[q_proj, v_proj]"])
    from_form = parse_overrides({"training.sft.max_steps": 20, "training.lora.target_modules": ["q_proj", "v_proj"]})
    from_env = env_overrides(
        {
            "TWIN_OPS_PARAM__training__sft__max_steps": "20",
            "TWIN_OPS_PARAM__TRAINING__LORA__TARGET_MODULES": "[q_proj, v_proj]",
        }
    )
    assert (
        from_cli
        == from_form
        == from_env
        == {"training": {"sft": {"max_steps": 20}, "lora": {"target_modules": ["q_proj", "v_proj"]}}}
    )
    flat = {"training.base_model": "/models/my base", "serving.author": "true", "training.packing": True}
    assert parse_overrides(as_assignments(flat)) == parse_overrides(flat)  # what a child `--set` receives
    params = load_params(ROOT / "params.yaml", ["training.sft.max_steps=20"], use_env=False)
    assert params.training.sft.max_steps == 20


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["weaviate.http_port"], r"--set 'weaviate.http_port': expected section.key=value"),
        (["weaviate=1"], r"--set 'weaviate': expected section.key=value"),
        ({"training..r": 1}, r"'training..r': expected section.key=value"),
        (["weaviate.htp_port=1"], r"weaviate\.htp_port: unknown key"),
        ({"training.lora.r": 0}, r"training\.lora\.r: Input should be greater than or equal to 1"),
    ],
)
def test_a_bad_override_names_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_params(ROOT / "params.yaml", overrides, use_env=False)


def test_config_errors_are_input_errors_with_exit_code_2():
    from twin_ops.errors import InputError

    assert issubclass(ConfigError, InputError) and issubclass(ConfigError, ValueError)
    assert ConfigError.exit_code == 2 and not ConfigError.retryable
