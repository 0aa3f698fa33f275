# syntax=docker/dockerfile:1
# The twin-ops image the docker-compose stack runs: Airflow (api-server, scheduler, dag-processor,
# triggerer) and the Ray head/worker serving the twin API all use it, with the project at
# /opt/twin-ops. Exactly uv.lock's versions; nothing is downloaded at run time (HF_HUB_OFFLINE=1).
#
#   docker compose build        (or: docker build -f include/docker/app.Dockerfile -t twin-ops/app .)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.8

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE}
COPY --from=uv /uv /uvx /usr/local/bin/
RUN apt-get update && apt-get install -y --no-install-recommends git curl && rm -rf /var/lib/apt/lists/*
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    RAY_AUTH_MODE=disabled \
    TWIN_OPS_HOME=/opt/twin-ops \
    TWIN_OPS_CACHE=/var/cache/twin-ops \
    AIRFLOW_HOME=/opt/airflow
WORKDIR /opt/twin-ops
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY twin_ops ./twin_ops
COPY dags ./dags
COPY plugins ./plugins
COPY include ./include
COPY params.yaml dvc.yaml ./
RUN uv sync --frozen --no-dev && useradd --uid 50000 --create-home twin \
    && mkdir -p /opt/airflow /var/cache/twin-ops && chown -R twin /opt/airflow /var/cache/twin-ops /opt/twin-ops
USER twin
