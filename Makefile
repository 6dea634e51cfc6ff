# ODH index — the two set-up commands are `make demo` and `make test`; everything else is optional.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test test-all test-fast test-e2e test-s3 test-multinode lint format fashion-mnist promtool chromium bench-quality bench-build bench-serve bench-encode bench-reliability bench-train-speed bench-findings bench-capacity clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

fashion-mnist:
	@bash infra/scripts/ensure-fashion-mnist.sh

promtool:
	@bash infra/scripts/ensure-promtool.sh

chromium:
	@bash infra/scripts/ensure-chromium.sh

## demo: the whole pipeline on Fashion-MNIST on an embedded Ray cluster (artefacts in ./odh-data)
demo: $(STAMP) fashion-mnist
	$(BIN)/odh demo --workdir odh-data

## test: the default suite (unit + e2e, not `slow`)
test: $(STAMP) fashion-mnist promtool chromium
	$(BIN)/pytest -q -m "not slow" $(PYTEST_ARGS)

## test-all: everything, the slow tests too (DDP, killed training worker, S3 encode+build)
test-all: $(STAMP) fashion-mnist promtool
	$(BIN)/pytest -q $(PYTEST_ARGS)

## test-fast: unit tests only (no e2e, no slow)
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow and not e2e" $(PYTEST_ARGS)

test-e2e: $(STAMP) fashion-mnist
	$(BIN)/pytest -q -m "e2e" $(PYTEST_ARGS)

## test-s3: the image-set / encode / build tests against a moto S3 server on 127.0.0.1 (incl. slow)
test-s3: $(STAMP)
	$(BIN)/pytest -q tests/indexer/test_s3.py

## test-multinode: head + 2 worker nodes on this machine (encode, build, serve, node loss)
test-multinode: $(STAMP)
	$(BIN)/pytest -q tests/cluster/test_multinode.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench-quality: $(STAMP) fashion-mnist
	$(BIN)/odh bench quality

bench-build: $(STAMP)
	$(BIN)/odh bench build

bench-serve: $(STAMP)
	$(BIN)/odh bench serve

bench-encode: $(STAMP) fashion-mnist
	$(BIN)/odh bench encode

bench-reliability: $(STAMP)
	$(BIN)/odh bench reliability

bench-train-speed: $(STAMP) fashion-mnist
	$(BIN)/odh bench train-speed

## bench-findings: ODH's two findings per epoch (BNN vs FP twin) + a short stage-2 sweep (single seed)
bench-findings: $(STAMP) fashion-mnist
	$(BIN)/odh bench findings

bench-capacity: $(STAMP)
	$(BIN)/odh bench capacity

clean:
	rm -rf odh-data .pytest_cache .ruff_cache
