"""Configuration: tunable parameters from params.yaml, endpoints and secrets from the environment.

Two kinds of configuration, kept apart on purpose:

* ``Params`` — every tunable number and name, read from ``params.yaml`` (the one source of truth,
  also read by DVC). Unknown keys are errors, so a typo never silently falls back to a default.
  One run can override keys with ``TWIN_OPS_PARAM__<section>__<key>`` environment variables or a
  nested dict (Airflow DAG params).
* ``Settings`` — where services live and how to authenticate (``WEAVIATE_URL``,
  ``WEAVIATE_API_KEY``, ``RAY_ADDRESS``, ``DOCKER_HOST``). Never written in code or params.yaml.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from twin_ops.errors import InputError

PARAMS_FILE = "params.yaml"
DECISION_FILE = "decision.json"  # the gate's decision, in each author's evaluation folder
PARAM_ENV_PREFIX = "TWIN_OPS_PARAM__"


class ConfigError(InputError, ValueError):
    """A bad params.yaml or override; the message names the offending key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectParams(_Section):
    state_dir: Path = Path(".twin")
    data_dir: Path = Path("data")
    authors: list[str] = Field(default_factory=list)


class WeaviateParams(_Section):
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    go_package: str
    http_port: int = Field(ge=1, le=65535)
    grpc_port: int = Field(ge=1, le=65535)
    startup_timeout_s: float = Field(gt=0)


class DockerParams(_Section):
    base_image: str
    debian_suite: str
    debian_mirror: str
    startup_timeout_s: float = Field(gt=0)


class GitCollectParams(_Section):
    extensions: list[str]
    skip_dirs: list[str]
    max_file_bytes: int = Field(ge=1)
    clone_timeout_s: float = Field(gt=0)


class FileCollectParams(_Section):
    extensions: list[str]
    max_file_bytes: int = Field(ge=1)


class DemoSiteParams(_Section):
    port: int = Field(ge=1, le=65535)
    posts_per_page: int = Field(ge=1)


class ArticleRuleParams(_Section):
    # The content rule (collect/articles.py): a page that does not declare itself an article is one
    # when its main text has at least min_chars characters in min_paragraphs paragraphs (and a date);
    # a page with min_teasers headings or <article> teasers linking elsewhere is a listing page.
    min_chars: int = Field(ge=1)
    min_paragraphs: int = Field(ge=1)
    min_teasers: int = Field(ge=2)


