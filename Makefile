# Everything runs from the repository: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: setup demo test lint typecheck synth clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml constraints.txt requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[local,cdk,dev]'
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/racecheck demo --out demo-out

test: setup
	$(BIN)/pytest
	$(MAKE) lint typecheck synth

lint:
	$(BIN)/ruff check --no-cache .

typecheck:
	$(BIN)/mypy racecheck lambdas stacks app.py tests

synth:
	scripts/synth_check.sh

clean:
	rm -rf $(VENV) node_modules cdk.out demo-out racecheck-out
