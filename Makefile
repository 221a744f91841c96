# Two commands do all set-up on a fresh machine:
#   make serve   - the planner web app on the bundled data (http://localhost:5006/planner)
#   make test    - the whole test suite (installs the test tools and Chromium first)

PYTHON ?= python3
VENV ?= .venv
PORT ?= 5006
ADDRESS ?= 127.0.0.1
BIN := $(VENV)/bin
SOURCES := evplanner apps tests benchmarks data

.PHONY: serve test lint bench chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall when the package metadata changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

# The websocket message limit (4 MiB) leaves room for one upload at the app's 2 MB
# cap and disconnects a client that sends more before reading it whole.
serve: $(VENV)/.installed
	$(BIN)/panel serve apps/planner.py --port $(PORT) --address $(ADDRESS) \
		--websocket-max-message-size 4194304 \
		--allow-websocket-origin $(ADDRESS):$(PORT) \
		--allow-websocket-origin localhost:$(PORT)

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads
# a browser of its own).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; }

test: lint chromium
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)

bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache
