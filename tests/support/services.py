"""Services the tests need, started only when not already running (``make test`` starts them)."""

from __future__ import annotations

import socket

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
