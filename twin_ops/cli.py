"""The `twin-ops` command line: one subcommand per stage, calling the same functions as the DAGs.

Each stage adds its subcommand when the stage exists; nothing here is a placeholder.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import click
import typer
import yaml
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from twin_ops.config import Params, Paths, Settings, load_params, parse_overrides, resolve_paths
from twin_ops.errors import InputError, TwinOpsError

console = Console()
err_console = Console(stderr=True)


class _TwinOpsGroup(TyperGroup):
    """The one place a TwinOpsError becomes what a person sees: its message in red on stderr and
    the error's ``exit_code``. Anything else is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TwinOpsError as exc:
            err_console.print(f"[red]{type(exc).__name__}:[/red] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from exc


app = typer.Typer(cls=_TwinOpsGroup, help="twin-ops: build, check, train and serve an LLM twin.", no_args_is_help=True)
services_app = typer.Typer(help="Start, stop and inspect the local services (Weaviate, Docker).")
config_app = typer.Typer(help="Inspect the resolved configuration.")
app.add_typer(services_app, name="services")
app.add_typer(config_app, name="config")


@app.callback()
def _main() -> None:
    """Runs before every command: twin-ops' log lines go to stderr, once configured."""
    configure_logging()


def configure_logging(level: int = logging.INFO) -> None:
    """The ``twin_ops`` loggers: rich lines on a terminal, plain ``message`` lines otherwise (logs of
    Airflow tasks, DVC, containers). Idempotent; the root logger (Airflow's, pytest's) is left alone."""
    from rich.logging import RichHandler

    logger = logging.getLogger("twin_ops")
    for handler in [h for h in logger.handlers if getattr(h, "_twin_ops", False)]:
        logger.removeHandler(handler)
    if err_console.is_terminal:
        handler: logging.Handler = RichHandler(console=err_console, show_path=False, markup=False)
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
    handler._twin_ops = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is logged (a test runner swaps it)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _load(assignments: list[str] | None = None) -> tuple[Params, Paths, Settings]:
    params = load_params(overrides=assignments or [])
    settings = Settings()
    return params, resolve_paths(params, settings), settings


def say(message: str) -> None:
    """Whole lines, no markup: paths and losses reach logs (Airflow, a container's stream) verbatim."""
    console.print(message, soft_wrap=True, markup=False, highlight=False)


SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a parameter: section.key=value.")]


@config_app.command("show")
def config_show(overrides: SetOption = None) -> None:
    """Print the validated parameters (params.yaml + overrides) and the resolved paths."""
    params, paths, settings = _load(overrides)
    console.print(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False).rstrip())
    table = Table("setting", "value", title="paths and endpoints")
    for name, value in paths.model_dump(mode="json").items():
        table.add_row(f"paths.{name}", str(value))
    for name, value in settings.model_dump(mode="json").items():
        shown = "***" if value and ("key" in name or "secret" in name) else str(value)
        table.add_row(f"env.{name.upper()}", shown)
    console.print(table)


StartedFile = Annotated[
    Path | None,
    typer.Option(help="up: record the services this call started; down: stop only those."),
]


@services_app.command("up")
def services_up(
    docker: Annotated[bool, typer.Option("--docker", help="Also start a Docker engine for job containers.")] = False,
    weaviate: Annotated[bool, typer.Option(help="Start the local Weaviate server.")] = True,
    started_file: StartedFile = None,
) -> None:
    """Start the local services (the Weaviate server; dockerd with --docker); idempotent."""
    from twin_ops.services import docker_engine
    from twin_ops.services import weaviate as weaviate_service

    params, paths, settings = _load()
    started: list[str] = []
    try:
        if weaviate and not settings.weaviate_url and not weaviate_service.is_running(params):
            weaviate_service.start_server(params, paths, log=console.print)
            started.append("weaviate")
        if docker:
            if settings.docker_host is None and docker_engine.ping(settings) is None:
                started.append("docker")
            docker_engine.start_engine(params, paths, settings, log=console.print)
    except (weaviate_service.WeaviateUnavailable, docker_engine.DockerUnavailable) as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        if started_file is not None:
            started_file.write_text("".join(f"{name}\n" for name in started))
    services_status()


