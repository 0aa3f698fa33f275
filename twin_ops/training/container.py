"""Run the training entrypoint in a container — one spec for our runner and Airflow's DockerOperator.

``training_spec`` describes the container as plain data: image, entrypoint and command, environment,
bind mounts (params.yaml and the author's datasets read-only, the author's model folder and the
base-model cache writable), ``network_mode="none"`` and GPU device requests. ``run_training_container``
runs it with the Docker SDK, streams its log lines and raises when it exits non-zero; a DAG task
builds ``DockerOperator(task_id=..., **docker_operator_kwargs(...))`` and gets the same container.

Images: on a GPU host, ``training.container.image`` built from include/docker/training.Dockerfile
(CUDA base, the locked dependencies, the project installed). Here no registry is reachable, so
``training.container.local_image`` is built from the debootstrap base image plus the shared
libraries the host's Python links against, and the Python runtime itself (the venv, its
interpreter and the twin_ops source) is bind-mounted read-only at the same paths.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twin_ops.config import Params, Paths, Settings
from twin_ops.errors import TwinOpsError
from twin_ops.quality.frames import DatasetNotFound
from twin_ops.services import docker_engine

log = logging.getLogger(__name__)
WORKSPACE = "/workspace"
CACHE = "/cache/twin-ops"
# Part of the twin-ops source tree (the local image only exists where the runtime is a checkout).
LOCAL_DOCKERFILE = Path(__file__).resolve().parents[2] / "include" / "docker" / "training-local.Dockerfile"
# glibc's own libraries come from the image (same Debian release); copying them would break it.
GLIBC = re.compile(r"^(libc|libm|libpthread|libdl|librt|libutil|libresolv|ld-linux[^.]*)\.so")
LDD_LINE = re.compile(r"=>\s+(/\S+)\s+\(")


def container_paths() -> Paths:
    """The project's layout inside the container: the same Paths, rooted at the workspace (the
    container runs with project.data_dir=data and training.output_dir=models, see its command)."""
    root = Path(WORKSPACE)
    return Paths(root=root, state=root / ".twin", data=root / "data", reports=root / "reports", cache=Path(CACHE))


class TrainingContainerFailed(TwinOpsError, RuntimeError):
    def __init__(self, status: int, tail: list[str]) -> None:
        last = "\n  ".join(tail) or "(no output)"
        super().__init__(f"training container exited with status {status}; last lines:\n  {last}")
        self.status = status
        self.tail = tail


@dataclass(frozen=True)
class BindMount:
    source: str
    target: str
    read_only: bool


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    entrypoint: list[str]
    command: list[str]
    environment: dict[str, str]
    mounts: list[BindMount]
    user: str
    working_dir: str = WORKSPACE
    network_mode: str = "none"
    gpus: int = 0
    labels: dict[str, str] = field(default_factory=dict)

    def docker_mounts(self) -> list:
        from docker.types import Mount

        return [Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in self.mounts]

    def device_requests(self) -> list:
        from docker.types import DeviceRequest

        return [DeviceRequest(count=self.gpus, capabilities=[["gpu"]])] if self.gpus > 0 else []

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the Docker SDK's ``containers.run``."""
        return {
            "image": self.image,
            "name": self.name,
            "entrypoint": self.entrypoint,
            "command": self.command,
            "environment": self.environment,
            "mounts": self.docker_mounts(),
            "user": self.user,
            "working_dir": self.working_dir,
            "network_mode": self.network_mode,
            "device_requests": self.device_requests(),
            "labels": self.labels,
        }

    def docker_operator_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``airflow.providers.docker.operators.docker.DockerOperator``."""
        return {
            "image": self.image,
            "container_name": self.name,
            "entrypoint": self.entrypoint,
            "command": self.command,
            "environment": self.environment,
            "mounts": self.docker_mounts(),
            "user": self.user,
            "working_dir": self.working_dir,
            "network_mode": self.network_mode,
            "device_requests": self.device_requests(),
            "labels": self.labels,
            "mount_tmp_dir": False,  # the Docker host need not share a filesystem with the worker
            "auto_remove": "success",
        }


def runtime_mounts() -> list[BindMount]:
    """The host's Python runtime (venv, interpreter, twin_ops source), read-only at the same paths."""
    import twin_ops

    source = Path(twin_ops.__file__).resolve().parent
    folders = sorted({sys.prefix, sys.base_prefix, str(source)})
    return [BindMount(folder, folder, True) for folder in folders]


