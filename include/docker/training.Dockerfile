# syntax=docker/dockerfile:1
# The training image for GPU hosts: `twin-ops train` (python -m twin_ops.training) on CUDA.
#
#   docker build -f include/docker/training.Dockerfile -t twin-ops/training:latest .
#
# Run it through twin_ops.training.container (the `twin-ops train` runner with training.runner:
# container and training.container.use_local_image: false) or Airflow's DockerOperator with
# twin_ops.training.container.docker_operator_kwargs(): network "none", params.yaml and the author's datasets
# mounted read-only, models/<author> and the base-model cache writable, GPUs via device requests
# (NVIDIA container toolkit on the host).
#
# Dependencies are exactly uv.lock's (torch 2.13 wheels carry their CUDA 13 runtime, so the base
# image only has to match the host driver), plus bitsandbytes for optional 4-bit QLoRA
# (training.load_in_4bit). Nothing is downloaded at run time: HF_HUB_OFFLINE=1.
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-base-ubuntu24.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.8

FROM ${UV_IMAGE} AS uv

FROM ${CUDA_IMAGE}
COPY --from=uv /uv /uvx /usr/local/bin/
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/tmp/huggingface \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/tmp \
    TWIN_OPS_HOME=/workspace \
    TWIN_OPS_CACHE=/cache/twin-ops

WORKDIR /opt/twin-ops
# Dependencies first (a cached layer while only the code changes), from the lock file only.
COPY pyproject.toml uv.lock README.md ./
RUN uv python install 3.11 \
    && uv sync --frozen --no-dev --no-install-project --python 3.11 \
    && uv pip install --python /opt/venv/bin/python "bitsandbytes==0.50.2"
COPY twin_ops ./twin_ops
RUN uv sync --frozen --no-dev --python 3.11 \
    && python -c "import torch, transformers, peft, trl, twin_ops.training.train"

# The project folder (params.yaml, data/datasets/<author>, models/<author>) is mounted here.
WORKDIR /workspace
ENTRYPOINT ["python", "-m", "twin_ops.training"]
CMD ["--help"]