@services_app.command("down")
def services_down(started_file: StartedFile = None) -> None:
    """Stop the services twin-ops started (by PID); engines it did not start are left alone."""
    from twin_ops.services import docker_engine
    from twin_ops.services import weaviate as weaviate_service

    params, paths, _ = _load()
    names = {"weaviate", "docker"}
    if started_file is not None:
        names = set(started_file.read_text().split()) if started_file.exists() else set()
    if "weaviate" in names:
        weaviate_service.stop_server(params, paths, log=console.print)
    if "docker" in names:
        docker_engine.stop_engine(log=console.print)


@services_app.command("status")
def services_status() -> None:
    """Show Weaviate (version, URL, data dir, PID) and Docker (URL, version, base image)."""
    from twin_ops.services import docker_engine
    from twin_ops.services import weaviate as weaviate_service

    params, paths, settings = _load()
    table = Table("service", "state", "details", title="twin-ops services")
    server = weaviate_service.server_info(params, paths, settings)
    version = weaviate_service.server_version(server.url)
    state = f"[green]up[/green] v{version}" if version else "[red]down[/red]"
    details = f"{server.url} (grpc {server.grpc_port}) mode={server.mode}"
    if server.data_dir:
        details += f" data={server.data_dir}"
    if server.pid:
        details += f" pid={server.pid}"
    if not version:
        details += f"; pinned v{params.weaviate.version}"
    table.add_row("weaviate", state, details)
    engine = docker_engine.engine_info(params, settings)
    state = f"[green]up[/green] {engine.server_version}" if engine.server_version else "[red]down[/red]"
    details = f"{engine.url} managed={engine.managed}"
    if engine.pid:
        details += f" pid={engine.pid}"
    details += f" base image {params.docker.base_image}: {'present' if engine.base_image_present else 'absent'}"
    table.add_row("docker", state, details)
    console.print(table)


@services_app.command("airflow-env")
def services_airflow_env() -> None:
    """Print `export` lines for Airflow's home under this project (eval them in a shell)."""
    from twin_ops.services.airflow_home import airflow_environment

    params, paths, _ = _load()
    for name, value in airflow_environment(params, paths).items():
        print(f"export {name}={shlex.quote(value)}")