def training_spec(
    stage: str,
    author_id: str,
    params: Params,
    paths: Paths,
    *,
    overrides: list[str] | None = None,
) -> ContainerSpec:
    c = params.training.container
    inside = container_paths()
    outputs, datasets = paths.training_outputs(author_id), paths.datasets(author_id)
    for folder in (outputs, paths.model_cache):
        folder.mkdir(parents=True, exist_ok=True)
    mounts = [
        BindMount(str(paths.params_file), str(inside.params_file), True),
        BindMount(str(datasets), str(inside.datasets(author_id)), True),
        BindMount(str(outputs), str(inside.training_outputs(author_id)), False),
        BindMount(str(paths.model_cache), str(inside.model_cache), False),
    ]
    if paths.dvc_lock.exists():  # lets the model card record the data's DVC lineage
        mounts.append(BindMount(str(paths.dvc_lock), str(inside.dvc_lock), True))
    base_model = Path(params.training.base_model)
    if base_model.is_absolute() and base_model.exists():  # a local base model, at the same path
        mounts.append(BindMount(str(base_model), str(base_model), True))
    if c.use_local_image:
        mounts.extend(runtime_mounts())
    environment = {
        "TWIN_OPS_HOME": WORKSPACE,
        "TWIN_OPS_CACHE": CACHE,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": "/tmp/huggingface",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "HOME": "/tmp",
        "PYTHONUNBUFFERED": "1",
        # A run's own parameter overrides travel with it.
        **{name: value for name, value in os.environ.items() if name.startswith("TWIN_OPS_PARAM__")},
    }
    if not datasets.is_dir():
        raise DatasetNotFound(f"no datasets at {datasets} (run `twin-ops datasets --author {author_id}` first)")
    # Inside, it is a local run whose folders are the mounts; the caller's other overrides travel along.
    forwarded = [item for item in overrides or [] if not item.startswith("training.runner=")]
    layout = [f"training.output_dir={inside.models.relative_to(inside.root)}", f"project.data_dir={inside.data.name}"]
    sets = [*forwarded, "training.runner=local", *layout]
    return ContainerSpec(
        name=f"twin-ops-train-{author_id}-{stage}",
        image=c.local_image if c.use_local_image else c.image,
        # The local image has no Python of its own: the host's interpreter is mounted at its own path.
        entrypoint=[sys.executable if c.use_local_image else "python", "-m", "twin_ops.training"],
        command=["--stage", stage, "--author", author_id, *(arg for item in sets for arg in ("--set", item))],
        environment=environment,
        mounts=mounts,
        # Files in the mounted output belong to whoever runs the pipeline, not to root.
        user=f"{os.getuid()}:{os.getgid()}",
        gpus=c.gpus,
        labels={"twin-ops.stage": stage, "twin-ops.author": author_id},
    )


