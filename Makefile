# Two commands for a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Empty: the newest Airflow that pyproject.toml allows. CI also runs the oldest supported line.
AIRFLOW_VERSION ?=
PIP_FLAGS ?= -q --disable-pip-version-check
STAMP := $(VENV)/.installed$(if $(AIRFLOW_VERSION),-$(AIRFLOW_VERSION))
PYTEST_ARGS ?=

.PHONY: install test test-system system-deps bench-system lint typecheck demo demo-video clean chaos bench bench-quick bench-deps

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -e ".[test]" $(if $(AIRFLOW_VERSION),"apache-airflow==$(AIRFLOW_VERSION)")
	@rm -f $(VENV)/.installed*
	@touch $@

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy airflow_provider_hitpaw tests bench

test: lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

# Production-shaped deployments (tests/system/): PostgreSQL, Redis, CeleryExecutor, the browser test.
# Needs Debian's postgresql, redis-server and chromium packages (.ci/run installs them).
system-deps: $(STAMP)
	@$(PY) -c "import airflow.providers.celery, celery.backends.database as db, redis, playwright; db.retry" 2>/dev/null || $(PY) -m pip install $(PIP_FLAGS) -e ".[test,system]" $(if $(AIRFLOW_VERSION),"apache-airflow==$(AIRFLOW_VERSION)")

test-system: system-deps
	$(PY) -m pytest -m system tests/system $(PYTEST_ARGS)

# Benchmarks 6 (worker slots) and 7 (the batch) on the CeleryExecutor + PostgreSQL + Redis deployment of
# the system tests, each against its LocalExecutor figures in the same run. Prints their tables;
# BENCH_SYSTEM_ARGS=--quick is shorter.
BENCH_SYSTEM_ARGS ?=
bench-system: system-deps
	$(PY) -m bench.celery_worker_slots $(BENCH_SYSTEM_ARGS)
	$(PY) -m bench.celery_batch $(BENCH_SYSTEM_ARGS)

# The sdist and the wheel: built, checked with twine, installed in a fresh venv and used there (the
# provider imported, the sandbox started from the wheel): a file missing from the wheel fails here.
check-package: $(STAMP)
	@$(PY) -c "import build, twine" 2>/dev/null || $(PY) -m pip install $(PIP_FLAGS) build twine
	$(PY) scripts/check_package.py

# At least 200 HitPaw tasks against a faulty sandbox; prints the reliability table (see RELIABILITY.md).
CHAOS_ARGS ?=
chaos: $(STAMP)
	$(PY) -m bench.chaos_run $(CHAOS_ARGS)

demo: $(STAMP)
	$(PY) scripts/demo.py

# The same with a video: the sandbox's sample clip upscaled, its first frame before and after.
demo-video: $(STAMP)
	$(PY) scripts/demo_video.py

# Benchmarks (bench/): the full run rewrites BENCHMARKS.md; the quick one (CI, about five minutes)
# only prints its table. Both exit 0 when a target is missed, and fail only if a benchmark breaks.
bench-deps: $(STAMP)
	@$(PY) -c "import airflow.providers.http" 2>/dev/null || $(PY) -m pip install $(PIP_FLAGS) -e ".[bench]"

bench: bench-deps
	$(PY) -m bench.run --write BENCHMARKS.md

bench-quick: bench-deps
	$(PY) -m bench.run --quick

clean:
	rm -rf demo-output .airflow-demo .pytest_cache .ruff_cache .mypy_cache test-artifacts