@services_app.command("airflow-init")
def services_airflow_init() -> None:
    """Migrate this project's Airflow database and create the training pool (idempotent)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from twin_ops.services.airflow_home import airflow_environment

    params, paths, _ = _load()
    env = {**os.environ, **airflow_environment(params, paths)}
    airflow = str(Path(sys.executable).parent / "airflow")
    pool = params.airflow
    for command in (
        [airflow, "db", "migrate"],
        [airflow, "pools", "set", pool.gpu_pool, str(pool.gpu_pool_slots), "training jobs (GPU): one at a time"],
    ):
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise TwinOpsError(f"airflow {' '.join(command[1:])} failed:\n{result.stderr[-3000:]}")
    slots = f"{pool.gpu_pool_slots} slot(s)"
    console.print(f"airflow: database at {paths.airflow_home} migrated; pool {pool.gpu_pool} = {slots}")


@services_app.command("airflow")
def services_airflow(
    port: Annotated[int | None, typer.Option(help="The Airflow UI/API port (default: Airflow's 8080).")] = None,
    overrides: SetOption = None,
) -> None:
    """Run `airflow standalone` for this project until Ctrl-C or SIGTERM, then stop every process it
    started (api-server, scheduler, LocalExecutor workers, DAG processor, triggerer)."""
    import os
    import signal
    import subprocess

    from twin_ops.services.airflow_home import airflow_environment

    params, paths, _ = _load(overrides)
    env = {**os.environ, **airflow_environment(params, paths)}
    if port is not None:
        env["AIRFLOW__API__PORT"] = str(port)
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://localhost:{port}/execution/"
    bin_dir = Path(sys.executable).parent
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])  # standalone runs `airflow <part>`
    command = [str(bin_dir / "airflow"), "standalone"]
    # Its own session: a signal for twin-ops is not also delivered to Airflow's processes half-way,
    # and every process Airflow starts can be found by its session id, even one re-parented to init.
    standalone = subprocess.Popen(command, env=env, cwd=paths.root, start_new_session=True)
    stopping: list[int] = []

    def stop(signum: int, frame: object) -> None:
        stopping.append(signum)
        raise KeyboardInterrupt

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        code = standalone.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        left = stop_session(standalone.pid)
        logging.getLogger("twin_ops.services").info(
            "airflow: stopped %d process(es) of standalone (pid %d)", left, standalone.pid
        )
    if code and not stopping:
        raise TwinOpsError(f"airflow standalone exited with status {code}")


def stop_session(leader: int, timeout_s: float = 30.0) -> int:
    """Terminate a process, everything it started (its tree, and its session: workers re-parented
    to init still carry the session id), wait, then kill what is left. Returns how many were stopped."""
    import os

    import psutil

    found: dict[int, psutil.Process] = {}
    try:
        root = psutil.Process(leader)
        found[leader] = root
        found.update({child.pid: child for child in root.children(recursive=True)})
    except psutil.NoSuchProcess:
        pass
    for process in psutil.process_iter():
        try:
            if process.pid != os.getpid() and os.getsid(process.pid) == leader:
                found[process.pid] = process
        except (OSError, psutil.Error):
            continue
    for process in found.values():
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(list(found.values()), timeout=timeout_s)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=5)
    return len(found)


@app.command("crawl")
def crawl_command(
    author: Annotated[str, typer.Option("--author", help="Author id: include/authors/<id>.yaml.")],
    site_url: Annotated[
        str | None, typer.Option("--site-url", help="Value for ${DEMO_SITE_URL} in the author config.")
    ] = None,
    overrides: SetOption = None,
) -> None:
    """Collect an author's sources into the crawl store (data/crawl/<author>), incrementally."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from twin_ops.collect.authors import load_author, source_variables
    from twin_ops.collect.run import crawl_author

    params, paths, _ = _load(overrides)
    config = load_author(author, params, paths, source_variables(params, site_url))
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"crawling {author}")

        def show(counts) -> None:
            unchanged = counts.unchanged + counts.listed_unchanged  # 304s and pages settled by sitemap
            progress.update(
                task,
                description=f"crawling {author}: {counts.fetched} pages fetched · {unchanged} unchanged · "
                f"{counts.files} files read · {counts.documents} documents kept · {counts.quarantined} quarantined",
            )

        report = crawl_author(config, params, paths, on_progress=show)
    if report.counts.skipped:
        console.print("skipped: " + ", ".join(f"{n} {reason}" for reason, n in sorted(report.counts.skipped.items())))
    console.print(f"quarantine: {report.quarantine_file}")
    console.print(report.summary())


demo_site_app = typer.Typer(help="The demo site: Wren Halvorsen's blog, served on 127.0.0.1.")
app.add_typer(demo_site_app, name="demo-site")


@demo_site_app.command("serve")
def demo_site_serve(
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default: collect.demo_site.port).")] = None,
    synthetic_pages: Annotated[
        int | None, typer.Option(help="Serve a generated blog of this many posts instead (benchmarks).")
    ] = None,
) -> None:
    """Build the demo site under the state folder and serve it until Ctrl-C."""
    from twin_ops.demo.site import serve_demo_site

    params, paths, _ = _load()

    def ready(url: str, folder: Path) -> None:
        console.print(f"demo site {folder} on {url} (Ctrl-C to stop)")
        console.print(f"crawl it: twin-ops crawl --author wren-halvorsen --site-url {url}")

    serve_demo_site(
        paths.root,
        paths.state,
        params.collect.demo_site.port if port is None else port,
        params.collect.demo_site.posts_per_page,
        synthetic_pages,
        on_ready=ready,
    )


