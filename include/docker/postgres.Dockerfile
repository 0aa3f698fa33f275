# Airflow's metadata database for the compose stack.
#
#   with a registry:  BASE_IMAGE=postgres:16 (the official image and its entrypoint, as before)
#   without one:      BASE_IMAGE=twin-ops/base:bookworm — Debian's postgresql (15 on bookworm),
#                     initialised by twin-postgres from the same POSTGRES_* variables
ARG BASE_IMAGE=postgres:16
FROM ${BASE_IMAGE}
RUN set -eux; \
    if ! command -v docker-entrypoint.sh >/dev/null; then \
        export DEBIAN_FRONTEND=noninteractive; \
        apt-get update -qq; \
        apt-get install -y -qq --no-install-recommends postgresql; \
        rm -rf /var/lib/apt/lists/*; \
    fi
COPY include/docker/twin-postgres.sh /usr/local/bin/twin-postgres
ENV PGDATA=/var/lib/postgresql/data
ENTRYPOINT ["twin-postgres"]
CMD ["postgres"]
