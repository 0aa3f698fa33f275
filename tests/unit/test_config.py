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
