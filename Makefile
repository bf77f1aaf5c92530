# Entry points. `make test` and `make dev` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.txt layers/budget/requirements.txt | cksum | cut -d' ' -f1)

.PHONY: venv test dev openapi lint clean prices encodings

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

openapi: $(STAMP)
	$(BIN)/python -m localdev.openapi

lint: $(STAMP)
	$(BIN)/cfn-lint template.yaml

# Regenerate the layer's price table from the installed litellm and print what changed.
# (PRICES_SOURCE=<path or https URL of model_prices_and_context_window.json> to use another copy.)
prices: $(STAMP)
	$(BIN)/python scripts/refresh_prices.py $(if $(PRICES_SOURCE),--source $(PRICES_SOURCE))

# Re-vendor the tiktoken encodings into the layer, checked against tiktoken's pinned SHA-256.
encodings: $(STAMP)
	$(BIN)/python scripts/vendor_tiktoken.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .aws-sam
