"""Airflow connections → the environment variables twin_ops reads (twin_ops.config.Settings).

twin_ops never imports Airflow: it finds its services through WEAVIATE_URL, RAY_ADDRESS,
DOCKER_HOST... This hook lets an Airflow deployment keep those in Connections (UI, secrets
backend, or AIRFLOW_CONN_* variables) instead. A connection that is not defined leaves the
variables alone, so the embedded default (local Weaviate, local Ray) needs none.

    twin_weaviate  http://[:API_KEY@]weaviate:8080?grpc_port=50051
    twin_ray       http://[:API_KEY@]ray-head:8000?ray_address=ray%3A%2F%2Fray-head%3A10001
                   &dashboard_address=http%3A%2F%2Fray-head%3A8265  (Serve's REST API: model swaps)
                   (the twin API's URL and key, and the cluster address for model swaps)
    twin_docker    {"conn_type": "docker", "host": "unix:///var/run/docker.sock"}
"""

from __future__ import annotations

from typing import Any


def _connection(conn_id: str) -> Any | None:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def service_environment() -> dict[str, str]:
    env: dict[str, str] = {}
    weaviate = _connection("twin_weaviate")
    if weaviate is not None:
        scheme = "https" if weaviate.conn_type == "https" else "http"
        env["WEAVIATE_URL"] = f"{scheme}://{weaviate.host}:{weaviate.port or 8080}"
        env["WEAVIATE_GRPC_URL"] = f"{scheme}://{weaviate.host}:{weaviate.extra_dejson.get('grpc_port', 50051)}"
        if weaviate.password:
            env["WEAVIATE_API_KEY"] = weaviate.password
    ray = _connection("twin_ray")
    if ray is not None:
        env["TWIN_OPS_SERVE_URL"] = f"http://{ray.host}:{ray.port or 8000}"
        if ray.extra_dejson.get("ray_address"):
            env["RAY_ADDRESS"] = ray.extra_dejson["ray_address"]
        if ray.extra_dejson.get("dashboard_address"):
            env["RAY_DASHBOARD_ADDRESS"] = ray.extra_dejson["dashboard_address"]
        if ray.password:
            env["TWIN_OPS_API_KEY"] = ray.password
    docker = _connection("twin_docker")
    if docker is not None and docker.host:
        env["DOCKER_HOST"] = docker.host
    return env