class CollectParams(_Section):
    authors_dir: Path
    user_agent: str = Field(min_length=1)
    robots_user_agent: str = Field(min_length=1)
    obey_robots_txt: bool
    max_depth: int = Field(ge=0)
    max_pages: int = Field(ge=1)
    concurrent_requests: int = Field(ge=1)
    concurrent_requests_per_domain: int = Field(ge=1)
    download_delay_s: float = Field(ge=0)
    autothrottle_start_delay_s: float = Field(ge=0)
    autothrottle_max_delay_s: float = Field(gt=0)
    autothrottle_target_concurrency: float = Field(gt=0)
    download_timeout_s: float = Field(gt=0)
    max_page_bytes: int = Field(ge=1)
    retry_times: int = Field(ge=0)
    retry_backoff_base_s: float = Field(ge=0)
    retry_backoff_max_s: float = Field(ge=0)
    max_redirects: int = Field(ge=1)
    http_cache: bool
    trust_sitemap_lastmod_days: float = Field(ge=0)
    log_level: str = Field(pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    min_content_chars: int = Field(ge=1)
    extract_workers: int = Field(ge=0)
    articles: ArticleRuleParams
    git: GitCollectParams
    files: FileCollectParams
    demo_site: DemoSiteParams


class ChunkingBudget(_Section):
    max_tokens: int = Field(ge=8)
    overlap_tokens: int = Field(ge=0)


class ChunkingParams(_Section):
    article: ChunkingBudget
    post: ChunkingBudget
    repository: ChunkingBudget


class SearchParams(_Section):
    default_k: int = Field(ge=1)
    max_k: int = Field(ge=1)
    default_alpha: float = Field(ge=0, le=1)


class FeaturesParams(_Section):
    embedding_model: str
    embedding_batch_size: int = Field(ge=1)
    device: str = Field(pattern=r"^(cpu|cuda|auto)$")
    boilerplate_patterns: list[str]
    tracking_parameters: list[str]
    chunking: ChunkingParams
    import_batch_size: int = Field(ge=1)
    documents_alias: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$")
    chunks_alias: str = Field(pattern=r"^[A-Z][A-Za-z0-9]*$")
    search: SearchParams


class RawDocumentsQuality(_Section):
    min_documents: int = Field(ge=0)
    min_content_chars: int = Field(ge=1)
    max_content_chars: int = Field(ge=1)
    near_empty_chars: int = Field(ge=0)
    max_near_empty_share: float = Field(ge=0, le=1)
    max_clock_skew_minutes: float = Field(ge=0)


class CleanedDocumentsQuality(_Section):
    min_documents: int = Field(ge=0)
    min_text_chars: int = Field(ge=1)
    max_text_chars: int = Field(ge=1)


class ChunksQuality(_Section):
    min_chunks: int = Field(ge=0)
    min_tokens: int = Field(ge=1)
    max_tokens: int = Field(ge=1)
    min_unique_text_share: float = Field(ge=0, le=1)


class InstructDatasetQuality(_Section):
    min_samples: int = Field(ge=0)
    min_instruction_chars: int = Field(ge=1)
    max_instruction_chars: int = Field(ge=1)
    min_answer_chars: int = Field(ge=1)
    max_answer_chars: int = Field(ge=1)
    min_answer_tokens: int = Field(ge=1)
    max_answer_tokens: int = Field(ge=1)


class PreferenceDatasetQuality(_Section):
    min_samples: int = Field(ge=0)
    min_prompt_chars: int = Field(ge=1)
    min_chosen_chars: int = Field(ge=1)
    min_rejected_chars: int = Field(ge=1)


class FeedbackQuality(_Section):
    # The "feedback" suite over data/feedback/<author>/feedback.jsonl (ratings and corrections).
    min_records: int = Field(ge=0)
    min_correction_tokens: int = Field(ge=1)  # whitespace tokens; the API refuses more than the max
    max_correction_tokens: int = Field(ge=1)


class QualityParams(_Section):
    reports_dir: Path
    raw_documents: RawDocumentsQuality
    cleaned_documents: CleanedDocumentsQuality
    chunks: ChunksQuality
    instruct_dataset: InstructDatasetQuality
    preference_dataset: PreferenceDatasetQuality
    feedback: FeedbackQuality


SCRUB_KINDS = (
    "aws_key", "github_token", "private_key", "credential", "slack_token", "stripe_key", "jwt", "basic_auth",
    "api_token", "email", "phone",
)  # fmt: skip


class ScrubParams(_Section):
    # What twin_ops/quality/scrub.py redacts before features and datasets read the documents.
    kinds: list[str]
    replacement: str = Field(min_length=1)  # "{kind}" is filled in
    phone_regions: list[str]  # numbers written without +<country> are read as these countries'
    allowlist: list[str]  # never redacted, beside the author's name and public_contacts

    @model_validator(mode="after")
    def _known_kinds(self) -> ScrubParams:
        unknown = sorted(set(self.kinds) - set(SCRUB_KINDS))
        if unknown:
            raise ValueError(f"unknown kinds {unknown}; known: {list(SCRUB_KINDS)}")
        if "{kind}" not in self.replacement:
            raise ValueError("replacement must contain {kind}")
        return self


class TeacherParams(_Section):
    model: str = Field(min_length=1)
    requests_per_minute: float = Field(gt=0)
    max_retries: int = Field(ge=0)
    timeout_s: float = Field(gt=0)
    temperature: float = Field(ge=0, le=2)
    max_tokens: int = Field(ge=1)


class DatasetsParams(_Section):
    kinds: list[str] = Field(min_length=1)
    passage_min_chars: int = Field(ge=1)
    passage_max_chars: int = Field(ge=1)
    max_passages_per_document: int = Field(ge=0)
    instruction_source: str = Field(pattern=r"^(local|teacher|template)$")
    instruction_min_chars: int = Field(ge=1)
    instruction_max_chars: int = Field(ge=1)
    max_copy_share: float = Field(ge=0, le=1)
    fallback_templates: list[str] = Field(min_length=1)
    generation_batch_size: int = Field(ge=1)
    instruction_max_new_tokens: int = Field(ge=1)
    answer_max_new_tokens: int = Field(ge=1)
    test_size: float = Field(gt=0, lt=1)
    seed: int
    min_chosen_chars: int = Field(ge=1)
    teacher: TeacherParams
    use_feedback: bool = False  # trusted corrections (data/feedback/<author>) become preference pairs


class LoraParams(_Section):
    r: int = Field(ge=1)
    alpha: int = Field(ge=1)
    dropout: float = Field(ge=0, lt=1)
    target_modules: list[str] = Field(min_length=1)


class StageParams(_Section):
    learning_rate: float = Field(gt=0)
    epochs: float = Field(gt=0)
    max_steps: int = Field(ge=0)  # 0 = the epochs decide
    batch_size: int = Field(ge=1)
    gradient_accumulation_steps: int = Field(ge=1)
    warmup_steps: int = Field(ge=0)
    lr_scheduler: str = Field(min_length=1)


class DpoParams(StageParams):
    beta: float = Field(gt=0)


class TrainingContainerParams(_Section):
    image: str = Field(min_length=1)
    local_image: str = Field(min_length=1)
    use_local_image: bool
    gpus: int = Field(ge=0)


class TrainingParams(_Section):
    base_model: str = Field(min_length=1)
    runner: str = Field(pattern=r"^(local|container)$")
    device: str = Field(pattern=r"^(cpu|cuda|auto)$")
    output_dir: Path
    seed: int
    max_length: int = Field(ge=16)
    lora: LoraParams
    sft: StageParams
    dpo: DpoParams
    save_steps: int = Field(ge=1)
    save_total_limit: int = Field(ge=1)
    logging_steps: int = Field(ge=1)
    gradient_checkpointing: bool
    packing: bool
    load_in_4bit: bool
    container: TrainingContainerParams


class AirflowTimeoutParams(_Section):
    crawl: int = Field(gt=0)
    features: int = Field(gt=0)
    datasets: int = Field(gt=0)
    training: int = Field(gt=0)
    evaluation: int = Field(gt=0)
    serving: int = Field(gt=0)
    default: int = Field(gt=0)


class AirflowParams(_Section):
    parallelism: int = Field(ge=1)
    max_active_tasks_per_dag: int = Field(ge=1)
    max_dag_parse_seconds: float = Field(gt=0)
    nightly_schedule: str = Field(min_length=9)
    retries: int = Field(ge=0)
    retry_delay_s: int = Field(ge=0)
    max_retry_delay_s: int = Field(ge=0)
    timeouts_s: AirflowTimeoutParams
    gpu_pool: str = Field(min_length=1)
    gpu_pool_slots: int = Field(ge=1)


class LlmParams(_Section):
    # One set of generation defaults for every stage that runs a model (twin_ops.llm).
    repetition_penalty: float = Field(ge=1)
    no_repeat_ngram_size: int = Field(ge=0)  # 0 = off


class ConversationParams(_Section):
    # How a chat's follow-up is searched (twin_ops.rag.retrieve.conversation_query); measured by
    # benchmarks/conversation.py.
    method: Literal["last", "concat", "weighted", "condense"]
    turns: int = Field(ge=1)  # the user's turns searched with, the new one included (1 = the last alone)
    decay: float = Field(gt=0, le=1)  # weighted: each older turn's vector weighs this much less
    condense_max_tokens: int = Field(ge=1)
    condense_template: str = Field(min_length=1)  # {history}: earlier user turns; {question}: the new one


class RagParams(_Section):
    # The one retrieval and prompt path (twin_ops.rag): serving and evaluation both read it.
    default_k: int = Field(ge=1)
    max_k: int = Field(ge=1)
    alpha: float = Field(ge=0, le=1)
    query_expansions: int = Field(ge=0)  # 0 = off
    expansion_max_tokens: int = Field(ge=1)
    expansion_temperature: float = Field(gt=0, le=2)
    expansion_top_p: float = Field(gt=0, le=1)
    expansion_template: str = Field(min_length=1)
    conversation: ConversationParams
    reranker: str  # "" = score fusion
    rerank_candidates: int = Field(ge=1)
    device: str = Field(pattern=r"^(cpu|cuda|auto)$")  # the cross-encoder's
    context_token_budget: int = Field(ge=16)
    prompt_template: str = Field(min_length=1)


class ServingGenerationParams(_Section):
    default_max_tokens: int = Field(ge=1)
    max_tokens_limit: int = Field(ge=1)
    default_temperature: float = Field(ge=0, le=2)
    default_top_p: float = Field(gt=0, le=1)
    expose_prompt_ids: bool = False  # POST /v1/debug/prompt (behind the API key): for tests, never in production


class ServingLimitsParams(_Section):
    max_query_chars: int = Field(ge=1)
    max_messages: int = Field(ge=1)
    max_message_chars: int = Field(ge=1)
    max_body_bytes: int = Field(ge=1024)
    max_correction_chars: int = Field(ge=1)  # POST /v1/feedback's correction


class ServingBatchingParams(_Section):
    embed_max_batch_size: int = Field(ge=1)
    embed_wait_s: float = Field(ge=0)
    generate_max_batch_size: int = Field(ge=1)
    generate_token_budget: int = Field(ge=1)
    generate_wait_s: float = Field(ge=0)


class ServingAdmissionParams(_Section):
    max_queued: int = Field(ge=1)
    headroom: float = Field(gt=0, le=1)


class ServingTimeoutParams(_Section):
    retrieval_s: float = Field(gt=0)
    generation_s: float = Field(gt=0)
    health_s: float = Field(gt=0)
    request_s: float = Field(gt=0)
    startup_s: float = Field(gt=0)
    retry_backoff_s: float = Field(gt=0)


class ServingRayParams(_Section):
    num_cpus: int = Field(ge=1)
    object_store_mb: int = Field(ge=75)
    dashboard_port: int = Field(ge=1, le=65535)
    metrics_export_port: int = Field(ge=1, le=65535)


class ServingTracesParams(_Section):
    # One trace per answer, in SQLite (twin_ops/traces): what was asked, retrieved and answered.
    enabled: bool
    path: str  # "" = <state_dir>/traces/traces.sqlite; a relative path is under the project root
    max_records: int = Field(ge=1)
    max_age_days: float = Field(gt=0)
    # Without TWIN_OPS_API_KEY nobody is authenticated: feedback then counts as trusted (reaches
    # training) only when this is true (a single-user machine).
    trust_without_key: bool


class ServingParams(_Section):
    config_file: Path
    app_name: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    author: str = Field(min_length=1)
    model_ref: str = Field(min_length=1)
    max_twins_per_replica: int = Field(ge=1)
    device: str = Field(pattern=r"^(cpu|cuda|auto)$")
    torch_threads: int = Field(ge=1)
    smoke_query: str = Field(min_length=1)
    generation: ServingGenerationParams
    limits: ServingLimitsParams
    batching: ServingBatchingParams
    admission: ServingAdmissionParams
    timeouts: ServingTimeoutParams
    ray: ServingRayParams
    traces: ServingTracesParams


class JudgeParams(_Section):
    # LLM-as-judge through an OpenAI-compatible endpoint (JUDGE_BASE_URL / JUDGE_API_KEY in the env).
    enabled: bool
    model: str = Field(min_length=1)
    temperature: float = Field(ge=0, le=2)
    max_tokens: int = Field(ge=1)
    timeout_s: float = Field(gt=0)
    max_retries: int = Field(ge=0)


class BootstrapParams(_Section):
    # Paired bootstrap intervals for every metric (twin_ops.evaluation.bootstrap).
    resamples: int = Field(ge=100)
    confidence: float = Field(gt=0.5, lt=1)
    seed: int


class EvaluationParams(_Section):
    model_name: str = Field(pattern=r"^[a-z0-9{][a-z0-9{}_-]*$")  # "{author}" is filled in
    candidate_stage: str = Field(pattern=r"^(sft|dpo)$")
    output_dir: Path
    num_samples: int = Field(ge=0)  # 0 = every held-out sample
    min_samples: int = Field(ge=1)
    max_new_tokens: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    primary_metric: str = Field(min_length=1)
    margin: float = Field(ge=0)
    guarded: dict[str, float] = Field(default_factory=dict)
    bootstrap: BootstrapParams
    stylometry_words: int = Field(ge=5)
    ttr_window: int = Field(ge=5)
    repetition_words: int = Field(ge=3)
    retrieval: bool
    exclude_source_document: bool
    judge: JudgeParams


class Params(_Section):
    project: ProjectParams
    weaviate: WeaviateParams
    docker: DockerParams
    collect: CollectParams
    features: FeaturesParams
    quality: QualityParams
    scrub: ScrubParams
    datasets: DatasetsParams
    training: TrainingParams
    airflow: AirflowParams
    llm: LlmParams
    rag: RagParams
    serving: ServingParams
    evaluation: EvaluationParams


class Settings(BaseSettings):
    """Endpoints and secrets, from the environment only."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    # Project root; default: the nearest folder at or above the working directory with params.yaml.
    twin_ops_home: Path | None = None
    # Set to use an existing Weaviate (docker-compose, a cluster); unset = local embedded server.
    weaviate_url: str | None = None
    weaviate_grpc_url: str | None = None
    weaviate_api_key: str | None = None
    ray_address: str | None = None
    # Serve's REST API on a cluster's dashboard (what `serve deploy --address` uses); unset = the
    # local Ray's, on 127.0.0.1:serving.ray.dashboard_port.
    ray_dashboard_address: str | None = None
    # Where the twin API answers when it is not the local app on serving.host:port (a Ray cluster).
    twin_ops_serve_url: str | None = None
    docker_host: str | None = None
    # Optional teacher for instruction writing: any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama).
    teacher_base_url: str | None = None
    teacher_api_key: str | None = None
    # Bearer key the serving API requires (TWIN_OPS_API_KEY); unset = no authentication (loopback use).
    twin_ops_api_key: str | None = None
    # Machine-wide cache for things that outlive one checkout (the Weaviate binary, Go build).
    twin_ops_cache: Path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "twin-ops"


def project_root(settings: Settings | None = None) -> Path:
    """The folder holding params.yaml: TWIN_OPS_HOME if set, else searched upwards from cwd."""
    settings = settings or Settings()
    if settings.twin_ops_home is not None:
        return settings.twin_ops_home.resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / PARAMS_FILE).is_file():
            return folder
    raise ConfigError(
        f"no {PARAMS_FILE} found in {here} or its parents; run inside a twin-ops project or set TWIN_OPS_HOME"
    )


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


Overrides = Mapping[str, Any] | Iterable[str]


def parse_overrides(overrides: Overrides | None, *, origin: str = "--set") -> dict[str, Any]:
    """The one override format: dotted ``section.key`` → value, as a nested dict to merge over params.yaml.

    Takes ``section.key=value`` strings (the CLI's ``--set``; a value is a YAML scalar, so ``8090``
    is an int and ``[a, b]`` a list) or a mapping (a DAG form's ``overrides``, env variables turned
    into dotted keys); a mapping's values are used as they are, and a nested dict under a key merges.
    A malformed item raises ConfigError naming it; unknown keys and bad values are named when the
    result is validated (load_params).
    """
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        items = list(overrides.items())
    else:
        items = []
        for assignment in overrides:
            key, sep, raw = assignment.partition("=")
            if not sep:
                raise ConfigError(f"{origin} {assignment!r}: expected section.key=value")
            items.append((key, yaml.safe_load(raw)))
    tree: dict[str, Any] = {}
    for key, value in items:
        parts = key.split(".")
        if not all(parts) or (len(parts) < 2 and not isinstance(value, Mapping)):
            raise ConfigError(f"{origin} {key!r}: expected section.key=value")
        node = value
        for part in reversed(parts):
            node = {part: node}
        tree = _deep_merge(tree, node)
    return tree


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``TWIN_OPS_PARAM__<section>__<key>=<yaml scalar>`` variables, through parse_overrides."""
    environ = os.environ if environ is None else environ
    dotted: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(PARAM_ENV_PREFIX):
            continue
        parts = [part.lower() for part in name[len(PARAM_ENV_PREFIX) :].split("__")]
        if len(parts) < 2 or not all(parts):
            raise ConfigError(f"{name}: expected {PARAM_ENV_PREFIX}<section>__<key>")
        dotted[".".join(parts)] = yaml.safe_load(raw)
    return parse_overrides(dotted, origin="environment")


def as_assignments(overrides: Mapping[str, Any]) -> list[str]:
    """Dotted overrides as ``section.key=value`` strings for a child ``twin-ops --set`` (JSON is YAML)."""
    return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]


