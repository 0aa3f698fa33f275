# The training image for THIS machine, where no registry is reachable (see twin_ops/training/container.py):
# the debootstrap base image (twin-ops services up --docker) plus the shared libraries the host's Python
# links against, copied from the host (the same Debian release). The Python runtime itself — the venv,
# its interpreter and the twin_ops source — is bind-mounted read-only at run time, at the host's paths.
# On a GPU host use training.Dockerfile instead (training.container.use_local_image: false).
ARG BASE=twin-ops/base:bookworm
FROM ${BASE}
COPY libs/ /opt/twin-ops/host-libs/
ENV LD_LIBRARY_PATH=/opt/twin-ops/host-libs \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    MPLCONFIGDIR=/tmp/matplotlib
WORKDIR /workspace