@app.command("validate")
def validate(
    dataset: Annotated[
        str,
        typer.Argument(help="raw_documents, cleaned_documents, chunks, instruct_dataset, preference_dataset"),
    ],
    author: Annotated[str, typer.Option("--author", help="Author id.")],
    path: Annotated[Path | None, typer.Option(help="Validate these files instead of the published dataset.")] = None,
    publish: Annotated[
        bool,
        typer.Option("--publish", help="raw_documents: validate the crawl store, publish it to data/raw if valid."),
    ] = False,
) -> None:
    """Run a dataset's Great Expectations suite: summary table, Data Docs, exit 1 on failure."""
    from twin_ops.quality import suites
    from twin_ops.quality.validate import publish_if_valid, validate_dataset

    params, paths, _ = _load()
    if dataset not in suites.SUITES:
        raise InputError(f"unknown dataset {dataset!r}; choose from {', '.join(suites.SUITES)}")
    if publish and dataset != "raw_documents":
        raise InputError("--publish applies to raw_documents only (other stages publish their own)")
    source = path or (paths.crawl_store(author) if publish else None)
    report = validate_dataset(dataset, author, params, paths, location=source)
    table = Table("expectation", "column", "observed", "result", title=f"{dataset} · {author} · {report.rows} rows")
    for name, column, observed, result in _summary_rows(report):
        table.add_row(name, column, observed, result if result == "pass" else f"[red]{result}[/red]")
    console.print(table)
    console.print(f"Data Docs: {report.validation_page}")
    if publish:
        target = paths.dataset(dataset, author)
        publish_if_valid(source, target, report)  # ValidationFailed: the target is left unchanged
        console.print(f"published {source} -> {target}")
    verdict = "passed" if report.success else f"FAILED ({len(report.failed)} of {len(report.outcomes)})"
    console.print(f"validate {dataset} {author}: {verdict}, {report.rows} rows")
    if not report.success:
        raise typer.Exit(1)


def _summary_rows(report) -> list[tuple[str, str, str, str]]:
    return [
        (outcome.name, outcome.column or "", outcome.observed[:60], "pass" if outcome.success else "FAIL")
        for outcome in report.outcomes
    ]


@app.command("features")
def features_command(
    author: Annotated[str, typer.Option("--author", help="Author id.")],
    rebuild: Annotated[
        bool, typer.Option(help="Rebuild this author into new index versions instead of updating in place.")
    ] = False,
) -> None:
    """Clean → validate → chunk → validate → embed → index, for one author's published raw documents."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from twin_ops.features.pipeline import run_features

    params, paths, _ = _load()
    with Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    ) as progress:
        task = progress.add_task("embedding chunks", total=None)

        def on_embedded(done: int, total: int) -> None:
            progress.update(task, advance=done, total=total)

        # ValidationFailed, DatasetNotFound: the index and data/features are unchanged
        summary = run_features(author, params, paths, rebuild=rebuild, on_embedded=on_embedded)
    console.print(summary.line())


@app.command("search")
def search_command(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    author: Annotated[str | None, typer.Option("--author", help="Only this author's chunks.")] = None,
    k: Annotated[int | None, typer.Option(help="How many results.")] = None,
    alpha: Annotated[float | None, typer.Option(help="0 = keyword only, 1 = vector only.")] = None,
) -> None:
    """Hybrid (BM25 + vector) search over the index, as serving retrieves."""
    from twin_ops.features.embed import Embedder
    from twin_ops.features.search import search
    from twin_ops.services.weaviate import connect

    params, _, _ = _load()
    features = params.features
    embedder = Embedder(features.embedding_model, features.device, features.embedding_batch_size)
    with connect(params) as client:
        hits = search(client, embedder, features, query, author, k, alpha)
    table = Table("#", "score", "title", "excerpt", "url", title=f"{len(hits)} results for {query!r}")
    for rank, hit in enumerate(hits, start=1):
        excerpt = " ".join(hit.text.split())[:90]
        table.add_row(str(rank), f"{hit.score:.3f}", hit.title, excerpt, hit.url)
    console.print(table)


models_app = typer.Typer(help="The model registry: versions and aliases (candidate, production, previous).")
app.add_typer(models_app, name="models")


def _registry():
    from twin_ops.registry.store import Registry

    _, paths, _ = _load()
    return Registry(paths.models)


@models_app.command("list")
def models_list() -> None:
    """Every model and version, with its aliases and metrics."""
    registry = _registry()
    table = Table("model", "version", "aliases", "base model", "created", "metrics", title=str(registry.file))
    for name, entry in registry.load().models.items():
        for version in entry.versions:
            aliases = ", ".join(alias for alias, number in entry.aliases.items() if number == version.version)
            metrics = " ".join(f"{key}={value:.4g}" for key, value in sorted(version.metrics.items()))
            table.add_row(
                name, str(version.version), aliases, version.base_model, f"{version.created_at:%Y-%m-%d %H:%M}", metrics
            )
    console.print(table)


@models_app.command("show")
def models_show(
    name: str, ref: Annotated[str, typer.Argument(help="A version number or alias.")] = "production"
) -> None:
    """One version's full record (paths, metrics, lineage) as JSON."""
    console.print_json(_registry().get(name, ref).model_dump_json())


