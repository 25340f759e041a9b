# lumbar: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
DATA ?= data
PATIENTS ?= 12
WORKERS ?= 2

.PHONY: help venv install demo test test-all lint bench bench-ingest bench-store bench-input bench-train bench-shards bench-pipeline services-up services-down clean

help:
	@echo "make demo      create .venv, install, and run the main job on synthetic data"
	@echo "make test      create/update .venv, install .[dev] and run the test suite"
	@echo "make test-all  the suite including slow tests"
	@echo "make lint      ruff"
	@echo "make bench     the benchmarks in bench/"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "lumbar needs Python 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv install: $(STAMP)

demo: $(STAMP)
	@rm -rf $(DATA)/demo
	$(BIN)/lumbar synth pacs $(DATA)/demo/export --patients $(PATIENTS) --seed 0 --workers $(WORKERS)
	$(BIN)/lumbar dataset build --source $(DATA)/demo/export --labels $(DATA)/demo/export/labels.csv \
		--out $(DATA)/demo/dataset-c --workers $(WORKERS)
	$(BIN)/lumbar dataset describe $(DATA)/demo/dataset-c
	@echo "Dataset C is in $(DATA)/demo/dataset-c (manifest.csv, datacard.md, report.json, images/, roi/)"

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench components pipelines
	$(BIN)/ruff format --check src tests bench components pipelines

bench: bench-ingest bench-store bench-input bench-train bench-shards bench-pipeline

bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest.py

bench-pipeline: $(STAMP)
	$(BIN)/python bench/pipeline.py

bench-store: $(STAMP)
	$(BIN)/python bench/store.py

# the baseline's ImageDataGenerator lives in tf-keras; --no-deps keeps it from pulling a second TensorFlow
bench-input: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps 'tf-keras==2.21.*'
	$(BIN)/python bench/input.py

bench-train: $(STAMP)
	$(BIN)/python bench/train.py

bench-shards: $(STAMP)
	$(BIN)/python bench/shards.py

services-up: $(STAMP)
	$(BIN)/lumbar services up

services-down: $(STAMP)
	$(BIN)/lumbar services down

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache .ruff_cache
