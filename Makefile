# Entry points. `make test` and `make dev` set everything up on a fresh machine.
# Two install steps, each redone only when its pinned requirements change (a stamp named by their
# checksum): serving (`make dev`, the key commands) needs requirements-dev.txt; the tests, lint
# and tools add requirements-test.txt.
# The venv's Python: 3.13 (what the functions run on in Lambda) when the machine has it, on PATH or
# installed by pyenv without being selected; else 3.12; else python3 (3.11 or later is supported).
# An existing .venv is kept whatever its Python (`make clean` and the next command rebuild it).
PYTHON ?= $(shell for v in 3.13 3.12; do \
	for p in python$$v $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$$v.*/bin/python$$v; do \
	$$p -c '' 2>/dev/null && { echo $$p; exit; }; done; done; echo python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
DEV_REQUIREMENTS := requirements-dev.txt layers/budget/requirements.txt
TEST_REQUIREMENTS := $(DEV_REQUIREMENTS) requirements-test.txt
DEV_STAMP := $(VENV)/.dev-$(shell cat $(DEV_REQUIREMENTS) | cksum | cut -d' ' -f1)
TEST_STAMP := $(VENV)/.test-$(shell cat $(TEST_REQUIREMENTS) | cksum | cut -d' ' -f1)
# The real LiteLLM Proxy for its test, in a venv of its own (requirements-proxy.txt says why).
PROXY_VENV := .venv-proxy
PROXY_STAMP := $(PROXY_VENV)/.proxy-$(shell cat requirements-proxy.txt | cksum | cut -d' ' -f1)
# What mypy checks (pyproject.toml configures it); the client package once it exists.
MYPY_PATHS := layers/budget/budget_service functions localdev scripts console/serve.py $(wildcard client/src)

.PHONY: venv test test-fast dev docs openapi lint build clean prices encodings key revoke-key keys bench console-vendor browser deal-levels

venv: $(TEST_STAMP)

$(DEV_STAMP): $(DEV_REQUIREMENTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements-dev.txt
	rm -f $(VENV)/.dev-*
	touch $@

$(TEST_STAMP): $(DEV_STAMP) requirements-test.txt
	$(PIP) -r requirements-test.txt
	rm -f $(VENV)/.test-*
	touch $@

# The browser tests drive Debian's Chromium (Playwright's own browser downloads are never used):
# installed once, skipped when it is there. Needs root (or run the apt-get line yourself).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

$(PROXY_STAMP): requirements-proxy.txt
	test -x $(PROXY_VENV)/bin/python || $(PYTHON) -m venv $(PROXY_VENV)
	$(PROXY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-proxy.txt
	rm -f $(PROXY_VENV)/.proxy-*
	touch $@

# Lint, the layering and types first (seconds), then every tier, a module per worker on every core
# (a module's tests share its server and fixtures). PYTEST_ARGS narrows or adds: "-m 'not e2e'", "--lf".
test: $(TEST_STAMP) $(CHROMIUM) $(PROXY_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=layers/budget $(BIN)/lint-imports
	$(BIN)/mypy $(MYPY_PATHS)
	$(BIN)/python -m pytest -n auto --dist loadfile $(PYTEST_ARGS)

# The unit tier alone (tests/unit, marker unit): pure code in one process, seconds.
test-fast: $(TEST_STAMP)
	$(BIN)/python -m pytest tests/unit -m unit $(PYTEST_ARGS)

dev: $(DEV_STAMP)
	$(BIN)/python -m localdev.server

# The documentation site (mkdocs.yml, docs/) into site/; --strict fails on any warning (a broken
# link or anchor, a missing page). tests/template/test_docs.py runs the same build in `make test`.
docs: $(TEST_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Prints a make variable (print-DEV_STAMP); the tests use it to run the printed key commands.
print-%:
	@echo $($*)

# Benchmarks (bench/): writes bench/RESULTS.md and prints it. Not part of `make test` (a smoke run
# of each at its smallest size is). BENCH_ARGS="--quick" or "--only update_cost,resets" to narrow.
bench: $(TEST_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# API keys (TABLE_NAME=<table>, AWS credentials; AUTH=1 make dev prints the local command, which
# needs no AWS configuration).
#   make key PROJECT=team-a[,team-b] ROLE=admin|writer|reader [LABEL=...]   prints the key once
#   make key PROJECT=team-a ROLE=user END_USER=alice   one end user's read-only key (the console's
#                                    self-service view; END_USER, since make sees the shell's USER)
#   make revoke-key KEY_ID=<id>      make keys   (lists ids, roles, projects; never a key)
KEYS := PYTHONPATH=layers/budget $(BIN)/python -m budget_service.api.keys
key: $(DEV_STAMP)
	@test -n "$(PROJECT)" -a -n "$(ROLE)" || { echo "usage: make key PROJECT=<project[,project]> ROLE=admin|writer|reader|user [END_USER=<user>]" >&2; exit 2; }
	@$(KEYS) mint --project "$(PROJECT)" --role "$(ROLE)" $(if $(LABEL),--label "$(LABEL)") $(if $(END_USER),--user "$(END_USER)")

revoke-key: $(DEV_STAMP)
	@test -n "$(KEY_ID)" || { echo "usage: make revoke-key KEY_ID=<key id>" >&2; exit 2; }
	@$(KEYS) revoke "$(KEY_ID)"

# The upgrade step after deploying escrow slices or raising LEVEL_SLICES (TABLE_NAME=<table>, AWS
# credentials): deals every team and project level over its slices, keeping its sums.
deal-levels: $(DEV_STAMP)
	@PYTHONPATH=layers/budget $(BIN)/python -c "from budget_service.domain.levels import deal_every_level; print(deal_every_level(), 'levels dealt')"

keys: $(DEV_STAMP)
	@$(KEYS) list

openapi: $(DEV_STAMP)
	$(BIN)/python -m localdev.openapi

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=layers/budget $(BIN)/lint-imports
	$(BIN)/mypy $(MYPY_PATHS)
	$(BIN)/cfn-lint template.yaml

# Needs the SAM CLI and python3.13 on PATH (or add --use-container where Docker runs).
build:
	sam build

# Regenerate the layer's price table from the installed litellm and print what changed.
# (PRICES_SOURCE=<path or https URL of model_prices_and_context_window.json> to use another copy.)
prices: $(TEST_STAMP)
	$(BIN)/python scripts/refresh_prices.py $(if $(PRICES_SOURCE),--source $(PRICES_SOURCE))

# Re-vendor the console's chart library (console/package.json pins it, console/package-lock.json
# holds its registry checksum, which npm ci verifies) into console/vendor/, committed, so the
# stack and make dev serve it with no CDN and `sam build` needs no node. The tests check the
# committed file against console/vendor/SHA256SUMS and the pinned version.
console-vendor:
	cd console && npm ci --ignore-scripts --no-audit --no-fund
	cp console/node_modules/chart.js/dist/chart.umd.min.js console/vendor/chart.umd.min.js
	cp console/node_modules/chart.js/LICENSE.md console/vendor/chart.js.LICENSE.md
	cd console/vendor && sha256sum chart.umd.min.js > SHA256SUMS

# Re-vendor the tiktoken encodings into the layer, checked against tiktoken's pinned SHA-256.
encodings: $(TEST_STAMP)
	$(BIN)/python scripts/vendor_tiktoken.py

clean:
	rm -rf $(VENV) $(PROXY_VENV) .pytest_cache .hypothesis .aws-sam
