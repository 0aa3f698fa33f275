"""Running the app and swapping its model.

* ``start_local`` — a small local Ray (loopback only, small object store) running
  include/serve/twin.yaml, as ``serve deploy twin.yaml`` would; or, with RAY_ADDRESS set, the same
  config deployed to that cluster. Configs go through Serve's public REST API on the Ray dashboard
  (``PUT/GET /api/serve/applications/``), exactly what the ``serve`` CLI uses.
* ``swap_model`` — what promotion calls: pin one author's twin to a registry version in the
  Generator's user_config (replicas reconfigure that twin in place; requests keep flowing, the
  other twins are untouched), wait until it serves, check /health and a smoke query, and restore
  that twin's previous ref if anything fails.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from twin_ops.config import ConfigError, Params, Paths, Settings
from twin_ops.domain import SwapResult
from twin_ops.errors import ServiceUnavailable, TwinOpsError
from twin_ops.serving.client import ApiError, TwinClient

Log = Callable[[str], None]
GENERATOR = "Generator"


class ServeFailed(TwinOpsError, RuntimeError):
    """The app did not come up, or a swap failed its checks; the message says why."""


class DashboardUnavailable(ServiceUnavailable):
    """Serve's REST API (the Ray dashboard) does not answer."""


def local_url(params: Params, port: int | None = None) -> str:
    return f"http://{params.serving.host}:{port or params.serving.port}"


def serve_url(params: Params, port: int | None = None, settings: Settings | None = None) -> str:
    """The twin API: TWIN_OPS_SERVE_URL (an app elsewhere, e.g. a Ray cluster's) unless a local
    port is named, else serving.host:serving.port."""
    settings = settings or Settings()
    if port is None and settings.twin_ops_serve_url:
        return settings.twin_ops_serve_url.rstrip("/")
    return local_url(params, port)


def serve_config(
    params: Params,
    paths: Paths,
    *,
    port: int | None = None,
    app_args: dict[str, Any] | None = None,
    single_replica: bool = False,
    gpus: float = 0,
) -> dict[str, Any]:
    """twin.yaml with this run's HTTP address, builder args and (tests) one replica of each."""
    file = paths.root / params.serving.config_file
    config = yaml.safe_load(file.read_text())
    apps = [app for app in config.get("applications", []) if app.get("name") == params.serving.app_name]
    if not apps:
        raise ConfigError(f"{file}: no application named {params.serving.app_name!r} (serving.app_name)")
    app = apps[0]
    app["args"] = {**(app.get("args") or {}), **(app_args or {})}
    for deployment in app.get("deployments", []):
        if single_replica:  # tests and benchmarks on a shared 2-core machine: no autoscaling
            deployment.pop("autoscaling_config", None)
            deployment["num_replicas"] = 1
        if gpus and deployment["name"] == GENERATOR:
            deployment.setdefault("ray_actor_options", {})["num_gpus"] = gpus
    config["http_options"] = {
        "host": params.serving.host,
        "port": port or params.serving.port,
        "request_timeout_s": params.serving.timeouts.request_s,
    }
    return config


_started_here = False  # this process started the local Ray (and its Serve): stop_local may end them


def start_ray(params: Params, paths: Paths, settings: Settings | None = None) -> None:
    """Connect to RAY_ADDRESS, or start a small local Ray bound to 127.0.0.1."""
    global _started_here
    import ray

    settings = settings or Settings()
    if ray.is_initialized():
        return
    # Replica processes inherit this environment (project root, offline flags, API key).
    os.environ["TWIN_OPS_HOME"] = str(paths.root)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if settings.ray_address:
        ray.init(address=settings.ray_address, log_to_driver=False)
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a loopback-only, single-user cluster
    # Ray starts workers at nice 15 to keep its own daemons responsive on a busy node; here the
    # workers ARE the service (replicas), and at nice 15 any other busy process starves them.
    os.environ.setdefault("RAY_worker_niceness", "0")
    _started_here = True
    ray.init(
        num_cpus=params.serving.ray.num_cpus,
        object_store_memory=params.serving.ray.object_store_mb * 1024 * 1024,
        include_dashboard=True,  # Serve's REST API lives there
        dashboard_host="127.0.0.1",
        dashboard_port=params.serving.ray.dashboard_port,
        _metrics_export_port=params.serving.ray.metrics_export_port,  # Prometheus (the README says what)
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )


def dashboard_url(params: Params, settings: Settings | None = None) -> str:
    settings = settings or Settings()
    if settings.ray_dashboard_address:
        return settings.ray_dashboard_address.rstrip("/")
    return f"http://127.0.0.1:{params.serving.ray.dashboard_port}"