@models_app.command("promote")
def models_promote(
    name: str, ref: Annotated[str, typer.Argument(help="A version number or alias.")] = "candidate"
) -> None:
    """Point production at a version (the old production becomes previous)."""
    version = _registry().promote(name, ref, reason="promoted by hand (twin-ops models promote)")
    console.print(f"{name}: production -> v{version.version}")


@models_app.command("rollback")
def models_rollback(
    name: str,
    serve: Annotated[
        bool, typer.Option("--serve", help="Also swap the running twin API (Ray Serve) back to that version.")
    ] = False,
    url: Annotated[str | None, typer.Option(help="The twin API to check after the swap (implies --serve).")] = None,
) -> None:
    """Point production back at the previous version (the rolled-back one becomes previous).

    With --serve the running app serves it too; if that fails, the registry is restored.
    """
    from twin_ops.evaluation.promote import rollback_and_serve

    params, paths, settings = _load()
    result = rollback_and_serve(
        name,
        params,
        paths,
        serve=serve,
        url=url,
        api_key=settings.twin_ops_api_key,
        reason="rolled back by hand (twin-ops models rollback)",
    )
    replaced = f"v{result.replaced}" if result.replaced is not None else "nothing"
    console.print(f"{name}: production -> v{result.promoted.version} (was {replaced})")
    if result.swap is not None:
        say(result.swap.line())


