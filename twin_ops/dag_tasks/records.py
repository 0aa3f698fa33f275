"""What the DAG tasks hand each other through XCom: small typed records.

A task function returns one of these; the DAG side stores it as ``model_dump(mode="json")`` (the
one place: plugins/twin_airflow/defaults.py ``run_stage``) and the next task function gets the
JSON back, validated into the same record by its signature (pydantic ``validate_call``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

BACKENDS = ("local", "docker")


class _XCom(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunSpec(_XCom):
    """One twin_training run, made once from the trigger (the form or the feature asset event)."""

    author: str
    backend: Literal["local", "docker"] = "local"  # a local process, or a container (DockerOperator)
    skip_dpo: bool = False
    overrides: dict[str, Any] = Field(default_factory=dict)  # dotted params.yaml keys → values


class Crawled(_XCom):
    author: str


class RawValidated(_XCom):
    author: str
    rows: int
    data_docs: str


class RawCommitted(_XCom):
    author: str
    stages: list[str]


class FeaturesValidated(_XCom):
    author: str
    cleaned_documents: int
    chunks: int
    data_docs: str


class FeaturesCommitted(_XCom):
    author: str
    stage: str
    outs: dict[str, str | None]  # path → md5: the asset event's data version


class DatasetsValidated(_XCom):
    author: str
    instruct_dataset: int
    preference_dataset: int
    data_docs: str


class StageTrained(_XCom):
    stage: str
    output_dir: str
    model_card: str
    metrics: dict[str, Any]


class CandidateRegistered(_XCom):
    model_name: str
    version: int


class EvaluationSummary(_XCom):
    # Not the gate's line itself: the evaluation logs it once, and Airflow logs every task's return value.
    promote: bool
    reasons: list[str]
    output_dir: str
    decision_file: str
    report: str
    metrics: dict[str, dict[str, float | None]]  # role → metrics (None: not measurable, e.g. a text too short)


class Promoted(_XCom):
    model_name: str
    version: int
    replaced: int | None
    endpoint: str  # the app that serves the twin now (every author's twin is served)
    model_version: str | None


class SmokeAnswer(_XCom):
    model_version: str | None
    answer: str | None
    sources: list[dict[str, Any]] = Field(default_factory=list)