def _serve_api(params: Params, method: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One call to Serve's REST API, retried while the dashboard is still starting."""
    import httpx
    from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed

    url = f"{dashboard_url(params)}/api/serve/applications/"

    @retry(
        retry=retry_if_exception_type(httpx.TransportError),
        stop=stop_after_delay(params.serving.timeouts.startup_s),
        wait=wait_fixed(1),
        reraise=True,
    )
    def send() -> httpx.Response:
        return httpx.request(method, url, json=body, timeout=params.serving.timeouts.request_s)

    try:
        response = send()
    except httpx.TransportError as exc:
        raise DashboardUnavailable(f"Serve's REST API at {url} does not answer: {exc}") from exc
    if response.status_code >= 400:
        raise ServeFailed(f"{method} {url}: {response.status_code} {response.text[:500]}")
    return response.json() if response.content else {}


def deploy(params: Params, config: dict[str, Any]) -> None:
    """Apply a Serve config declaratively (what `serve deploy` does): a change confined to
    user_config reconfigures replicas in place instead of replacing them."""
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(config)  # a bad config fails here, with pydantic's message
    _serve_api(params, "PUT", schema.model_dump(mode="json", exclude_unset=True))


def wait_running(app_name: str, timeout_s: float, log: Log = print) -> None:
    from ray import serve
    from tenacity import RetryError, retry, retry_if_result, stop_after_delay, wait_fixed

    seen: list[str] = []

    @retry(retry=retry_if_result(lambda state: state is None), stop=stop_after_delay(timeout_s), wait=wait_fixed(1))
    def running() -> str | None:
        status = serve.status().applications.get(app_name)
        state = str(status.status) if status else "NOT_STARTED"
        if state.endswith("DEPLOY_FAILED") or state.endswith("UNHEALTHY"):
            raise ServeFailed(f"app {app_name!r} is {state}: {status.message}")
        if not seen or seen[-1] != state:
            log(f"serve: {app_name} {state.rsplit('.', 1)[-1].lower()}")
            seen.append(state)
        return state if state.endswith("RUNNING") else None

    try:
        running()
    except RetryError as exc:
        raise ServeFailed(f"app {app_name!r} was not RUNNING within {timeout_s:g}s") from exc


def start_local(
    params: Params,
    paths: Paths,
    *,
    port: int | None = None,
    app_args: dict[str, Any] | None = None,
    single_replica: bool = False,
    log: Log = print,
) -> str:
    """Run the app (twin.yaml) and return its URL once Serve reports it RUNNING: every replica is
    up and the Generator has loaded its model (production; the base model while the registry has
    none) or recorded why it could not (then /health is 503 with the reason)."""
    import ray

    start_ray(params, paths)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 and params.serving.device != "cpu" else 0
    config = serve_config(params, paths, port=port, app_args=app_args, single_replica=single_replica, gpus=gpus)
    deploy(params, config)
    wait_running(params.serving.app_name, params.serving.timeouts.startup_s, log)
    url = serve_url(params, port) if Settings().ray_address else local_url(params, port)
    log(f"serve: {params.serving.app_name} running at {url} (OpenAPI: {url}/docs)")
    return url


def stop_local() -> None:
    """Stop the app and the local Ray that start_local started. Connected to a cluster (RAY_ADDRESS
    or an existing local Ray), only disconnect: its Serve apps outlive this process on purpose."""
    global _started_here
    import ray
    from ray import serve

    if not ray.is_initialized():
        return
    try:
        if _started_here:
            serve.shutdown()
    finally:
        _started_here = False
        ray.shutdown()


# --- model swaps --------------------------------------------------------------------------------


def deployed_config(params: Params) -> dict[str, Any]:
    """The config the running Serve instance was last given (every declarative app)."""
    from ray.serve.schema import ServeInstanceDetails

    details = ServeInstanceDetails.model_validate(_serve_api(params, "GET"))
    apps = [app.deployed_app_config for app in details.applications.values() if app.deployed_app_config]
    if not apps:
        raise ServeFailed("no Serve application deployed from a config is running")
    return {
        "proxy_location": details.proxy_location.value if details.proxy_location else None,
        "http_options": details.http_options.model_dump(exclude_unset=True) if details.http_options else {},
        "applications": [app.model_dump(exclude_unset=True) for app in apps],
    }


def _generator_entry(config: dict[str, Any], app_name: str) -> dict[str, Any]:
    app = next((a for a in config["applications"] if a["name"] == app_name), None)
    if app is None:
        raise ServeFailed(f"no running app named {app_name!r}")
    deployments = app.setdefault("deployments", [])
    entry = next((d for d in deployments if d["name"] == GENERATOR), None)
    if entry is None:
        entry = {"name": GENERATOR}
        deployments.append(entry)
    return entry


def set_model_ref(params: Params, model_id: str, ref: str | None) -> str | None:
    """Re-apply the running config with one twin's ref changed in the Generator's user_config
    (``ref`` None: that twin follows the default again); the twin's ref before. Other twins' refs
    are kept as they are, so they keep serving what they served."""
    config = deployed_config(params)
    entry = _generator_entry(config, params.serving.app_name)
    user_config = dict(entry.get("user_config") or {})
    models = dict(user_config.get("models") or {})
    previous = models.pop(model_id, None)
    if ref is not None:
        models[model_id] = ref
    entry["user_config"] = {**user_config, "models": models}
    deploy(params, {key: value for key, value in config.items() if value is not None})
    return previous


def _generator_settled(app_name: str) -> bool:
    from ray import serve

    app = serve.status().applications.get(app_name)
    if app is None:
        return False
    deployment = app.deployments.get(GENERATOR)
    return str(app.status).endswith("RUNNING") and deployment is not None and str(deployment.status).endswith("HEALTHY")


def wait_for_model(
    client: TwinClient,
    app_name: str,
    model_id: str,
    expected: str,
    ref: str | None,
    timeout_s: float,
    confirmations: int = 3,
) -> dict[str, Any]:
    """Until the Generator deployment is HEALTHY and /health?model=``model_id`` reports
    ``expected`` several times in a row (with several replicas, one answer comes from one
    replica). A load error reported for ``ref`` (the requested ref) ends the wait at once."""
    from tenacity import RetryError, retry, retry_if_result, stop_after_delay, wait_fixed

    streak, last = [0], ["no answer yet"]

    @retry(retry=retry_if_result(lambda health: health is None), stop=stop_after_delay(timeout_s), wait=wait_fixed(1))
    def settled() -> dict[str, Any] | None:
        try:
            health = client.health(model_id)
        except (ApiError, OSError) as exc:
            streak[0], last[0] = 0, str(exc)
            return None
        if health.get("model_error") and health.get("model_requested") == ref:
            raise ServeFailed(f"the Generator could not load {expected}: {health['model_error']}")
        if health.get("model_version") == expected and _generator_settled(app_name):
            streak[0] += 1
            return health if streak[0] >= confirmations else None
        streak[0], last[0] = 0, f"serving {health.get('model_version')}"
        return None

    try:
        return settled()
    except RetryError as exc:
        raise ServeFailed(f"{expected} was not served within {timeout_s:g}s ({last[0]})") from exc


def swap_model(
    params: Params,
    paths: Paths,
    name: str,
    version: int,
    *,
    url: str | None = None,
    api_key: str | None = None,
    timeout_s: float | None = None,
    models_dir: Path | None = None,
    log: Log = print,
) -> SwapResult:
    """Make twin ``name`` (a registry name, "<author>-twin") serve its registry version
    ``version``, then check it; the other twins keep serving. On any failure restore that twin's
    previous model and raise ServeFailed (the caller rolls the registry back).

    Needs a connection to the cluster running the app (start_ray connects to RAY_ADDRESS, or to
    the local one started by `twin-ops serve`).
    """
    import ray

    from twin_ops.evaluation.candidate import author_of
    from twin_ops.registry.store import Registry

    if not ray.is_initialized():
        ray.init(address=Settings().ray_address or "auto", log_to_driver=False)
    started = time.monotonic()
    serving = params.serving
    registry = Registry(models_dir or paths.models)
    expected = f"{name}:v{registry.get(name, version).version}"
    client = TwinClient(url or serve_url(params), api_key if api_key is not None else Settings().twin_ops_api_key)
    timeout_s = timeout_s or serving.timeouts.startup_s
    # What serves now, pinned to its version number: promotion has usually moved `production`
    # already, so restoring a ref that says "production" would point at the new model again.
    try:
        served = client.health(name).get("model_version") or ""
    except ApiError:  # the twin is not loaded anywhere yet (e.g. its first model): nothing to pin
        served = ""
    prefix = f"{name}:v"
    previous = set_model_ref(params, name, str(version))
    restore = served.removeprefix(prefix) if served.startswith(prefix) else previous
    log(f"serve: {name}: swapping {served or 'nothing'} -> {expected} (replicas reconfigure in place)")
    try:
        wait_for_model(client, serving.app_name, name, expected, str(version), timeout_s)
        answer = client.rag(
            serving.smoke_query,
            author=author_of(params, name),
            max_tokens=min(16, serving.generation.default_max_tokens),
        )
        if answer.get("model_version") != expected:
            raise ServeFailed(f"smoke query answered by {answer.get('model_version')}, not {expected}")
        if not answer.get("sources"):
            raise ServeFailed("smoke query came back without sources")
    except (ServeFailed, ApiError, OSError) as exc:
        log(f"serve: swap to {expected} failed ({exc}); restoring {served or 'the previous config'}")
        set_model_ref(params, name, restore)
        if served:
            try:
                wait_for_model(client, serving.app_name, name, served, restore, timeout_s)
            except ServeFailed as again:
                raise ServeFailed(f"swap to {expected} failed: {exc}; restoring {served} failed too: {again}") from exc
        raise ServeFailed(f"swap to {expected} failed: {exc}; {served or 'the previous model'} serves again") from exc
    result = SwapResult(
        model_version=expected,
        previous_user_config={"models": {name: previous}} if previous else None,
        seconds=time.monotonic() - started,
        smoke_answer=answer["answer"],
        smoke_sources=len(answer["sources"]),
    )
    log(result.line())
    return result
