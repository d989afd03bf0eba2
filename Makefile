# Two commands do all the set-up on a fresh machine (see README):
#   make demo   - the main job: train the three stages, distill a student, export --int8, score
#   make test   - the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RUN ?= runs/demo
# The data folder of `make demo`: LITE_RM_DATA if set (as for lite-rm itself), else ../shared/data.
DATA ?= $(or $(LITE_RM_DATA),../shared/data)
# A package index for torch, e.g. make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu (CPU-only wheels
# where the default index would pull CUDA); empty: pip's own index.
TORCH_INDEX ?=

.PHONY: setup test test-fast demo lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# Pinned first: an unpinned torch would pull several GB of CUDA packages.
	$(BIN)/python -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[train,export,bench,dev]"
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The main job on the default data: train the teacher (three stages), export its int8 bundle, distill a smaller
# student from it and export the student's int8 bundle as RUN/bundle -- if it passes the fidelity gate against
# the teacher's bundle; else RUN/bundle is a copy of the teacher's (docs/distill.md). Resumable: run it again
# after an interruption. DEMO_FLAGS can shorten training, DISTILL_FLAGS the distillation, e.g.
#   make demo DEMO_FLAGS="--set base.max_texts=256 --set general.epochs=0.5 --set custom.epochs=1"
# DATA=DIR reads another data folder (every step: it is exported as LITE_RM_DATA).
demo: export LITE_RM_DATA := $(DATA)
demo: $(STAMP)
	$(BIN)/lite-rm data check $(DATA)/general/helpful.train.json $(DATA)/general/helpful.test.json \
		$(DATA)/dsp/train.json $(DATA)/dsp/test.json
	$(BIN)/lite-rm train -o $(RUN) --resume $(DEMO_FLAGS)
	test -f $(RUN)/bundle-teacher/manifest.json || $(BIN)/lite-rm export $(RUN)/custom-academy \
		--output $(RUN)/bundle-teacher --int8
	$(BIN)/lite-rm distill $(RUN)/custom-academy -o $(RUN)/student --resume $(DISTILL_FLAGS)
	test -f $(RUN)/bundle/manifest.json || $(BIN)/lite-rm export $(RUN)/student --output $(RUN)/bundle --int8 \
		--teacher-bundle $(RUN)/bundle-teacher --if-unfaithful teacher
	$(BIN)/lite-rm score $(RUN)/bundle --input $(DATA)/dsp/test.json --domain academy \
		--output $(RUN)/dsp-test-scores.jsonl
	$(BIN)/lite-rm eval $(RUN)/bundle
	$(BIN)/lite-rm plot $(RUN)
	$(BIN)/lite-rm plot $(RUN)/bundle -o $(RUN)/plots

lint: $(STAMP)
	$(BIN)/ruff check lite_rm tests bench examples
	$(BIN)/mypy lite_rm

clean:
	rm -rf $(VENV) runs .pytest_cache
