# The training image: `python -m twin_ops.training` (one SFT or DPO stage), run by Airflow's
# TrainingContainerOperator (a DockerOperator) or `twin-ops train` with training.runner: container
# and training.container.use_local_image: false. Network "none", params.yaml and the author's
# datasets mounted read-only, models/<author> and the base-model cache writable, GPUs via device
# requests (twin_ops.training.container).
#
#   docker build -f include/docker/training.Dockerfile -t twin-ops/training:latest .
#   (make images builds it after the app image, here from twin-ops/app:latest)
#
# It is the app image (exactly uv.lock's versions) with the training entrypoint: the torch 2.13
# wheels carry their CUDA runtime, so on a GPU host the NVIDIA container toolkit's driver is all
# that is added. EXTRA_PACKAGES: e.g. "bitsandbytes==0.50.2" for 4-bit QLoRA (training.load_in_4bit).
ARG APP_IMAGE=twin-ops/app:latest
FROM ${APP_IMAGE}
ARG EXTRA_PACKAGES=""
USER root
RUN if [ -n "${EXTRA_PACKAGES}" ]; then uv pip install --python /opt/venv/bin/python ${EXTRA_PACKAGES}; fi
ENV HF_HOME=/tmp/huggingface \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/tmp \
    TWIN_OPS_HOME=/workspace \
    TWIN_OPS_CACHE=/cache/twin-ops
USER twin
# The project folder (params.yaml, data/datasets/<author>, models/<author>) is mounted here.
WORKDIR /workspace
ENTRYPOINT ["python", "-m", "twin_ops.training"]
CMD ["--help"]
