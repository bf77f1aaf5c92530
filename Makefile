# Entry points. `make test` and `make dev` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.txt layers/budget/requirements.txt | cksum | cut -d' ' -f1)

.PHONY: venv test dev openapi lint build clean prices encodings key revoke-key keys bench

venv: $(STAMP)

$(STAMP): requirements-dev.txt layers/budget/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest

dev: $(STAMP)
	$(BIN)/python -m localdev.server

# Benchmarks (bench/): writes bench/RESULTS.md and prints it. Not part of `make test` (a smoke run
# of each at its smallest size is). BENCH_ARGS="--quick" or "--only update_cost,resets" to narrow.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# API keys (TABLE_NAME=<table>, AWS credentials; AUTH=1 make dev prints the local command).
#   make key PROJECT=team-a[,team-b] ROLE=admin|writer|reader [LABEL=...]   prints the key once
#   make revoke-key KEY_ID=<id>      make keys   (lists ids, roles, projects; never a key)
KEYS := PYTHONPATH=layers/budget $(BIN)/python -m budget_service.keys
key: $(STAMP)
	@test -n "$(PROJECT)" -a -n "$(ROLE)" || { echo "usage: make key PROJECT=<project[,project]> ROLE=admin|writer|reader" >&2; exit 2; }
	@$(KEYS) mint --project "$(PROJECT)" --role "$(ROLE)" $(if $(LABEL),--label "$(LABEL)")

revoke-key: $(STAMP)
	@test -n "$(KEY_ID)" || { echo "usage: make revoke-key KEY_ID=<key id>" >&2; exit 2; }
	@$(KEYS) revoke "$(KEY_ID)"

keys: $(STAMP)
	@$(KEYS) list

openapi: $(STAMP)
	$(BIN)/python -m localdev.openapi

lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml

# Needs the SAM CLI and python3.13 on PATH (or add --use-container where Docker runs).
build:
	sam build

# Regenerate the layer's price table from the installed litellm and print what changed.
# (PRICES_SOURCE=<path or https URL of model_prices_and_context_window.json> to use another copy.)
prices: $(STAMP)
	$(BIN)/python scripts/refresh_prices.py $(if $(PRICES_SOURCE),--source $(PRICES_SOURCE))

# Re-vendor the tiktoken encodings into the layer, checked against tiktoken's pinned SHA-256.
encodings: $(STAMP)
	$(BIN)/python scripts/vendor_tiktoken.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .aws-sam