def describe_validation_error(error: ValidationError, heading: str) -> str:
    """A pydantic error as one line per bad key, naming the key and what it got."""
    lines = [heading]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"  {key}: {message} (got {item.get('input')!r})")
    return "\n".join(lines)


def load_params(
    path: Path | None = None,
    overrides: Overrides | None = None,
    *,
    use_env: bool = True,
) -> Params:
    """Read and validate params.yaml, then apply env and explicit overrides (explicit wins).

    ``overrides``: anything parse_overrides takes (``--set`` strings, a dotted or nested mapping).
    """
    path = path or project_root() / PARAMS_FILE
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    if use_env:
        raw = _deep_merge(raw, env_overrides())
    if overrides:
        raw = _deep_merge(raw, parse_overrides(overrides))
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, f"invalid parameters in {path}:")) from exc


class Paths(BaseModel):
    """Every location twin-ops reads or writes, resolved to absolute paths once: the one place a
    path is spelled. Stages ask Paths; they never join folder names themselves."""

    model_config = ConfigDict(frozen=True)

    root: Path
    state: Path
    data: Path
    reports: Path
    cache: Path
    models: Path | None = None  # training.output_dir; default <root>/models
    evaluation: Path | None = None  # evaluation.output_dir; default <root>/reports/evaluation
    traces: Path | None = None  # serving.traces.path; default <state>/traces/traces.sqlite

    @model_validator(mode="after")
    def _defaults(self) -> Paths:
        if self.models is None:
            object.__setattr__(self, "models", self.root / "models")
        if self.evaluation is None:
            object.__setattr__(self, "evaluation", self.root / "reports" / "evaluation")
        if self.traces is None:
            object.__setattr__(self, "traces", self.state / "traces" / "traces.sqlite")
        return self

    # --- project files ----------------------------------------------------------------------------

    @property
    def params_file(self) -> Path:
        return self.root / PARAMS_FILE

    @property
    def dvc_lock(self) -> Path:
        return self.root / "dvc.lock"

    @property
    def dvc_repo(self) -> Path:
        return self.root / ".dvc"

    @property
    def dvc_commit_lock(self) -> Path:
        """Mapped DAG tasks take turns at `dvc commit` on this lock file."""
        return self.state / "dvc-commit.lock"

    # --- data (DVC-tracked) -----------------------------------------------------------------------

    def crawl_store(self, author_id: str) -> Path:
        """The crawler's store: raw documents staged for validation before they are published."""
        return self.data / "crawl" / author_id

    def raw_documents(self, author_id: str) -> Path:
        return self.data / "raw" / author_id

    def features(self, author_id: str) -> Path:
        return self.data / "features" / author_id

    def datasets(self, author_id: str) -> Path:
        return self.data / "datasets" / author_id

    def feedback(self, author_id: str) -> Path:
        """Ratings and corrections of the author's twin, exported from the trace store."""
        return self.data / "feedback" / author_id

    def dataset(self, dataset: str, author_id: str) -> Path:
        """Where each stage publishes its dataset for one author (the GX suites' names)."""
        locations = {
            "raw_documents": self.raw_documents(author_id),
            "cleaned_documents": self.features(author_id) / "cleaned.jsonl",
            "chunks": self.features(author_id) / "chunks.jsonl",
            "instruct_dataset": self.datasets(author_id) / "instruct",
            "preference_dataset": self.datasets(author_id) / "preference",
            "feedback": self.feedback(author_id) / "feedback.jsonl",
        }
        return locations[dataset]

    # --- quality reports --------------------------------------------------------------------------

    @property
    def gx_project(self) -> Path:
        return self.reports / "gx"

    @property
    def data_docs(self) -> Path:
        return self.gx_project / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"

    @property
    def quality_reports(self) -> Path:
        """One JSON report per validated dataset and author (DVC outputs: row counts per version)."""
        return self.reports / "quality"

    def quality_report(self, dataset: str, author_id: str, *, failed: bool = False) -> Path:
        return self.quality_reports / dataset / f"{author_id}{'.failed' if failed else ''}.json"

    # --- models, registry, evaluation -------------------------------------------------------------

    def training_output(self, author_id: str, stage: str) -> Path:
        """models/<author>/<stage>: checkpoints, adapter, merged model, model card, metrics."""
        return self.models / author_id / stage

    def training_outputs(self, author_id: str) -> Path:
        return self.models / author_id

    def training_metrics(self, author_id: str, stage: str) -> Path:
        """A finished stage's metrics (DVC metrics: losses, steps, tokens/s)."""
        return self.training_output(author_id, stage) / "metrics.json"

    def model_card(self, author_id: str, stage: str) -> Path:
        return self.training_output(author_id, stage) / "README.md"

    @property
    def model_cache(self) -> Path:
        """Base models materialised once per machine (GGUF → safetensors)."""
        return self.cache / "models"

    def evaluation_output(self, author_id: str) -> Path:
        """<evaluation.output_dir>/<author>: metrics.json, decision.json, comparison.png, report.md."""
        return self.evaluation / author_id

    def gate_decision(self, author_id: str) -> Path:
        return self.evaluation_output(author_id) / DECISION_FILE

    # --- run state (git-ignored) ------------------------------------------------------------------

    @property
    def weaviate_data(self) -> Path:
        return self.state / "weaviate" / "data"

    @property
    def weaviate_binaries(self) -> Path:
        return self.cache / "weaviate"

    @property
    def docker_root(self) -> Path:
        return self.cache / "docker"

    @property
    def airflow_home(self) -> Path:
        return self.state / "airflow"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def teacher_cache(self) -> Path:
        return self.state / "datasets" / "teacher-cache"


def resolve_paths(params: Params, settings: Settings | None = None) -> Paths:
    settings = settings or Settings()
    root = project_root(settings)
    return Paths(
        root=root,
        state=(root / params.project.state_dir).resolve(),
        data=(root / params.project.data_dir).resolve(),
        reports=(root / params.quality.reports_dir).resolve(),
        cache=settings.twin_ops_cache.resolve(),
        models=(root / params.training.output_dir).resolve(),
        evaluation=(root / params.evaluation.output_dir).resolve(),
        traces=(root / params.serving.traces.path).resolve() if params.serving.traces.path else None,
    )
