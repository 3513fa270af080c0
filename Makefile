# `make demo` and `make test` set everything up from a fresh clone (a .venv with pinned versions).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.joulebench-installed

.PHONY: venv demo test test-all lint bench-sparse clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,tune,fpga]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/joulebench run campaigns/quickstart.toml --out results/quickstart/demo --force  # each demo starts afresh

test: venv
	$(BIN)/python -m pytest

test-all: venv
	$(BIN)/python -m pytest -m 'not hardware'

lint: venv
	$(BIN)/ruff check bench pruning targets tests

clean:
	rm -rf $(VENV) results/quickstart build *.egg-info