@app.command("datasets")
def datasets_command(
    author: Annotated[str, typer.Option("--author", help="Author id.")],
    overrides: SetOption = None,
) -> None:
    """Instruction (SFT) and preference (DPO) datasets from the author's cleaned documents."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from twin_ops.datasets.build import run_datasets
    from twin_ops.training import passive_cpu_threads

    passive_cpu_threads()  # generation runs torch on CPU: before torch is imported
    params, paths, settings = _load(overrides)
    labels = {"instructions": "writing instructions", "answers": "generating rejected answers"}
    # A terminal gets live bars; logs (Airflow, DVC, CI) get one line per generated batch.
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        tasks: dict[str, Any] = {}

        def on_progress(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = progress.add_task(labels.get(step, step), total=total)
            progress.update(tasks[step], completed=done, total=total)
            if not console.is_terminal:
                console.print(f"datasets {author}: {labels.get(step, step)} {done}/{total}", markup=False)

        # ValidationFailed, DatasetNotFound, TeacherUnavailable: data/datasets is unchanged
        summary = run_datasets(author, params, paths, settings, progress=on_progress)
    console.print(summary.line())


@app.command("train")
def train_command(
    stage: Annotated[str, typer.Option("--stage", help="sft, or dpo (starts from the SFT adapter).")],
    author: Annotated[str, typer.Option("--author", help="Author id.")],
    overrides: SetOption = None,
) -> None:
    """Fine-tune one stage (LoRA SFT or DPO), as a local process or in a container (training.runner)."""
    from twin_ops.training import STAGES, passive_cpu_threads

    passive_cpu_threads()  # before torch is imported (see its docstring)

    params, paths, settings = _load(overrides)
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")
    if params.training.runner == "container":
        from twin_ops.training.container import run_training_container

        run_training_container(stage, author, params, paths, settings, overrides=overrides or [])
        return

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from twin_ops.training.progress import StepReport
    from twin_ops.training.train import train

    # A terminal gets a live bar; logs (Airflow, a container's stream) get one line per step.
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]} · {task.fields[speed]} tok/s · eta {task.fields[eta]}"),
        console=console,
        disable=not console.is_terminal,
    )
    task = progress.add_task(f"{stage} {author}", total=None, loss="-", speed="-", eta="-")

    def report(step: StepReport) -> None:
        if not console.is_terminal:
            say(step.line())
        loss = f"{step.loss:.4f}" if step.loss is not None else "-"
        eta = f"{step.eta_s:.0f}s" if step.eta_s is not None else "-"
        speed = f"{step.tokens_per_second:.0f}"
        progress.update(task, completed=step.step, total=step.total, loss=loss, speed=speed, eta=eta)

    with progress:
        train(stage, author, params, paths, report=report, log=say)


@app.command("serve")
def serve_command(
    port: Annotated[int | None, typer.Option(help="HTTP port on serving.host; default serving.port.")] = None,
    single_replica: Annotated[
        bool, typer.Option("--single-replica", help="One replica per deployment, no autoscaling (small machines).")
    ] = False,
    overrides: SetOption = None,
) -> None:
    """Run the twin API (Ray Serve, include/serve/twin.yaml) until Ctrl-C; RAY_ADDRESS = deploy to that cluster."""
    import signal
    import time

    from twin_ops.serving import ops

    params, paths, settings = _load(overrides)
    app_args = {"overrides": parse_overrides(overrides)} if overrides else {}
    try:
        url = ops.start_local(
            params, paths, port=port, app_args=app_args, single_replica=single_replica, log=console.print
        )
    except Exception:
        ops.stop_local()  # whatever started is stopped; the error itself is reported by the app's group
        raise
    if settings.ray_address:
        console.print(f"deployed to the Ray cluster at {settings.ray_address}")
        return
    console.print(f'twin API at {url} — try: twin-ops query "What is the first rule of the yard?"; Ctrl-C stops')

    def interrupt(signum, frame) -> None:  # SIGTERM (kill, a service manager) stops it like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        ops.stop_local()


@app.command("query")
def query_command(
    question: Annotated[str, typer.Argument(help="What to ask the twin.")],
    author: Annotated[
        str | None,
        typer.Option("--author", help="Whose writing to draw on (default: from the question, else serving.author)."),
    ] = None,
    k: Annotated[int | None, typer.Option(help="Passages to retrieve.")] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="Length of the answer in tokens.")] = None,
    url: Annotated[str | None, typer.Option(help="The API; default http://serving.host:serving.port.")] = None,
) -> None:
    """Ask the running twin API (POST /rag) and print the answer with its sources (TWIN_OPS_API_KEY if set)."""
    from twin_ops.serving.client import TwinClient
    from twin_ops.serving.ops import serve_url

    params, _, settings = _load()
    client = TwinClient(url or serve_url(params), settings.twin_ops_api_key, params.serving.timeouts.request_s)
    body = client.rag(question, author, k, max_tokens=max_tokens)  # ApiError, ApiUnreachable
    console.print(body["answer"], markup=False, highlight=False)
    table = Table("#", "score", "title", "url", title=f"sources ({body['author']}, model {body['model_version']})")
    for rank, source in enumerate(body["sources"], start=1):
        table.add_row(str(rank), f"{source['score']:.3f}", source["title"], source["url"])
    console.print(table)


@app.command("summary")
def summary_command(author: Annotated[str, typer.Option("--author", help="Author id.")]) -> None:
    """One author across every stage: documents, chunks, datasets, losses, verdict, production, API."""
    from twin_ops.summary import author_summary

    params, paths, settings = _load()
    table = Table("stage", "state", title=f"twin-ops · {author}")
    for name, value in author_summary(author, params, paths, settings):
        table.add_row(name, value)
    console.print(table)


@app.command("evaluate")
def evaluate_command(
    author: Annotated[str, typer.Option("--author", help="Author id.")],
    stage: Annotated[
        str | None, typer.Option("--stage", help="Training stage to register (default evaluation.candidate_stage).")
    ] = None,
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="Register the trained stage as the candidate first.")
    ] = True,
    fail_on_reject: Annotated[
        bool, typer.Option("--fail-on-reject", help="Exit 3 when the gate rejects the candidate.")
    ] = False,
    overrides: SetOption = None,
) -> None:
    """Score candidate, production and base model on the author's held-out samples; the gate decides."""
    from twin_ops.evaluation.candidate import register_candidate
    from twin_ops.evaluation.run import evaluate

    params, paths, settings = _load(overrides)
    if register:
        register_candidate(author, params, paths, stage=stage)
    result = evaluate(author, params, paths, settings, log=say)
    for name, path in result.files.items():
        say(f"{name}: {path}")
    if fail_on_reject and not result.decision.promote:
        raise typer.Exit(3)


