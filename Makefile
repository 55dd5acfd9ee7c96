# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# The first Python that really runs and is 3.11 or 3.12 (pyenv shims may exist but not run).
PYTHON ?= $(shell for p in python3.12 python3.11 python3; do \
	$$p -c 'import sys; assert (3, 11) <= sys.version_info < (3, 13)' 2>/dev/null \
	&& { echo $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean browser compose stress exit-loops

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

# The browser tests drive Debian's chromium, installed here; Playwright never downloads one.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1
APT_INSTALL := env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=; \
	  elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
	  else echo "The browser tests need Chromium: install Debian's 'chromium' package (apt-get install chromium) as root, then run make test again."; exit 1; fi; \
	  echo "installing chromium for the browser tests (apt-get)"; \
	  { $$sudo apt-get update -q && $$sudo $(APT_INSTALL) chromium && command -v chromium >/dev/null; } \
	  || { echo "Could not install chromium: install Debian's 'chromium' package (apt-get install chromium), then run make test again."; exit 1; }; \
	}

# The deployment tests check docker-compose.yml with Debian's docker-compose (1.29), installed here.
compose:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=; \
	  elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
	  else echo "The deployment tests need docker-compose: install Debian's 'docker-compose' package (apt-get install docker-compose) as root, then run make test again."; exit 1; fi; \
	  echo "installing docker-compose for the deployment tests (apt-get)"; \
	  { $$sudo apt-get update -q && $$sudo $(APT_INSTALL) docker-compose && command -v docker-compose >/dev/null; } \
	  || { echo "Could not install docker-compose: install Debian's 'docker-compose' package (apt-get install docker-compose), then run make test again."; exit 1; }; \
	}

# each pass on one pytest process a core (at most 4), a test file kept on one process
XDIST ?= --numprocesses=auto --maxprocesses=4 --dist=loadfile --durations=15

test: lint browser compose
	$(BIN)/pytest $(XDIST)
	$(BIN)/pytest $(XDIST) --db postgres  # the database tests again, where PostgreSQL answers (always on CI)

# A test (TEST=<file, folder or node id>) or a csauto command (CMD="replay --file h.json")
# run N times while one process a core spins: passes, failures and hangs (tests/stress.py).
N ?= 50
stress: $(STAMP)
	@test -n "$(TEST)$(CMD)" || { echo 'make stress TEST=<test id> N=50, or make stress CMD="<csauto arguments>" N=100'; exit 2; }
	$(if $(TEST),$(BIN)/python tests/stress.py pytest $(TEST) -n $(N),$(BIN)/python tests/stress.py command -n $(N) -- csauto $(CMD))

# Every Temporal-touching csauto command N times on a busy machine (tests/exit_loops.py).
exit-loops: $(STAMP)
	$(BIN)/python tests/exit_loops.py -n $(N)

bench: $(STAMP)
	$(BIN)/python bench/rules.py
	$(BIN)/python bench/playbooks.py
	$(BIN)/python bench/burst.py

clean:
	rm -rf $(VENV) .csauto .pytest_cache .mypy_cache .ruff_cache .stress
