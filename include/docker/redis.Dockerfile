# The Celery broker of the compose stack.
#
#   with a registry:  BASE_IMAGE=redis:7
#   without one:      BASE_IMAGE=twin-ops/base:bookworm — Debian's redis-server (7.0 on bookworm)
ARG BASE_IMAGE=redis:7
FROM ${BASE_IMAGE}
RUN set -eux; \
    if ! command -v redis-server >/dev/null; then \
        export DEBIAN_FRONTEND=noninteractive; \
        apt-get update -qq; \
        apt-get install -y -qq --no-install-recommends redis-server; \
        rm -rf /var/lib/apt/lists/*; \
    fi
CMD ["redis-server", "--save", "", "--appendonly", "no"]
