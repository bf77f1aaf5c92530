# Entry points. `make test` and `make dev` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.txt layers/budget/requirements.txt | cksum | cut -d' ' -f1)

.PHONY: venv test dev openapi lint clean

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

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .aws-sam