@app.command("promote")
def promote_command(
    author: Annotated[str, typer.Option("--author", help="Author id.")],
    serve: Annotated[
        bool, typer.Option("--serve", help="Also swap the running twin API (Ray Serve) to the new version.")
    ] = False,
    url: Annotated[str | None, typer.Option(help="The twin API to check after the swap (implies --serve).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Promote even though the gate rejected it.")] = False,
    overrides: SetOption = None,
) -> None:
    """Promote the candidate the last `twin-ops evaluate` approved; a failed serve swap rolls the registry back."""
    from twin_ops.evaluation.gate import GateDecision
    from twin_ops.evaluation.promote import promote_from_decision

    params, paths, settings = _load(overrides)
    decision = GateDecision.load(paths.gate_decision(author))
    result = promote_from_decision(
        decision, params, paths, force=force, serve=serve, url=url, api_key=settings.twin_ops_api_key
    )
    say(result.line())


@app.command("lineage")
def lineage_command(
    artifact: Annotated[str, typer.Argument(help="A DVC-tracked path, e.g. data/raw/wren-halvorsen.")],
) -> None:
    """Print the chain of stages, params and input hashes that produced an artifact (from dvc.lock)."""
    from rich.tree import Tree

    from twin_ops.quality.lineage import StageRecord, lineage, read_lock

    _, paths, _ = _load()
    lock_file = paths.dvc_lock
    record = lineage(artifact, read_lock(lock_file.read_text() if lock_file.exists() else ""))

    def add(node: Tree, stage: StageRecord) -> None:
        branch = node.add(f"[bold]{stage.name}[/bold]: {stage.cmd}")
        for name, value in sorted(stage.params.items()):
            branch.add(f"param {name} = {value}")
        for path, md5 in stage.deps.items():
            branch.add(f"dep {path} [dim]{md5}[/dim]")
        for upstream in stage.upstream:
            add(branch, upstream)

    tree = Tree(f"{artifact} [dim]{next(iter(record.outs.values()), '')}[/dim]")
    add(tree, record)
    console.print(tree)


traces_app = typer.Typer(help="Traces of the twin's answers (serving.traces): what was asked, retrieved, answered.")
app.add_typer(traces_app, name="traces")
feedback_app = typer.Typer(help="Ratings and corrections of the twin's answers, for the next training run.")
app.add_typer(feedback_app, name="feedback")


def _trace_store():
    from twin_ops.traces.store import TraceStore

    params, paths, _ = _load()
    if not paths.traces.exists():
        raise InputError(f"no trace store at {paths.traces} (serving.traces.path): the API has not answered yet")
    return TraceStore.from_params(params, paths)


