# The vector store of the compose stack, at params.yaml's weaviate.version.
#
#   with a registry:  BASE_IMAGE=cr.weaviate.io/semitechnologies/weaviate:1.37.2 (its /bin/weaviate)
#   without one:      BASE_IMAGE=twin-ops/base:bookworm plus the weaviate-server binary that twin-ops
#                     builds from the Go module proxy (twin_ops.services.weaviate.ensure_binary),
#                     which `make images` puts in include/docker/context/
ARG BASE_IMAGE=cr.weaviate.io/semitechnologies/weaviate:1.37.2
FROM ${BASE_IMAGE}
COPY include/docker/context/ /opt/twin-ops-context/
RUN set -eux; \
    if [ ! -x /bin/weaviate ]; then \
        install -m 0755 /opt/twin-ops-context/weaviate-server /bin/weaviate; \
    fi; \
    if ! command -v wget >/dev/null && ! command -v curl >/dev/null; then \
        export DEBIAN_FRONTEND=noninteractive; \
        apt-get update -qq; \
        apt-get install -y -qq --no-install-recommends curl; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    rm -rf /opt/twin-ops-context; \
    mkdir -p /var/lib/weaviate
ENTRYPOINT ["/bin/weaviate"]
CMD ["--host", "0.0.0.0", "--port", "8080", "--scheme", "http"]
