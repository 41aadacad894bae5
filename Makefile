# Two commands for a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Empty: the newest Airflow that pyproject.toml allows. CI also runs the oldest supported line.
AIRFLOW_VERSION ?=
PIP_FLAGS ?= -q --disable-pip-version-check
STAMP := $(VENV)/.installed$(if $(AIRFLOW_VERSION),-$(AIRFLOW_VERSION))
PYTEST_ARGS ?=

.PHONY: install test lint typecheck demo clean

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
	$(VENV)/bin/mypy airflow_provider_hitpaw

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) scripts/demo.py

clean:
	rm -rf demo-output .airflow-demo .pytest_cache .ruff_cache .mypy_cache