def host_libraries() -> list[Path]:
    """Shared libraries the host's Python and its extension modules need, outside glibc."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    extensions = Path(sys.base_prefix) / "lib" / version / "lib-dynload"
    binaries = [Path(sys.executable).resolve(), *sorted(extensions.glob("*.so"))]
    found: dict[str, Path] = {}
    for binary in binaries:
        listing = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False).stdout
        for match in LDD_LINE.finditer(listing):
            library = Path(match.group(1))
            if not GLIBC.match(library.name) and not library.is_relative_to(sys.base_prefix):
                found[library.name] = library
    return [found[name] for name in sorted(found)]


def ensure_local_image(params: Params, paths: Paths, settings: Settings) -> str:
    """Build the local training image once (again when the Dockerfile or the libraries change)."""
    import docker

    name = params.training.container.local_image
    dockerfile = LOCAL_DOCKERFILE.read_text()
    libraries = host_libraries()
    fingerprint = hashlib.sha256(
        "\n".join([dockerfile, params.docker.base_image, *(str(lib) for lib in libraries)]).encode()
    ).hexdigest()
    with closing(docker_engine.client(settings, timeout=600)) as engine:
        try:
            if engine.images.get(name).labels.get("twin-ops.fingerprint") == fingerprint:
                return name
        except docker.errors.ImageNotFound:
            pass
        docker_engine.ensure_base_image(params, paths, settings, log=log.info)
        log.info("docker: building %s from %s + %d host libraries", name, params.docker.base_image, len(libraries))
        with tempfile.TemporaryDirectory(prefix="twin-ops-image-") as context:
            (Path(context) / "Dockerfile").write_text(dockerfile)
            (Path(context) / "libs").mkdir()
            for library in libraries:  # the real file, under the name the loader asks for
                shutil.copy2(library.resolve(), Path(context) / "libs" / library.name)
            engine.images.build(
                path=context,
                tag=name,
                buildargs={"BASE": params.docker.base_image},
                labels={"twin-ops.fingerprint": fingerprint},
                network_mode="none",
                pull=False,
                rm=True,
            )
    return name


def docker_operator_kwargs(
    stage: str,
    author_id: str,
    params: Params,
    paths: Paths,
    settings: Settings,
    *,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Everything ``DockerOperator(task_id=..., **kwargs)`` needs to run one training stage.

    Call it when the task runs, not when the DAG file is parsed: it checks that the author's
    datasets exist, builds the local image when that is the configured one (no registry to pull
    from), and removes a container of the same name left by a killed worker (the name is ours).
    The operator then runs the container with ``network_mode="none"``, streams its log into the task
    log, and raises ``DockerContainerFailedException`` (with the exit code) when it exits non-zero.
    """
    import docker

    spec = training_spec(stage, author_id, params, paths, overrides=overrides)
    if params.training.container.use_local_image:
        ensure_local_image(params, paths, settings)
    with closing(docker_engine.client(settings)) as engine, suppress(docker.errors.NotFound):
        engine.containers.get(spec.name).remove(force=True)
    return {**spec.docker_operator_kwargs(), "docker_url": docker_engine.engine_url(settings)}


def run_training_container(
    stage: str,
    author_id: str,
    params: Params,
    paths: Paths,
    settings: Settings,
    *,
    overrides: list[str] | None = None,
) -> None:
    """Run one training stage in a container; stream its output; raise if it exits non-zero."""
    import docker

    spec = training_spec(stage, author_id, params, paths, overrides=overrides)
    if params.training.container.use_local_image:
        ensure_local_image(params, paths, settings)
    tail: deque[str] = deque(maxlen=20)
    # No read timeout: a training run may print nothing for minutes (loading, merging).
    with closing(docker_engine.client(settings, timeout=None)) as engine:
        # A container left by a killed runner would block the name: it is ours to remove.
        with suppress(docker.errors.NotFound):
            engine.containers.get(spec.name).remove(force=True)
        log.info(
            "docker: running %s %s (network %s, gpus %s)",
            spec.image,
            " ".join(spec.command),
            spec.network_mode,
            spec.gpus,
        )
        container = engine.containers.run(detach=True, **spec.run_kwargs())
        try:
            pending = b""
            for chunk in container.logs(stream=True, follow=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    text = line.decode("utf-8", errors="replace").rstrip("\r")
                    tail.append(text)
                    log.info(text)
            if pending:
                tail.append(pending.decode("utf-8", errors="replace"))
                log.info(tail[-1])
            status = int(container.wait()["StatusCode"])
        finally:
            container.remove(force=True)
    if status != 0:
        raise TrainingContainerFailed(status, list(tail))
