"""Services the tests need, started only when not already running (``make test`` starts them)."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from twin_ops.config import Params, Paths, Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_weaviate(params: Params, paths: Paths) -> bool:
    """A Weaviate server other processes can reach; True when this call started it (stop it after).

    services.weaviate.connect() would start an embedded server owned by the connecting process,
    which dies with its client: Ray replicas and Airflow tasks, other processes, need a server.
    """
    from twin_ops.services import weaviate as weaviate_service

    if Settings().weaviate_url or weaviate_service.is_running(params):
        return False
    weaviate_service.start_server(params, paths, log=lambda line: None)
    return True


@contextlib.contextmanager
def local_app(params: Params, paths: Paths, overrides: dict, models_dir: Path, api_key: str) -> Iterator[str]:
    """The Ray Serve app on a free loopback port, one replica per deployment; its URL. The API key
    is read by the Ingress replica from the environment at start-up."""
    from twin_ops.serving import ops

    os.environ["TWIN_OPS_API_KEY"] = api_key
    try:
        yield ops.start_local(
            params,
            paths,
            port=free_port(),
            app_args={"overrides": overrides, "models_dir": str(models_dir)},
            single_replica=True,
            log=lambda line: None,
        )
    finally:
        ops.stop_local()
        os.environ.pop("TWIN_OPS_API_KEY", None)
