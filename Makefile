# `make test` and `make demo` set up everything they need in .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo lint docs bench clean

$(STAMP): pyproject.toml flask_taskq/__init__.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# lint-imports checks the layers (pyproject.toml [tool.importlinter], docs/design.rst).
test: $(STAMP)
	$(BIN)/ruff check flask_taskq tests examples bench
	$(BIN)/ruff format --check flask_taskq tests examples bench
	$(BIN)/lint-imports --no-cache --no-logo
	$(BIN)/mypy flask_taskq
	$(BIN)/python -m pytest tests
	$(BIN)/python -m pytest examples/celery_port/tests

demo: $(STAMP)
	$(BIN)/python examples/quickstart/demo.py

lint: $(STAMP)
	$(BIN)/ruff check flask_taskq tests examples bench
	$(BIN)/ruff format --check flask_taskq tests examples bench
	$(BIN)/lint-imports --no-cache --no-logo
	$(BIN)/mypy flask_taskq

docs: $(STAMP)
	$(BIN)/sphinx-build -q -W -b html docs docs/_build/html

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

# compare.py installs the peers into bench/.venv-peers from bench/requirements-peers.txt.
bench: $(BENCH_STAMP)
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/compare.py

.PHONY: bench-scaling
bench-scaling: $(BENCH_STAMP)
	$(BIN)/python bench/scaling.py

clean:
	rm -rf $(VENV) docs/_build build *.egg-info
