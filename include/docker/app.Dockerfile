# The twin-ops image the docker-compose stack runs: the Airflow components (api-server, scheduler,
# dag-processor, triggerer, Celery workers) and the Ray head/worker serving the twin API all use it,
# with the project at /opt/twin-ops. Exactly uv.lock's versions; nothing is downloaded at run time
# (HF_HUB_OFFLINE=1: the models come from PyPI packages in the lock).
#
#   with a registry:  docker compose build                (PYTHON_IMAGE=python:3.11-slim-bookworm)
#   without one:      make images / twin-ops images build  (PYTHON_IMAGE=twin-ops/base:bookworm)
#
# Layers: Debian packages + uv → the locked dependencies (from pyproject.toml and uv.lock only, so
# the multi-GB layer is rebuilt only when the lock changes) → the project's code (seconds).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
ARG UV_VERSION=0.13.8
# Extra CA certificates of the build host (include/docker/context/README.md); none elsewhere.
COPY include/docker/context/ /usr/local/share/ca-certificates/twin-ops/
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
# python:3.11-slim has its own Python; a plain Debian base (the debootstrap one) gets Debian's 3.11.
# uv itself comes from PyPI, so no second registry is needed.
RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    packages="ca-certificates curl git procps tini"; \
    command -v python3 >/dev/null || packages="$packages python3 python3-venv"; \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends $packages; \
    rm -rf /var/lib/apt/lists/*; \
    find /usr/local/share/ca-certificates/twin-ops -type f ! -name '*.crt' -delete; \
    rm -f /usr/local/share/ca-certificates/twin-ops/weaviate-server; \
    update-ca-certificates; \
    python3 -m venv /opt/uv; \
    /opt/uv/bin/pip install --quiet --no-cache-dir "uv==${UV_VERSION}"; \
    ln -s /opt/uv/bin/uv /usr/local/bin/uv; \
    useradd --uid 50000 --gid 0 --create-home --home-dir /home/twin twin
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON=python3 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    RAY_AUTH_MODE=disabled \
    OMP_WAIT_POLICY=PASSIVE \
    TWIN_OPS_HOME=/opt/twin-ops \
    TWIN_OPS_CACHE=/var/cache/twin-ops \
    AIRFLOW_HOME=/opt/airflow
WORKDIR /opt/twin-ops
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY README.md ./
COPY twin_ops ./twin_ops
COPY dags ./dags
COPY plugins ./plugins
COPY include ./include
COPY params.yaml dvc.yaml ./
RUN uv sync --frozen --no-dev \
    && rm -rf include/docker/context \
    && python -c "import airflow.providers.celery, airflow.providers.docker, ray.serve, twin_ops.cli" \
    && mkdir -p /opt/airflow /var/cache/twin-ops \
    && chown -R twin:0 /opt/airflow /var/cache/twin-ops \
    && chmod -R g+w /opt/airflow /var/cache/twin-ops
USER twin
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["twin-ops", "--help"]
