# Two commands do everything on a fresh machine:
#   make demo   set up (Debian packages + Python deps) and run the offline demo
#   make test   set up and run every test, lint and type check
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed

.PHONY: demo test setup system-deps lint bench clean

demo: setup
	$(VENV)/bin/agentrt demo

test: setup
	$(VENV)/bin/ruff check agentrt tests bench examples
	$(VENV)/bin/ruff format --check agentrt tests bench examples
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -n 3 --dist loadfile

setup: system-deps $(STAMP)

system-deps:
	@scripts/setup-system.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

lint: setup
	$(VENV)/bin/ruff check agentrt tests bench examples
	$(VENV)/bin/mypy

bench: setup   # flags: make bench ARGS="--quick"
	$(PY) bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