def _since(text: str | None):
    """An ISO date/time (UTC unless it says otherwise), or a span back from now: 30m, 12h, 7d."""
    import re
    from datetime import UTC, datetime, timedelta

    if text is None:
        return None
    if match := re.fullmatch(r"(\d+)([mhd])", text.strip()):
        unit = {"m": "minutes", "h": "hours", "d": "days"}[match[2]]
        return datetime.now(UTC) - timedelta(**{unit: int(match[1])})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        example = "2025-01-31, 2025-01-31T08:00, or 30m, 12h, 7d"
        raise InputError(f"--since {text!r}: give an ISO date/time or a span back from now ({example})") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@traces_app.command("list")
def traces_list(
    author: Annotated[str | None, typer.Option("--author", help="Only this author's twin.")] = None,
    since: Annotated[str | None, typer.Option(help="From this time: ISO date/time, or 30m, 12h, 7d ago.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
) -> None:
    """The latest traces: id, time, author, model version, status, tokens, seconds, rating."""
    from rich.table import Column

    traces = _trace_store().list(author, _since(since), limit)
    table = Table("time (UTC)", "author", "model version", "status", "tokens", "seconds", "rating", "question")
    table.columns.insert(0, Column("id", no_wrap=True))  # copied into `traces show`: never wrapped
    for trace in traces:
        tokens = f"{trace.prompt_tokens or 0}+{trace.completion_tokens or 0}"
        rating = trace.feedback.rating + (" ✎" if trace.feedback.correction else "") if trace.feedback else ""
        total = f"{trace.timings.total_s:.2f}" if trace.timings.total_s is not None else ""
        question = " ".join((trace.question or "").split())[:50]
        status = str(trace.status) if trace.status < 400 else f"[red]{trace.status}[/red]"
        table.add_row(
            trace.id,
            f"{trace.created_at:%Y-%m-%d %H:%M:%S}",
            trace.author or "",
            trace.model_version or "",
            status,
            tokens,
            total,
            rating,
            question,
        )
    table.title = f"{len(traces)} traces" + (f" of {author}" if author else "")
    console.print(table)


@traces_app.command("show")
def traces_show(
    trace_id: Annotated[str, typer.Argument(help="A response's id (or the client's own X-Request-ID).")],
) -> None:
    """One trace in full, with its feedback, as JSON."""
    trace = _trace_store().get(trace_id)
    if trace is None:
        raise InputError(f"no trace {trace_id!r} (unknown, or older than serving.traces' bounds)")
    console.print_json(trace.model_dump_json())


@feedback_app.command("export")
def feedback_export(author: Annotated[str, typer.Option("--author", help="Author id.")]) -> None:
    """Merge the trace store's feedback into data/feedback/<author>/feedback.jsonl (GX-validated;
    a failure leaves the file as it was)."""
    from twin_ops.traces.export import export_feedback
    from twin_ops.traces.store import TraceStore

    params, paths, _ = _load()
    result = export_feedback(author, params, paths, TraceStore.from_params(params, paths))
    say(result.line())


data_app = typer.Typer(help="Dataset versions (git + dvc.lock).")
app.add_typer(data_app, name="data")


_ROWS_REPORT = {"raw": "raw_documents", "features": "chunks"}


@data_app.command("versions")
def data_versions_command(limit: int = 20) -> None:
    """List dataset versions, newest first, with hashes and validated row counts."""
    from twin_ops.quality.lineage import data_versions

    _, paths, _ = _load()
    table = Table("rev", "date", "subject", "dataset", "md5", "rows", title="data versions")
    for version in data_versions(paths, limit):
        for path, md5 in sorted(version.outputs.items()):
            report = _ROWS_REPORT.get(Path(path).parent.name)  # data/<stage>/<author> -> its validated rows
            file = paths.quality_report(report, Path(path).name).relative_to(paths.root) if report else None
            rows = version.rows.get(str(file)) if file else None
            table.add_row(version.rev, version.date, version.subject[:40], path, md5[:12], str(rows or ""))
    console.print(table)
    console.print("restore one: git checkout <rev> -- dvc.lock && dvc checkout")


if __name__ == "__main__":
    app()
