# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# The first Python that really runs and is 3.11 or 3.12 (pyenv shims may exist but not run).
PYTHON ?= $(shell for p in python3.12 python3.11 python3; do \
	$$p -c 'import sys; assert (3, 11) <= sys.version_info < (3, 13)' 2>/dev/null \
	&& { echo $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "csautomation needs Python 3.11 or 3.12"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/csauto demo $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/rules.py
	$(BIN)/python bench/playbooks.py

clean:
	rm -rf $(VENV) .csauto .pytest_cache .mypy_cache .ruff_cache
